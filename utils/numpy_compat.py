"""The numpy names MXNet 1.9.1 reads, put back on the numpy releases that removed them.

MXNet 1.9.1, its last release, was written for numpy < 1.24. Importing it reads old aliases
(`np.bool`, removed in numpy 1.24; `np.PZERO`, `np.NINF`, `np.NaN`, ... removed in numpy 2.0)
and binds numpy functions that numpy 2 removed (`mxnet/numpy/fallback.py`: `in1d`, `trapz`,
`msort`, `alltrue`, ...; the array-function table: `product`, `sometrue`, `round_`). With one
of them missing, `import mxnet` fails. Upstream never released a fix (apache/mxnet#21165 and
#20869; pull requests #21213 and #21224 were not merged).

`restore_numpy_names()` runs from the import hook of `utils/__init__.py` right before MXNet's
code runs, whoever imports it first. It sets a name only where the numpy in use lacks it, so on
numpy 1.23 it changes nothing. Each name gets numpy's documented replacement. The financial
functions (`npv`, `pmt`, ...), which numpy 1.20 moved to the numpy-financial package, raise a
RuntimeError when called, as numpy 1.20 to 1.23 did. Removed functions are small wrappers, not
aliases: MXNet registers every name of its array-function table as a dispatch key, and an alias
would re-register the replacement's key.

`patch_mxnet()` runs once MXNet's code has run, and also only where numpy changed:
- `mxnet.recordio.pack` and `pack_img` call `ndarray.tostring()`, which numpy 2 removed (a
  method of numpy's array type, which cannot be given back): where it is missing, both are
  replaced by functions writing the same record bytes with `tobytes()`.
- MXNet passes operator parameters to its C library as `str(value)`. numpy 2 prints a scalar
  inside a list or tuple as `np.int64(2)` (NEP 51), which the library cannot parse
  (`mx.np.split` of gluon's `split_and_load` in np mode fails so). Where numpy prints so, the
  two functions every generated operator calls (for NDArrays and for Symbols) get such
  parameters written the way numpy 1 wrote them, `[0, 2]`. Other parameter values, and every
  parameter on numpy 1, pass unchanged. (numpy's `set_printoptions(legacy='1.25')` would do it
  too, but only in the thread that sets it.)
"""
import math
import numbers
import struct
import types
import warnings

import numpy as np


def _removed_financial(name):
    def removed(*args, **kwargs):
        raise RuntimeError('numpy.%s was removed from numpy in 1.20; use the numpy-financial '
                           'package (numpy_financial.%s)' % (name, name))
    removed.__name__ = name
    return removed


def _in1d(ar1, ar2, assume_unique=False, invert=False, **kwargs):
    return np.isin(ar1, ar2, assume_unique=assume_unique, invert=invert, **kwargs).ravel()


def _trapz(y, x=None, dx=1.0, axis=-1):
    return np.trapezoid(y, x=x, dx=dx, axis=axis)


def _msort(a):
    return np.sort(a, axis=0)


def _asfarray(a, dtype=np.float64):
    if not np.issubdtype(dtype, np.inexact):
        dtype = np.float64
    return np.asarray(a, dtype=dtype)


def _wrapper(name, replacement):
    def function(*args, **kwargs):
        return replacement(*args, **kwargs)
    function.__name__ = name
    function.__doc__ = 'numpy.%s, removed from numpy 2: calls numpy.%s.' % (
        name, replacement.__name__)
    return function


def _compat_module():
    compat = types.ModuleType('numpy.compat')
    compat.basestring = str  # read by mxnet.numpy.pad: isinstance(mode, np.compat.basestring)
    return compat


# name -> a function making its value (called only when numpy lacks the name)
NAMES = {
    # numpy 1.24 removed the aliases of Python's own types (mxnet.numpy.utils reads np.bool;
    # mxnet.test_utils reads np.int). numpy < 1.24 held the builtins themselves.
    'bool': lambda: bool,
    'int': lambda: int,
    # numpy 2.0 removed these constants (mxnet.numpy.utils, gluon's estimator).
    'PZERO': lambda: 0.0,
    'NZERO': lambda: -0.0,
    'PINF': lambda: math.inf,
    'NINF': lambda: -math.inf,
    'NAN': lambda: math.nan,
    'NaN': lambda: math.nan,
    'Inf': lambda: math.inf,
    # numpy 2 removed these functions; mxnet binds them at import.
    'alltrue': lambda: _wrapper('alltrue', np.all),
    'sometrue': lambda: _wrapper('sometrue', np.any),
    'product': lambda: _wrapper('product', np.prod),
    'cumproduct': lambda: _wrapper('cumproduct', np.cumprod),
    'round_': lambda: _wrapper('round_', np.round),
    'in1d': lambda: _in1d,
    'trapz': lambda: _trapz,
    'msort': lambda: _msort,
    'asfarray': lambda: _asfarray,
    'compat': _compat_module,
}
for _name in ('fv', 'ipmt', 'irr', 'mirr', 'nper', 'npv', 'pmt', 'ppmt', 'pv', 'rate'):
    NAMES[_name] = (lambda name: lambda: _removed_financial(name))(_name)


def _has(name):
    # numpy serves deprecated names through a module __getattr__ that warns: a probe, not a use.
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        try:
            getattr(np, name)
        except AttributeError:
            return False
    return True


def restore_numpy_names():
    """Give numpy every name in NAMES that it lacks; return the names set (none on numpy 1.23)."""
    restored = []
    for name, make in NAMES.items():
        if not _has(name):
            setattr(np, name, make())
            restored.append(name)
    return tuple(restored)


def _recordio_pack(header, s):
    """mxnet.recordio.pack: the header (an array label goes before the payload), then `s`."""
    from mxnet import recordio
    header = recordio.IRHeader(*header)
    if isinstance(header.label, numbers.Number):
        header = header._replace(flag=0)
    else:  # flag holds the label's length; the float32 label values lead the payload
        label = np.asarray(header.label, dtype=np.float32)
        header = header._replace(flag=label.size, label=0)
        s = label.tobytes() + s
    return struct.pack(recordio._IR_FORMAT, *header) + s


def _recordio_pack_img(header, img, quality=95, img_fmt='.jpg'):
    """mxnet.recordio.pack_img: `img` (BGR, as OpenCV reads) encoded by OpenCV, then packed."""
    import cv2
    flag = {'.JPG': cv2.IMWRITE_JPEG_QUALITY, '.JPEG': cv2.IMWRITE_JPEG_QUALITY,
            '.PNG': cv2.IMWRITE_PNG_COMPRESSION}.get(img_fmt.upper())
    ok, buf = cv2.imencode(img_fmt, img, None if flag is None else [flag, quality])
    if not ok:
        raise ValueError('OpenCV cannot encode this image as %s' % img_fmt)
    return _recordio_pack(header, buf.tobytes())


def _numpy1_text(value):
    """str(value) as numpy 1 wrote it if value is a list/tuple holding numpy scalars, else None."""
    if not isinstance(value, (list, tuple)):
        return None
    parts, changed = [], False
    for item in value:
        text = _numpy1_text(item)
        if text is None and isinstance(item, np.generic):
            text = str(item)  # numpy 2's str() of a scalar is numpy 1's repr()
        changed = changed or text is not None
        parts.append(repr(item) if text is None else text)
    if not changed:
        return None
    if isinstance(value, list):
        return '[%s]' % ', '.join(parts)
    return '(%s)' % (parts[0] + ',' if len(parts) == 1 else ', '.join(parts))


def _with_numpy1_values(call, position):
    def call_with_numpy1_values(*args, **kwargs):
        vals = args[position]
        texts = [_numpy1_text(v) for v in vals]
        if any(text is not None for text in texts):
            vals = [v if text is None else text for v, text in zip(vals, texts)]
            args = args[:position] + (vals,) + args[position + 1:]
        return call(*args, **kwargs)
    return call_with_numpy1_values


def patch_mxnet():
    """Adapt MXNet where numpy changed (see the module's doc); return what was patched."""
    patched = []
    if not hasattr(np.ndarray, 'tostring'):
        from mxnet import recordio
        recordio.pack, recordio.pack_img = _recordio_pack, _recordio_pack_img
        patched.append('recordio')
    if repr([np.int64(2)]) != '[2]':
        from mxnet.ndarray import register as nd_register
        from mxnet.symbol import register as sym_register
        # the `vals` argument: _imperative_invoke(handle, ndargs, keys, vals, ...),
        # _symbol_creator(handle, args, kwargs, keys, vals, ...)
        nd_register._imperative_invoke = _with_numpy1_values(nd_register._imperative_invoke, 3)
        sym_register._symbol_creator = _with_numpy1_values(sym_register._symbol_creator, 4)
        patched.append('operator parameters')
    return tuple(patched)
