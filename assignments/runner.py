"""The probe process: imports the student's module and runs probes on it, inside the sandbox.

Started by assignments.grade through assignments.sandbox, never by hand. It reads its request
(a JSON argument), drops to the unprivileged user it is given (when started as root), copies
the student's folder into its scratch folder, imports the student's module and runs the
probes named in the request, one after the other. For each it writes two records on file
descriptor 3, the only channel back: `start`, then `done` with the probe's observations as an
npz file (arrays, numbers and JSON text; never a pickle). It computes no verdict: the checks
run in the grader, on these observations.
"""
import io
import json
import os
import shutil
import struct
import sys

SEED = 12345
CHANNEL = [None, None]  # the descriptor the grader reads (from the request), and our pid


def send(header, payload=b''):
    """One record: an 8-byte length, the JSON header, an 8-byte length, the payload.
    A process the student's code forked ends here instead of reporting."""
    if os.getpid() != CHANNEL[1]:
        os._exit(0)
    head = json.dumps(header).encode()
    data = struct.pack('<Q', len(head)) + head + struct.pack('<Q', len(payload)) + payload
    view = memoryview(data)
    while view:
        view = view[os.write(CHANNEL[0], view):]


def first_line(err):
    text = str(err).strip().splitlines()
    return '%s: %s' % (type(err).__name__, text[0][:200]) if text else type(err).__name__


def drop_privileges(uid):
    if uid is not None and os.getuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


def load_module(path, name):
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def encode(observations):
    """An npz file of the probe's return value: a dict of arrays, numbers and text."""
    import numpy as np
    if not isinstance(observations, dict):
        raise TypeError('a probe returns a dict, not %s' % type(observations).__name__)
    arrays, text = {}, {}
    for key, value in observations.items():
        key = str(key)
        if hasattr(value, 'asnumpy'):
            value = value.asnumpy()
        if isinstance(value, (str, dict)) or value is None:
            text[key] = value
            continue
        if isinstance(value, (list, tuple)):
            value = [v.asnumpy() if hasattr(v, 'asnumpy') else v for v in value]
            try:
                array = np.asarray(value)
            except ValueError:
                array = None
            if array is None or array.dtype == object or array.dtype.kind in 'US':
                text[key] = [v.tolist() if hasattr(v, 'tolist') else v for v in value]
                continue
            value = array
        arrays[key] = np.asarray(value)
    arrays['__text__'] = np.frombuffer(json.dumps(text).encode(), dtype=np.uint8)
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


class Recorded:
    """The student's module as a probe sees it: each call's arguments get a fingerprint, so
    that the build can check the hidden probes call with inputs no public probe uses."""

    def __init__(self, module, calls):
        self._module, self._calls = module, calls

    def __getattr__(self, name):
        value = getattr(self._module, name)
        if not callable(value) or isinstance(value, type):
            return value

        def call(*args, **kwargs):
            self._calls.append([name, fingerprint(list(args) + sorted(kwargs.items()))])
            return value(*args, **kwargs)
        return call


def fingerprint(value):
    import hashlib
    import numpy as np
    if hasattr(value, 'asnumpy'):
        value = value.asnumpy()
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value.astype(np.float64) if value.dtype.kind in 'biuf'
                                    else value.astype(str))
        return 'array%s:%s' % (list(value.shape), hashlib.sha1(data.tobytes()).hexdigest()[:16])
    if isinstance(value, (list, tuple)):
        return [fingerprint(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return repr(value)
    if hasattr(value, 'collect_params'):  # a Gluon block: its layers and its weights
        digest = hashlib.sha1(repr(value).encode())
        for param in value.collect_params().values():
            digest.update(np.ascontiguousarray(param.data().asnumpy()).tobytes())
        return 'block:' + digest.hexdigest()[:16]
    return type(value).__name__


def main():
    request = json.loads(sys.argv[1])
    paths = request['paths']
    CHANNEL[:] = [request['channel'], os.getpid()]
    drop_privileges(request.get('uid'))
    sys.path = [p for p in sys.path if p not in ('', '.')]
    sys.dont_write_bytecode = True
    import random

    import numpy as np
    import utils  # noqa: F401  (OMP_NUM_THREADS before MXNet, numpy names MXNet needs)
    import mxnet as mx
    from assignments import testing  # noqa: F401

    probes = load_module(os.path.join(paths['lib'], 'probes.py'), 'probes')
    work = paths['work']
    for name in os.listdir(paths['submission']):
        source = os.path.join(paths['submission'], name)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(work, name))
        else:
            shutil.copyfile(source, os.path.join(work, name))
    os.chdir(work)
    sys.path.append(work)  # last: the student's files never shadow the grader's modules
    send({'event': 'ready'})
    module_name = os.path.splitext(request['submission_file'])[0]
    try:
        sub = load_module(os.path.join(work, request['submission_file']), module_name)
    except NotImplementedError as err:
        send({'event': 'import_failed', 'status': 'not_implemented',
              'message': 'not implemented yet (%s)' % first_line(err)})
        os._exit(0)
    except BaseException as err:  # SystemExit and KeyboardInterrupt too
        send({'event': 'import_failed', 'status': 'import_error',
              'message': 'does not import: %s' % first_line(err)})
        os._exit(0)
    for name in request['probes']:
        send({'event': 'start', 'probe': name})
        random.seed(SEED)
        np.random.seed(SEED)
        mx.random.seed(SEED)
        calls = []
        payload, status, message = b'', 'ok', ''
        try:
            payload = encode(getattr(probes, name)(Recorded(sub, calls)))
        except NotImplementedError:
            status, message = 'not_implemented', 'not implemented yet'
        except BaseException as err:
            status, message = 'error', first_line(err)
        send({'event': 'done', 'probe': name, 'status': status, 'message': message,
              'calls': calls if request.get('record_calls') else []}, payload)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # threads the student's code may have left running do not hold the exit
