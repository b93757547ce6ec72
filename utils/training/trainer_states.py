"""A Trainer's saved optimizer states, checked before MXNet unpickles them.

`gluon.Trainer.load_states` hands the file to `pickle.loads`, and a pickle can call any
function it names: a checkpoint passed around a classroom could run code when a run resumes
from it. The states a Trainer writes name only a few classes (its optimizer, a learning-rate
scheduler, NDArray and the bytearray inside NDArray's state; numpy scalars where a setting was
one). `check_trainer_states` unpickles the file once with only those allowed, and NDArray only
as pickling makes it (from no handle, then its saved bytes), so the load that follows, of the
same bytes, calls nothing else. pickle's own restriction hook, `find_class`, is what gluon
lacks here; the class list is MXNet 1.9.1's.
"""
import pickle

import numpy as np
from mxnet import lr_scheduler, ndarray, optimizer

from ..errors import UserError

try:  # numpy 2 (numpy.core is a deprecated alias there)
    from numpy._core.multiarray import scalar as _numpy_scalar
except ImportError:
    from numpy.core.multiarray import scalar as _numpy_scalar

# (module, name) pairs a Trainer's states may name besides optimizers and schedulers
PLAIN = {('builtins', 'bytearray'): bytearray,
         ('numpy', 'dtype'): np.dtype,
         ('numpy.core.multiarray', 'scalar'): _numpy_scalar,
         ('numpy._core.multiarray', 'scalar'): _numpy_scalar}
# module -> (where its classes are found, the base class every allowed one derives from)
KINDS = {'mxnet.optimizer.optimizer': (optimizer, optimizer.Optimizer),
         'mxnet.optimizer': (optimizer, optimizer.Optimizer),
         'mxnet.lr_scheduler': (lr_scheduler, lr_scheduler.LRScheduler)}


class _Refused(pickle.UnpicklingError):
    """What the states ask for is not what a Trainer writes (a damaged file raises others)."""


def _empty_ndarray(handle=None, writable=True):
    """NDArray as its pickle makes it: empty, filled by __setstate__. A handle would be a raw
    pointer taken from the file."""
    if handle is not None:
        raise _Refused('an NDArray built from a handle')
    return ndarray.NDArray(None, writable)


class _StatesUnpickler(pickle.Unpickler):

    def find_class(self, module, name):
        if (module, name) in PLAIN:
            return PLAIN[module, name]
        if (module, name) == ('mxnet.ndarray.ndarray', 'NDArray'):
            return _empty_ndarray
        if module in KINDS:
            namespace, base = KINDS[module]
            found = getattr(namespace, name, None)
            if isinstance(found, type) and issubclass(found, base):
                return found
        raise _Refused('it asks for %s.%s' % (module, name))


def check_trainer_states(path, name=None):
    """Raise UserError (one line, naming `name` or `path`) unless the file at `path` holds
    optimizer states as gluon.Trainer.save_states writes them. A damaged file raises what
    pickle raises (EOFError, pickle.UnpicklingError, ...) for the caller's damage message."""
    try:
        with open(path, 'rb') as f:
            _StatesUnpickler(f).load()
    except _Refused as err:
        raise UserError('%s: the optimizer states in it are refused: %s, which a Trainer\'s '
                        'states never hold (the file may be malicious): delete it to start over'
                        % (name or path, err)) from None
