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
    """The exception as one line, its type first (utils.errors, which _imports() loaded
    before any student code ran)."""
    from utils.errors import one_line
    return one_line(err, 200, named=True)


def drop_privileges(uid):
    if uid is not None and os.getuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


def limit_processes(limit):
    """RLIMIT_NPROC, set once in the probe's own user id (root: after the drop) or its own
    user namespace (a normal user): there it counts this probe's processes alone."""
    if limit:
        import resource
        resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))


def load_module(path, name):
    """utils.files.load_module, but entered in sys.modules before it runs: the student's code
    may look itself up there (pickle, dataclasses, typing)."""
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


def _imports():
    """What every probe needs, imported before any student code (in the zygote: once)."""
    sys.path = [p for p in sys.path if p not in ('', '.')]
    sys.dont_write_bytecode = True
    import numpy  # noqa: F401
    import utils  # noqa: F401  (OMP_NUM_THREADS before MXNet, numpy names MXNet needs)
    import mxnet  # noqa: F401
    import utils.errors  # noqa: F401  (first_line's)
    import utils.training  # noqa: F401  (seed_everything)
    from assignments import testing  # noqa: F401


def main():
    """One probe process for one request (the grader's way without a zygote)."""
    request = json.loads(sys.argv[1])
    drop_privileges(request.get('uid'))
    limit_processes(request.get('process_limit'))
    _imports()
    serve(request, request['channel'])


def serve(request, channel):
    """Import the student's module and run the probes; never returns."""
    from utils.training.loop import seed_everything
    CHANNEL[:] = [channel, os.getpid()]
    paths = request['paths']
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
        seed_everything(SEED)
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


# ---------------------------------------------------------------------------------------------
# The zygote: MXNet imported once inside the sandbox; a fork per request, each fork in a
# mount and IPC namespace of its own (its own scratch, /tmp, /dev/shm and matplotlib folder,
# its job's files only; no SysV segment outlives it), then an unprivileged user. It runs no
# student code itself.

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = \
    1, 2, 4, 32, 4096, 16384, 1 << 18
CLONE_NEWNS, CLONE_NEWIPC = 0x00020000, 0x08000000


def _libc():
    import ctypes
    import ctypes.util
    libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)
    return libc, ctypes


def _mount(source, target, fstype, flags, data=None):
    libc, ctypes = _libc()
    if libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(),
                  ctypes.c_ulong(flags), data and data.encode()) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, 'mount %s on %s: %s' % (source, target, os.strerror(errno)))


def _python_roots_under_tmp():
    roots = sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)
                    if os.path.realpath(p).startswith('/tmp/')})
    return [r for r in roots if not any(r.startswith(o + os.sep) for o in roots)]


def _own_mounts(job, limits):
    """This fork's view: its job's files read-only, its own writable folders, no other job;
    its own IPC namespace. Nothing another fork wrote is seen, nothing written outlives it."""
    libc, ctypes = _libc()
    if libc.unshare(CLONE_NEWNS | CLONE_NEWIPC) != 0:
        raise OSError(ctypes.get_errno(), 'unshare of the mount and IPC namespaces failed')
    _mount(None, '/', None, MS_REC | MS_PRIVATE)
    # matplotlib's folder, shared by the zygote's mounts: a fresh one with the font list
    mpl, fonts = '/sandbox/mpl', {}
    if os.path.isdir(mpl):
        for name in os.listdir(mpl):
            with open(os.path.join(mpl, name), 'rb') as f:
                fonts[name] = f.read()
        _mount('tmpfs', mpl, 'tmpfs', MS_NOSUID | MS_NODEV, 'size=%d,mode=1777' % 2**20)
        for name, data in fonts.items():
            with open(os.path.join(mpl, name), 'wb') as f:
                f.write(data)
    # A Python installation under /tmp (a project checked out there) would be hidden by the
    # new /tmp: held by a descriptor, and bound again on top of it.
    held = [(root, os.open(root, os.O_PATH)) for root in _python_roots_under_tmp()]
    size = 'size=%d,mode=1777' % limits['scratch']
    for target in ('/sandbox/work', '/tmp', '/dev/shm'):
        _mount('tmpfs', target, 'tmpfs', MS_NOSUID | MS_NODEV, size)
    for root, fd in held:
        os.makedirs(root)
        _mount('/proc/self/fd/%d' % fd, root, None, MS_BIND | MS_REC)
        _mount(None, root, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(fd)
    for name in ('lib', 'submission'):
        target = '/sandbox/' + name
        _mount(os.path.join(job, name), target, None, MS_BIND | MS_REC)
        _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    _mount('tmpfs', '/sandbox/jobs', 'tmpfs', MS_RDONLY, 'size=4096,mode=0755')
    _cap_shared_memory(limits['scratch'])


def _cap_shared_memory(total):
    """SysV segments outside the address space limit: at most `total` bytes in this fork's IPC
    namespace. Set through a procfs of its own (bubblewrap's /proc/sys is read-only)."""
    proc = '/tmp/.proc'
    os.mkdir(proc)
    _mount('proc', proc, 'proc', MS_NOSUID | MS_NODEV | 8)  # 8: MS_NOEXEC
    try:
        for name, value in (('shmmax', total), ('shmall', total // os.sysconf('SC_PAGE_SIZE'))):
            with open(os.path.join(proc, 'sys', 'kernel', name), 'w') as f:
                f.write(str(value))
    finally:
        libc, _ = _libc()
        libc.umount2(proc.encode(), 2)  # MNT_DETACH
        os.rmdir(proc)


def _limit(limits):
    import resource
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits['file'], limits['file']))
    with open('/proc/self/status') as f:  # the zygote's own mappings count too
        vm = [int(line.split()[1]) * 1024 for line in f if line.startswith('VmSize:')][0]
    memory = vm + limits['memory']
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (limits['cpu'], limits['cpu'] + 5))
    if os.getuid() == 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (limits['processes'], limits['processes']))


def _child(job_id, request):
    job = os.path.join('/sandbox/jobs', job_id)
    try:
        os.setsid()
        out = os.open(os.path.join(job, 'output.txt'), os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                      0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        os.close(null)
        channel = os.open(os.path.join(job, 'channel'), os.O_WRONLY)
        _own_mounts(job, request['limits'])
        _limit(request['limits'])
        libc, _ = _libc()
        if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS: no setuid program helps
            raise OSError('prctl(PR_SET_NO_NEW_PRIVS) failed')
        drop_privileges(request.get('uid'))
    except BaseException as err:
        sys.stderr.write('the sandbox could not set up this probe process: %s\n' % err)
        os._exit(71)
    serve(request, channel)


def _kill_user(uid):
    """Every process of `uid` (a fork bomb's children that left the session too)."""
    if uid is None or os.getuid() != 0:
        return
    import signal
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def zygote():
    """Requests on stdin, one JSON per line: {"run": id, "request": ...} forks a probe
    process; {"kill": id} kills it and every process of its user. When a fork ends, its exit
    status goes into the job's folder as `exit`."""
    import select
    import signal
    _imports()
    running = {}  # pid -> (job id, uid)
    stdin = sys.stdin.buffer
    print('zygote ready', flush=True)
    buffer = b''
    while True:
        ready, _, _ = select.select([stdin], [], [], 0.05)
        if ready:
            chunk = os.read(stdin.fileno(), 65536)
            if not chunk:
                break
            buffer += chunk
            while b'\n' in buffer:
                line, buffer = buffer.split(b'\n', 1)
                message = json.loads(line)
                if 'run' in message:
                    pid = os.fork()
                    if pid == 0:
                        _child(message['run'], message['request'])
                    running[pid] = (message['run'], message['request'].get('uid'))
                elif 'kill' in message:
                    for pid, (job_id, uid) in list(running.items()):
                        if job_id == message['kill']:
                            try:
                                os.killpg(pid, signal.SIGKILL)
                            except OSError:
                                pass
                            _kill_user(uid)
        while running:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            job_id, uid = running.pop(pid, (None, None))
            if job_id is None:
                continue
            _kill_user(uid)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            exit_file = os.path.join('/sandbox/jobs', job_id, 'exit')
            with open(exit_file + '.tmp', 'w') as f:
                f.write(str(code))
            os.replace(exit_file + '.tmp', exit_file)
