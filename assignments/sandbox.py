"""The sandbox a probe runs in: the only place where a student's code is ever run.

A probe process (assignments.runner) holds nothing of the grader's: it gets the student's
folder (a copy), the probes it must run (their source only, no check and no expected value)
and the project's `utils`; it hands back data on one pipe and nothing else. The guards:

- bubblewrap (`bwrap`): a filesystem of its own, read-only, showing the Python environment,
  `utils` and the system folders, never the project, the tests, other students' folders or
  the data a hidden check judges with; writable only a size-capped scratch folder, /tmp and
  /dev/shm (memory file systems of this probe process alone, thrown away with it);
  no network (an empty network namespace); its own IPC namespace (no SysV segment outlives
  it); its own process tree, killed as a whole when it ends, when it times out or when the
  grader dies;
- when the grader runs as root, an unprivileged user of its own (uid 64000 + the slot
  number: one fork bomb cannot use up the process count of a neighbour running at the same
  time); as a normal user, a user namespace of its own, where the process count is counted
  apart from the teacher's processes;
- resource limits: address space, CPU seconds, processes, the size of any file written
  (the captured output too), no core files.

Where bubblewrap is missing or cannot start, student code could read the hidden tests and
write the teacher's files: `Sandbox.refusal()` says so in one line and nothing runs, unless
the teacher declares the machine disposable (GRADE_DISPOSABLE_CONTAINER=1, or the grader's
--disposable-container), as in a Gradescope container. Then the probe runs as a plain process
with the resource limits, and, where util-linux `unshare` works, its own process tree, IPC
namespace and no network; `Sandbox.describe()` lists what is up and what is down.
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
DISPOSABLE_ENV = 'GRADE_DISPOSABLE_CONTAINER'  # '1': grade without bubblewrap (see refusal())
DISPOSABLE_FLAG = '--disposable-container'


def thread_settings(jobs):
    """OMP_NUM_THREADS (and the user's OpenMP settings) for one of `jobs` processes at once."""
    from utils.threads import job_environment  # standard library only: no MXNet here
    return job_environment(jobs)


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


def _others_can_enter(path):
    """Whether every folder from / down to path lets other users in."""
    path = os.path.realpath(path)
    while True:
        try:
            if not os.stat(path).st_mode & 0o001:
                return False
        except OSError:
            return False
        if path == os.sep:
            return True
        path = os.path.dirname(path)


def _judged_data():
    """Files a hidden check judges with that sit in a folder the sandbox shows (a2's few-shot
    photos ship inside scikit-image): the sandbox shows them empty. Looked for where a probe
    imports from, the environment's site-packages (not sys.path, which may name the cwd)."""
    import site
    found = []
    for folder in site.getsitepackages() + [site.getusersitepackages()]:
        path = os.path.join(folder, 'skimage', 'data', 'lfw_subset.npy')
        if os.path.isfile(path) and os.path.realpath(path) not in found:
            found.append(os.path.realpath(path))
    return found


def _unshare_prefix(root):
    """util-linux unshare, where bubblewrap is missing: its own process tree (killed whole with
    it), IPC namespace and network; a normal user also gets a user namespace (where the
    process count is counted apart from the teacher's)."""
    command = shutil.which('unshare')
    if not command:
        return None
    prefix = [command] + ([] if root else ['--user', '--map-root-user']) + [
        '--pid', '--fork', '--kill-child', '--mount-proc', '--ipc', '--net', '--']
    try:
        run = subprocess.run(prefix + ['true'], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return prefix if run.returncode == 0 else None


def _models_dir():
    home = os.environ.get('MXNET_HOME', os.path.join(os.path.expanduser('~'), '.mxnet'))
    return os.path.join(home, 'models')


class Sandbox:
    """How probe processes are started here, and which guards are up."""

    def __init__(self, use_bwrap=True, hide=(), use_zygote=True, disposable=None,
                 use_unshare=True):
        """disposable: the teacher says student code may run without bubblewrap (None: the
        environment variable GRADE_DISPOSABLE_CONTAINER=1 says so)."""
        if disposable is None:
            disposable = os.environ.get(DISPOSABLE_ENV) == '1'
        self.disposable = bool(disposable)
        self.use_zygote = use_zygote
        self._zygote, self._zygote_lock = None, threading.Lock()
        self.bwrap = shutil.which('bwrap') if use_bwrap else None
        self.root = _is_root()
        self.hide = [os.path.realpath(h) for h in hide]
        self.problem = None
        if self.bwrap:
            self.problem = self._try_bwrap()
            if self.problem:
                self.bwrap = None
        # without bubblewrap the probe's user must be able to read the Python installation
        self.own_user = self.root and (bool(self.bwrap) or all(
            _others_can_enter(p) for p in _python_roots()))
        self.unshare = None
        if not self.bwrap and use_unshare:
            self.unshare = _unshare_prefix(self.root)
        # RLIMIT_NPROC counts the processes of a user id, in its user namespace: it holds a
        # probe alone where the probe has a user id of its own (root) or a user namespace
        # of its own (a normal user with bubblewrap or unshare); otherwise it would count
        # the teacher's own processes, or not apply at all (root).
        self.process_limit = self.own_user or (not self.root and bool(
            self.bwrap or self.unshare))

    # -- which guards ---------------------------------------------------------------------

    def guards(self):
        """(guards up, guards down): each a short phrase; the line lists exactly these."""
        up = ['memory, CPU time and file size limits']
        down = []
        if self.process_limit:
            up.append('process count limit (%d)' % PROCESS_LIMIT)
        elif self.root:
            down.append('process count limit (student code runs as root, which it does '
                        'not hold)')
        else:
            down.append('process count limit (it would count your own processes)')
        if self.bwrap:
            up += ['own read-only filesystem view (bubblewrap)', 'no network',
                   'own process tree', 'own IPC namespace, /tmp and /dev/shm per probe process']
        else:
            if self.unshare:
                up += ['own process tree, IPC namespace and no network (unshare)']
            else:
                down.append('own process tree, IPC namespace and no network (util-linux '
                            'unshare does not start here)')
            down.append('filesystem isolation: student code can read the hidden tests and '
                        'the solutions and write what its user may (%s)' % (
                            self.problem or 'bubblewrap is not installed'))
        if self.own_user:
            up.append('unprivileged user (uid %d+)' % UID_BASE)
        elif self.root:
            down.append('unprivileged user (the Python installation is not readable by other '
                        'users and bubblewrap is missing: student code runs as root)')
        else:
            down.append('unprivileged user (the grader does not run as root: student code '
                        'runs as you%s)' % (', inside its own view' if self.bwrap else ''))
        return up, down

    def describe(self):
        up, down = self.guards()
        line = 'sandbox guards up: %s' % '; '.join(up)
        if down:
            line += '. DOWN: %s' % '; '.join(down)
        return line

    def complete(self):
        return not self.guards()[1]

    def refusal(self):
        """None where student code may run here, else the one line that says why not and
        what to do: without bubblewrap, a probe could read the hidden tests and the solutions
        and write the teacher's files, so nothing runs unless the teacher declares the machine
        disposable."""
        if self.bwrap or self.disposable:
            return None
        return ('no sandbox here (%s): student code could read the hidden tests and change '
                'your files; install bubblewrap (apt-get install bubblewrap), or, only in a '
                'disposable container such as Gradescope\'s, pass %s or set %s=1 (see '
                'docs/teachers.md)' % (self.problem or 'bubblewrap is not installed',
                                       DISPOSABLE_FLAG, DISPOSABLE_ENV))

    def _check_allowed(self):
        if STOPPING.is_set():
            raise Stopped('grading was interrupted')
        problem = self.refusal()
        if problem:
            raise Refused(problem)

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
        # /tmp first, so that a Python installation or environment under /tmp is bound on top
        # of the empty one rather than hidden by it
        args += ['--perms', '1777', '--size', str(SCRATCH_LIMIT), '--tmpfs', '/tmp']
        made.add('/tmp')
        for root in _python_roots():
            if root.split(os.sep)[1] in ('usr', 'etc', 'bin', 'sbin', 'lib', 'lib64'):
                continue
            args += parents(root) + ['--ro-bind', root, root]
        for hidden in self.hide:  # the project's own folders, should a bound folder hold them
            if any(hidden.startswith(r + os.sep) for r in _python_roots() + ['/usr', '/etc']):
                args += ['--tmpfs', hidden]
        for data in _judged_data():
            if any(data.startswith(r + os.sep) for r in _python_roots() + ['/usr']):
                args += ['--ro-bind', '/dev/null', data]
        args += ['--proc', '/proc', '--dev', '/dev',
                 '--perms', '1777', '--size', str(SCRATCH_LIMIT), '--tmpfs', '/dev/shm',
                 '--perms', '0755', '--dir', INSIDE,
                 '--perms', '1777', '--size', str(SCRATCH_LIMIT), '--tmpfs', INSIDE + '/work']
        if lib:
            utils_dir = os.path.realpath(os.path.join(lib, '..', 'pkgs', 'utils'))
            args += ['--ro-bind', lib, INSIDE + '/lib', '--perms', '0755', '--dir',
                     INSIDE + '/pkgs', '--ro-bind', utils_dir, INSIDE + '/pkgs/utils']
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

    jobs = 1  # probe processes at once: they share the CPUs (the grader's --jobs)

    def environment(self, inside, mxnet_home):
        return dict({'PATH': '/usr/bin:/bin', 'HOME': inside['work'], 'TMPDIR': inside['tmp'],
                     'MPLCONFIGDIR': inside['mpl'], 'MXNET_HOME': mxnet_home,
                     'LANG': 'C.UTF-8', 'PYTHONDONTWRITEBYTECODE': '1', 'PYTHONHASHSEED': '0'},
                    **thread_settings(self.jobs))

    # -- the zygote, where bubblewrap runs as root ----------------------------------------

    def zygote(self):
        """The running zygote (started, or started again, on demand), or None."""
        if not (self.bwrap and self.root and self.use_zygote):
            return None
        with self._zygote_lock:
            if self._zygote is not None and not self._zygote.alive():
                self._zygote.close()
                self._zygote = None
            if self._zygote is None:
                self._zygote = Zygote(self)
            return self._zygote

    def self_test(self):
        """Start one probe process on an empty submission: None if it reports `ready` and
        ends cleanly, else the reason (one line)."""
        problem = self.refusal()
        if problem:
            return problem
        zygote = self.zygote()
        scratch = zygote.new_job() if zygote else new_scratch()
        try:
            prepare_lib(scratch, '', utils_folder())
            os.makedirs(os.path.join(scratch, 'submission'))
            with open(os.path.join(scratch, 'submission', 'empty.py'), 'w'):
                pass
            _readable(scratch)
            request = {'probes': [], 'submission_file': 'empty.py'}
            output = os.path.join(scratch, 'output.txt')
            if zygote:
                process, channel = self.start_forked(request, scratch, 0, 120)
            else:
                process, channel = self.start(request, scratch, 0, 120, output)
            reader, end = ChannelReader(), now() + 300
            try:
                while now() < end:
                    if wait_readable(channel, 0.5):
                        try:
                            chunk = os.read(channel, 65536)
                        except BlockingIOError:
                            chunk = b''
                        reader.feed(chunk)
                        if not chunk:
                            if process.poll() is not None:
                                break
                            time.sleep(0.02)
                    elif process.poll() is not None:
                        break
            finally:
                kill_tree(process)
                process.wait()
                os.close(channel)
            if any(h.get('event') == 'ready' for h, _ in reader.records) and \
                    process.returncode == 0:
                return None
            last = (tail(output, 2000).strip().splitlines() or [''])[-1]
            if zygote and not zygote.alive():
                last = (tail(os.path.join(zygote.jobs, '.zygote.log'), 2000).strip()
                        .splitlines() or [''])[-1]
            return 'a probe process does not start (exit status %s): %s' % (
                process.returncode, last[:200])
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def close(self):
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None

    def start_forked(self, request, job_dir, slot, cpu_seconds):
        """Like start(), through the zygote: job_dir holds lib/ and submission/."""
        self._check_allowed()
        zygote = self.zygote()
        request = dict(request, uid=UID_BASE + slot, channel=None, paths={
            'lib': INSIDE + '/lib', 'submission': INSIDE + '/submission',
            'work': INSIDE + '/work'}, limits={
            'file': FILE_LIMIT, 'memory': MEMORY_LIMIT, 'cpu': int(cpu_seconds) + 1,
            'processes': PROCESS_LIMIT, 'scratch': SCRATCH_LIMIT})
        return zygote.start(request, job_dir)

    def _limits(self, slot, cpu_seconds):
        def apply():
            os.setsid()
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
            cpu = int(cpu_seconds) + 1
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
            # the process count: set by the runner, once in its own user (namespace)
        return apply

    def start(self, request, scratch, slot, cpu_seconds, output_file):
        """A running probe process: (Popen, the channel's read end).

        scratch holds `lib/` (the runner's files and probes.py) and `submission/` (the copy
        of the student's folder); `request` is what the runner reads."""
        self._check_allowed()
        lib, submission = os.path.join(scratch, 'lib'), os.path.join(scratch, 'submission')
        request = dict(request, uid=UID_BASE + slot if self.own_user else None,
                       process_limit=PROCESS_LIMIT if self.process_limit else None)
        if self.bwrap:
            inside = {'lib': INSIDE + '/lib', 'pkgs': INSIDE + '/pkgs',
                      'submission': INSIDE + '/submission', 'work': INSIDE + '/work',
                      'tmp': '/tmp', 'mpl': INSIDE + '/mpl'}
            mxnet_home = INSIDE + '/mxnet'
            prefix = self._bwrap_prefix(lib, submission, _models_dir(), slot)
        else:
            # folders of this probe process alone, removed with its scratch folder
            work, tmp, mpl = (os.path.join(scratch, name) for name in ('work', 'tmp', 'mpl'))
            for folder in (work, tmp, mpl):
                os.makedirs(folder)
                os.chmod(folder, 0o1777)
            _copy_font_list(mpl)
            inside = {'lib': lib, 'pkgs': os.path.join(scratch, 'pkgs'),
                      'submission': submission, 'work': work, 'tmp': tmp, 'mpl': mpl}
            mxnet_home = os.path.dirname(_models_dir())
            prefix = list(self.unshare or [])
        request.update(paths=inside)
        env = self.environment(inside, mxnet_home)
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


def _copy_font_list(folder):
    mpl = _matplotlib_dir()
    if mpl and os.path.isdir(mpl):
        for name in os.listdir(mpl):
            if name.startswith('fontlist') and name.endswith('.json'):
                shutil.copyfile(os.path.join(mpl, name), os.path.join(folder, name))
                os.chmod(os.path.join(folder, name), 0o644)


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


def copy_folder(source, target, max_bytes=SCRATCH_LIMIT // 2, max_files=2000, skip=()):
    """Regular files and folders only (no links, pipes or devices), world-readable; not the
    files named in `skip`."""
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
            if not stat.S_ISREG(info.st_mode) or name.endswith('.pyc') or path in skip:
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
    if isinstance(process, ForkedProcess):
        if process.poll() is None:
            process.kill()
        return
    family = _descendants(process.pid)  # children that left the session (no namespace)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.kill()
    except OSError:
        pass
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _descendants(pid):
    """pids of the processes under pid, from /proc (empty where there is none)."""
    parents = {}
    try:
        names = os.listdir('/proc')
    except OSError:
        return []
    for name in names:
        if name.isdigit():
            try:
                with open('/proc/%s/stat' % name, 'rb') as f:
                    parents[int(name)] = int(f.read().rsplit(b')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, stack = [], [pid]
    while stack:
        parent = stack.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found += children
        stack += children
    return found


_live = set()
_live_lock = threading.Lock()
STOPPING = threading.Event()  # set on Ctrl-C: no probe process starts any more


class Stopped(Exception):
    pass


class Refused(Exception):
    """No probe process may start here (see Sandbox.refusal)."""


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


# ---------------------------------------------------------------------------------------------
# The zygote: one sandboxed process that imports MXNet once and forks a probe process per
# request (assignments.runner.zygote); used where bubblewrap runs as root.

class ForkedProcess:
    """A probe process forked by the zygote, seen from the grader (like a Popen)."""

    def __init__(self, zygote, job_id, job_dir):
        self.zygote, self.job_id, self.job_dir = zygote, job_id, job_dir
        self.returncode = None
        self.pid = None

    def poll(self):
        if self.returncode is None:
            try:
                with open(os.path.join(self.job_dir, 'exit')) as f:
                    self.returncode = int(f.read())
            except (OSError, ValueError):
                if not self.zygote.alive():
                    self.returncode = -9
        return self.returncode

    def wait(self, timeout=30):
        end = now() + timeout
        while self.poll() is None and now() < end:
            time.sleep(0.02)
        return self.returncode

    def kill(self):
        self.zygote.send({'kill': self.job_id})


class Zygote:
    def __init__(self, box):
        self.box = box
        self.jobs = tempfile.mkdtemp(prefix='grade-jobs-')
        os.chmod(self.jobs, 0o755)
        self.runner_lib = os.path.join(self.jobs, '.runner')
        prepare_lib(self.runner_lib + '.scratch', '', utils_folder())
        self.lib = os.path.join(self.runner_lib + '.scratch', 'lib')
        self.pkgs = os.path.join(self.runner_lib + '.scratch', 'pkgs')
        self.lock = threading.Lock()
        self.count = 0
        prefix = box._bwrap_prefix(None, None, _models_dir(), 0)[:-3]  # without --chdir / --
        prefix += ['--ro-bind', self.lib, INSIDE + '/lib-runner',
                   '--perms', '0755', '--dir', INSIDE + '/pkgs',
                   '--ro-bind', os.path.realpath(os.path.join(self.pkgs, 'utils')),
                   INSIDE + '/pkgs/utils',
                   '--bind', self.jobs, INSIDE + '/jobs',
                   '--perms', '0755', '--dir', INSIDE + '/lib',
                   '--perms', '0755', '--dir', INSIDE + '/submission']
        for cap in ('CAP_SYS_ADMIN', 'CAP_SETUID', 'CAP_SETGID', 'CAP_KILL',
                    'CAP_SYS_RESOURCE', 'CAP_DAC_OVERRIDE'):
            prefix += ['--cap-add', cap]
        prefix += ['--chdir', '/', '--']
        code = ('import sys; sys.path[:0] = [%r, %r]; from assignments import runner; '
                'runner.zygote()' % (INSIDE + '/lib-runner', INSIDE + '/pkgs'))
        log = os.open(os.path.join(self.jobs, '.zygote.log'), os.O_WRONLY | os.O_CREAT, 0o600)
        self.process = subprocess.Popen(
            prefix + [sys.executable, '-I', '-c', code], stdin=subprocess.PIPE,
            stdout=log, stderr=subprocess.STDOUT, env=box.environment(
                {'work': INSIDE + '/work', 'tmp': '/tmp', 'mpl': INSIDE + '/mpl'},
                INSIDE + '/mxnet'), start_new_session=True)
        os.close(log)
        track(self.process, True)

    def alive(self):
        return self.process.poll() is None

    def send(self, message):
        with self.lock:
            if not self.alive():
                return False
            try:
                self.process.stdin.write((json.dumps(message) + '\n').encode())
                self.process.stdin.flush()
            except OSError:
                return False
            return True

    def start(self, request, job_dir):
        """The job's folder holds lib/ and submission/; returns (process, channel fd)."""
        job_id = os.path.basename(job_dir)
        fifo = os.path.join(job_dir, 'channel')
        os.mkfifo(fifo, 0o600)
        channel = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        process = ForkedProcess(self, job_id, job_dir)
        if not self.send({'run': job_id, 'request': request}):
            process.returncode = -9
        return process, channel

    def new_job(self):
        with self.lock:
            self.count += 1
            job = os.path.join(self.jobs, 'job%d' % self.count)
        os.makedirs(job)
        os.chmod(job, 0o755)
        return job

    def close(self):
        try:
            self.process.stdin.close()
        except OSError:
            pass
        kill_tree(self.process)
        self.process.wait()
        track(self.process, False)
        shutil.rmtree(self.jobs, ignore_errors=True)
        shutil.rmtree(self.runner_lib + '.scratch', ignore_errors=True)


def utils_folder():
    """The `utils` package's folder, which the probe processes import from."""
    import utils
    return os.path.dirname(os.path.abspath(utils.__file__))
