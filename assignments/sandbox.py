"""The sandbox a probe runs in: the only place where a student's code is ever run.

A probe process (assignments.runner) holds nothing of the grader's: it gets the student's
folder (a copy), the probes it must run (their source only, no check and no expected value)
and the project's `utils`; it hands back data on one pipe and nothing else. The guards:

- bubblewrap (`bwrap`): a filesystem of its own, read-only, showing the Python environment,
  `utils` and the system folders, never the project, the tests or other students' folders;
  writable only a size-capped scratch folder and /tmp (memory file systems, thrown away);
  no network (an empty network namespace); its own process tree, killed as a whole when it
  ends, when it times out or when the grader dies;
- when the grader runs as root, an unprivileged user of its own (uid 64000 + the slot
  number: one fork bomb cannot use up the process count of a neighbour running at the same
  time);
- resource limits: address space, CPU seconds, processes, the size of any file written
  (the captured output too), no core files.

Where bubblewrap is missing or cannot start (a laptop without user namespaces), the probe
runs as a plain process with the resource limits only, and `Sandbox.describe()` says so: the
grader prints that line before grading.
"""
import json
import os
import resource
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER_FILES = ('__init__.py', 'testing.py', 'runner.py')
UID_BASE = 64000
MEMORY_LIMIT = int(os.environ.get('GRADE_MEMORY_LIMIT', 6 * 2**30))  # bytes of address space
FILE_LIMIT = 32 * 2**20  # bytes: any one file, the captured output included
SCRATCH_LIMIT = 64 * 2**20  # bytes: the scratch folder, and /tmp, each
PROCESS_LIMIT = 256  # processes and threads of the probe's user
CHANNEL_LIMIT = 64 * 2**20  # bytes handed back by one probe process
OUTPUT_SHOWN = 4000  # characters of the output kept for the teacher
INSIDE = '/sandbox'  # where the sandbox sees its own files


def _is_root():
    return hasattr(os, 'geteuid') and os.geteuid() == 0


def _python_roots():
    """The folders the probe's Python needs: its installation and the environment's."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix,
             os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
    import site
    for path in site.getsitepackages() + [site.getusersitepackages()]:
        roots.add(path)
    roots = sorted(os.path.realpath(r) for r in roots if os.path.isdir(r))
    # nested ones are bound with their parent
    return [r for r in roots if not any(r != o and r.startswith(o + os.sep) for o in roots)]


def _matplotlib_dir():
    """The grader's matplotlib cache (its font list), so no probe process builds its own."""
    try:
        import matplotlib.font_manager  # noqa: F401  (writes the font list once)
        import matplotlib
        return matplotlib.get_cachedir()
    except Exception:
        return None


def _models_dir():
    home = os.environ.get('MXNET_HOME', os.path.join(os.path.expanduser('~'), '.mxnet'))
    return os.path.join(home, 'models')


class Sandbox:
    """How probe processes are started here, and which guards are up."""

    def __init__(self, use_bwrap=True, hide=()):
        self.bwrap = shutil.which('bwrap') if use_bwrap else None
        self.root = _is_root()
        self.hide = [os.path.realpath(h) for h in hide]
        self.problem = None
        if self.bwrap:
            self.problem = self._try_bwrap()
            if self.problem:
                self.bwrap = None

    # -- which guards ---------------------------------------------------------------------

    def guards(self):
        up = ['memory, CPU time, process count and file size limits']
        down = []
        if self.bwrap:
            up += ['own read-only filesystem view (bubblewrap)', 'no network',
                   'own process tree']
        else:
            down += ['filesystem isolation and no network (%s)' % (
                self.problem or 'bubblewrap is not installed: apt-get install bubblewrap')]
        if self.root:
            up.append('unprivileged user (uid %d+)' % UID_BASE)
        else:
            down.append('unprivileged user (the grader does not run as root: student code '
                        'runs as you)')
        return up, down

    def describe(self):
        up, down = self.guards()
        line = 'sandbox guards up: %s' % '; '.join(up)
        if down:
            line += '. DOWN: %s' % '; '.join(down)
        return line

    def complete(self):
        return not self.guards()[1]

    def _try_bwrap(self):
        try:
            run = subprocess.run(self._bwrap_prefix(None, None, None, 0) +
                                 [sys.executable, '-I', '-c', 'pass'], capture_output=True,
                                 text=True, timeout=60, preexec_fn=self._limits(0, 60))
        except (OSError, subprocess.SubprocessError) as err:
            return 'bubblewrap does not start: %s' % err
        if run.returncode != 0:
            last = (run.stderr.strip().splitlines() or ['exit status %d' % run.returncode])[-1]
            return 'bubblewrap does not start here: %s' % last[:200]
        return None

    # -- starting a probe process ---------------------------------------------------------

    def _bwrap_prefix(self, lib, submission, mxnet_models, slot):
        args = [self.bwrap, '--unshare-net', '--unshare-pid', '--unshare-ipc', '--unshare-uts',
                '--unshare-cgroup-try', '--die-with-parent', '--new-session']
        if not self.root:
            args.append('--unshare-user')
        made = set()

        def parents(path):
            out, parts = [], path.strip(os.sep).split(os.sep)[:-1]
            for i in range(len(parts)):
                folder = os.sep + os.path.join(*parts[:i + 1])
                if folder not in made:
                    made.add(folder)
                    out += ['--perms', '0755', '--dir', folder]
            return out

        for top in ('usr', 'etc', 'bin', 'sbin', 'lib', 'lib32', 'lib64'):
            path = os.sep + top
            if os.path.islink(path):
                args += ['--symlink', os.readlink(path), path]
            elif os.path.isdir(path):
                args += ['--ro-bind', path, path]
            made.add(path)
        for root in _python_roots():
            if root.split(os.sep)[1] in ('usr', 'etc', 'bin', 'sbin', 'lib', 'lib64'):
                continue
            args += parents(root) + ['--ro-bind', root, root]
        for hidden in self.hide:  # the project's own folders, should a bound folder hold them
            if any(hidden.startswith(r + os.sep) for r in _python_roots() + ['/usr', '/etc']):
                args += ['--tmpfs', hidden]
        args += ['--proc', '/proc', '--dev', '/dev',
                 '--perms', '1777', '--size', str(SCRATCH_LIMIT), '--tmpfs', '/tmp',
                 '--perms', '0755', '--dir', INSIDE,
                 '--perms', '1777', '--size', str(SCRATCH_LIMIT), '--tmpfs', INSIDE + '/work']
        if lib:
            args += ['--ro-bind', lib, INSIDE + '/lib', '--perms', '0755', '--dir',
                     INSIDE + '/pkgs', '--ro-bind', os.path.realpath(os.path.join(lib, '..', 'pkgs', 'utils')),
                     INSIDE + '/pkgs/utils']
        if submission:
            args += ['--ro-bind', submission, INSIDE + '/submission']
        mpl = _matplotlib_dir()
        if mpl and os.path.isdir(mpl):  # writable, as matplotlib wants, with the font list
            args += ['--perms', '1777', '--size', str(2**20), '--tmpfs', INSIDE + '/mpl']
            for name in os.listdir(mpl):
                if name.startswith('fontlist') and name.endswith('.json'):
                    args += ['--ro-bind', os.path.join(mpl, name), INSIDE + '/mpl/' + name]
        if mxnet_models and os.path.isdir(mxnet_models):
            args += ['--perms', '0755', '--dir', INSIDE + '/mxnet',
                     '--ro-bind', mxnet_models, INSIDE + '/mxnet/models']
        return args + ['--chdir', '/', '--']

    def _limits(self, slot, cpu_seconds):
        root = self.root

        def apply():
            os.setsid()
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
            cpu = int(cpu_seconds) + 1
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
            if root:  # counted per user: each slot has a user of its own
                resource.setrlimit(resource.RLIMIT_NPROC, (PROCESS_LIMIT, PROCESS_LIMIT))
        return apply

    def start(self, request, scratch, slot, cpu_seconds, output_file):
        """A running probe process: (Popen, the channel's read end).

        scratch holds `lib/` (the runner's files and probes.py) and `submission/` (the copy
        of the student's folder); `request` is what the runner reads."""
        if STOPPING.is_set():
            raise Stopped('grading was interrupted')
        lib, submission = os.path.join(scratch, 'lib'), os.path.join(scratch, 'submission')
        request = dict(request, uid=UID_BASE + slot if self.root else None)
        if self.bwrap:
            inside = {'lib': INSIDE + '/lib', 'pkgs': INSIDE + '/pkgs',
                      'submission': INSIDE + '/submission', 'work': INSIDE + '/work',
                      'tmp': '/tmp', 'mpl': INSIDE + '/mpl'}
            mxnet_home = INSIDE + '/mxnet'
            prefix = self._bwrap_prefix(lib, submission, _models_dir(), slot)
        else:
            work, tmp = os.path.join(scratch, 'work'), os.path.join(scratch, 'tmp')
            for folder in (work, tmp):
                os.makedirs(folder)
                os.chmod(folder, 0o1777)
            inside = {'lib': lib, 'pkgs': os.path.join(scratch, 'pkgs'),
                      'submission': submission, 'work': work, 'tmp': tmp,
                      'mpl': _matplotlib_dir() or tmp}
            mxnet_home = os.path.dirname(_models_dir())
            prefix = []
        request.update(paths=inside)
        env = {'PATH': '/usr/bin:/bin', 'HOME': inside['work'], 'TMPDIR': inside['tmp'],
               'MPLCONFIGDIR': inside['mpl'], 'MXNET_HOME': mxnet_home, 'LANG': 'C.UTF-8',
               'PYTHONDONTWRITEBYTECODE': '1', 'PYTHONHASHSEED': '0',
               'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '2')}
        code = ('import sys; sys.path[:0] = [%r, %r]; from assignments import runner; '
                'runner.main()' % (inside['lib'], inside['pkgs']))
        command = prefix + [sys.executable, '-I', '-c', code, json.dumps(request)]
        read, write = os.pipe()
        request['channel'] = write
        command[-1] = json.dumps(request)
        try:
            with open(output_file, 'wb') as output:
                process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output,
                                           stderr=subprocess.STDOUT, env=env,
                                           pass_fds=(write,), cwd=scratch,
                                           preexec_fn=self._limits(slot, cpu_seconds))
        finally:
            os.close(write)
        return process, read


def prepare_lib(scratch, probes_source, utils_dir):
    """scratch/lib: the runner's own files and probes.py; scratch/pkgs/utils: a link to `utils`
    (bubblewrap binds the folder itself there)."""
    lib = os.path.join(scratch, 'lib')
    package = os.path.join(lib, 'assignments')
    os.makedirs(package)
    for name in RUNNER_FILES:
        shutil.copyfile(os.path.join(HERE, name), os.path.join(package, name))
    with open(os.path.join(lib, 'probes.py'), 'w') as f:
        f.write(probes_source)
    os.makedirs(os.path.join(scratch, 'pkgs'))
    os.symlink(utils_dir, os.path.join(scratch, 'pkgs', 'utils'))
    _readable(lib)


def _readable(folder):
    for root, dirs, files in os.walk(folder):
        os.chmod(root, 0o755)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o644)


class FolderTooLarge(Exception):
    pass


def copy_folder(source, target, max_bytes=SCRATCH_LIMIT // 2, max_files=2000):
    """Regular files and folders only (no links, pipes or devices), world-readable."""
    total, count = 0, 0
    os.makedirs(target)
    for root, dirs, files in os.walk(source):
        dirs[:] = [d for d in dirs if d != '__pycache__'
                   and not os.path.islink(os.path.join(root, d))]
        rel = os.path.relpath(root, source)
        here = os.path.join(target, rel) if rel != '.' else target
        os.makedirs(here, exist_ok=True)
        os.chmod(here, 0o755)
        for name in files:
            path = os.path.join(root, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode) or name.endswith('.pyc'):
                continue
            total += info.st_size
            count += 1
            if total > max_bytes or count > max_files:
                raise FolderTooLarge('the folder %s holds more than %d files or %d MB'
                                     % (source, max_files, max_bytes // 2**20))
            with open(path, 'rb') as src, open(os.path.join(here, name), 'wb') as dst:
                shutil.copyfileobj(src, dst, 2**20)
            os.chmod(os.path.join(here, name), 0o644)


# ---------------------------------------------------------------------------------------------
# The channel: records of an 8-byte length, a JSON header, an 8-byte length and a payload
# (written by runner.send)

class ChannelReader:
    """Parses records as bytes arrive; stops taking bytes past CHANNEL_LIMIT."""

    def __init__(self, limit=CHANNEL_LIMIT):
        self.buffer, self.limit, self.total, self.overflow = bytearray(), limit, 0, False
        self.records = []

    def feed(self, data):
        self.total += len(data)
        if self.total > self.limit:
            self.overflow = True
            return
        self.buffer += data
        while True:
            if len(self.buffer) < 8:
                return
            (head_len,) = struct.unpack('<Q', self.buffer[:8])
            if len(self.buffer) < 16 + head_len:
                return
            (payload_len,) = struct.unpack('<Q', self.buffer[8 + head_len:16 + head_len])
            end = 16 + head_len + payload_len
            if len(self.buffer) < end:
                return
            try:
                header = json.loads(bytes(self.buffer[8:8 + head_len]))
            except ValueError:
                header = None
            if isinstance(header, dict):
                self.records.append((header, bytes(self.buffer[16 + head_len:end])))
            del self.buffer[:end]


def kill_tree(process):
    """SIGKILL the probe's session (bwrap's --die-with-parent takes the rest with it)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.kill()
    except OSError:
        pass


_live = set()
_live_lock = threading.Lock()
STOPPING = threading.Event()  # set on Ctrl-C: no probe process starts any more


class Stopped(Exception):
    pass


def track(process, alive):
    with _live_lock:
        (_live.add if alive else _live.discard)(process)


def kill_all():
    """Every probe process still running (Ctrl-C, or the grader stopping)."""
    STOPPING.set()
    with _live_lock:
        processes = list(_live)
    for process in processes:
        kill_tree(process)


def tail(path, chars=OUTPUT_SHOWN):
    try:
        with open(path, 'rb') as f:
            size = os.path.getsize(path)
            f.seek(max(0, size - chars))
            return f.read().decode('utf-8', 'replace')
    except OSError:
        return ''


def new_scratch():
    scratch = tempfile.mkdtemp(prefix='grade-')
    os.chmod(scratch, 0o755)
    return scratch


def wait_readable(fd, seconds):
    import select
    ready, _, _ = select.select([fd], [], [], max(0.0, seconds))
    return bool(ready)


def now():
    return time.monotonic()
