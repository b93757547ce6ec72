"""The sandbox from the inside: what a probe process can see, write and reach, whether the
guards line claims only guards that hold, and what the grader does where there is no sandbox.

Every file a probe must not read or change is a copy in a temporary folder: a guard that is
down must not cost the checkout anything.
"""
import ctypes
import ctypes.util
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

import pytest

from assignments import build, grading, probe_runs, sandbox, submissions, tests_files
from tests.test_assignments import ROOT

INVENTORY_TESTS = '''
from assignments.testing import graded, probe

SUBMISSION_FILE = 'look.py'


@probe(timeout=60)
def look_around(sub):
    return sub.look()


@probe(timeout=60)
def leave_traces(sub):
    return sub.leave()


@probe(timeout=60)
def find_traces(sub):
    return sub.find()


@graded(1, probe=look_around)
def test_nothing(seen):
    pass


@graded(1, probe=leave_traces)
def test_left(seen):
    pass


@graded(1, probe=find_traces)
def test_found(seen):
    pass
'''

INVENTORY = '''
import ctypes
import ctypes.util
import os
import resource
import socket
import sys
import time

SECRETS = SECRET_PATHS
SHM_KEY = SHM_KEY_VALUE
TRACE = 'trace-of-an-earlier-probe'


def attempt(action):
    try:
        action()
        return 'done'
    except Exception as err:
        return type(err).__name__


FORKER = """
import os, sys, time
children = []
for _ in range(int(sys.argv[1])):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    children.append(pid)
for pid in children:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
print(len(children))
"""


def forks(count):
    """How many children a plain Python process started from here could have at once
    (not this one: MXNet restarts its threads after each fork, and would abort)."""
    read, write = os.pipe()
    actions = [(os.POSIX_SPAWN_DUP2, write, 1), (os.POSIX_SPAWN_CLOSE, read)]
    pid = os.posix_spawn(sys.executable, [sys.executable, '-I', '-c', FORKER, str(count)],
                         {}, file_actions=actions)
    os.close(write)
    with os.fdopen(read) as f:
        out = f.read()
    os.waitpid(pid, 0)
    return int(out or -1)


def shm_exists(key):
    libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)
    return libc.shmget(key, 0, 0) != -1


def look():
    seen = {'uid': os.getuid(), 'cwd': os.getcwd(), 'sys_path': sys.path,
            'tmp': os.listdir('/tmp'), 'fds': sorted(os.listdir('/proc/self/fd')),
            'pids': len([p for p in os.listdir('/proc') if p.isdigit()])}
    seen['fd_targets'] = [os.readlink('/proc/self/fd/' + fd) for fd in seen['fds']
                          if os.path.exists('/proc/self/fd/' + fd)]
    seen['read'] = [attempt(lambda p=p: open(p).read()) for p in SECRETS]
    seen['write'] = [attempt(lambda p=p: open(p, 'a').write('x')) for p in SECRETS] + [
        attempt(lambda: open('/sandbox/lib/probes.py', 'a').write('x'))]
    seen['connect'] = attempt(lambda: socket.create_connection(('1.1.1.1', 53), timeout=3))
    import skimage
    seen['skimage'] = skimage.__file__
    from skimage import data
    seen['photos'] = attempt(data.lfw_subset)  # what a2's few-shot check judges with
    seen['own_file'] = attempt(lambda: open('mine.txt', 'w').write('fine'))
    seen['limits'] = {name: list(resource.getrlimit(getattr(resource, name)))
                      for name in ('RLIMIT_NPROC', 'RLIMIT_AS', 'RLIMIT_FSIZE', 'RLIMIT_CPU')}
    seen['outside_shm'] = shm_exists(SHM_KEY)
    seen['forks'] = forks(400)
    return seen


def writable_folders():
    found = []
    for top, dirs, files in os.walk('/'):
        if top in ('/proc', '/sys') or top.count('/') > 3:
            dirs[:] = []
            continue
        if os.access(top, os.W_OK):
            found.append(top)
    return found + [os.environ.get(k, '/') for k in ('HOME', 'TMPDIR', 'MPLCONFIGDIR')]


def leave():
    left = []
    for folder in writable_folders():
        try:
            with open(os.path.join(folder, TRACE), 'w') as f:
                f.write(open('/sandbox/lib/probes.py').read())
            left.append(folder)
        except OSError:
            pass
    libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)
    segment = libc.shmget(SHM_KEY + 1, 2**20, 0o1666)  # IPC_CREAT, readable by anyone
    # how much SysV shared memory it may hold outside its address space (untouched segments
    # of 32 MB, removed again)
    made = []
    while len(made) < 64:
        more = libc.shmget(0, 32 * 2**20, 0o1600)  # IPC_PRIVATE
        if more == -1:
            break
        made.append(more)
    for more in made:
        libc.shmctl(more, 0, None)  # IPC_RMID
    return {'left': left, 'segment': segment, 'shm_bytes': len(made) * 32 * 2**20}


def find():
    found = [f for f in writable_folders() if os.path.exists(os.path.join(f, TRACE))]
    return {'found': found or 'nothing', 'segment': shm_exists(SHM_KEY + 1)}
'''

SHM_KEY = 0x67a11e0


def _libc():
    return ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)


def inventory(folder, secrets):
    """tests/a9_look/tests.py and student/a9_look/look.py under folder; its tests."""
    tests_dir = os.path.join(folder, 'tests', 'a9_look')
    student = os.path.join(folder, 'student', 'a9_look')
    os.makedirs(tests_dir)
    os.makedirs(student)
    with open(os.path.join(tests_dir, 'tests.py'), 'w') as f:
        f.write(INVENTORY_TESTS)
    with open(os.path.join(student, 'look.py'), 'w') as f:
        f.write(INVENTORY.replace('SECRET_PATHS', repr(secrets)).replace(
            'SHM_KEY_VALUE', str(SHM_KEY)))
    return tests_files.read_all_tests(os.path.join(folder, 'tests'))


def probe(box, folder, tests, name, copy='copy'):
    target = os.path.join(folder, copy)
    submissions.submission_source(os.path.join(folder, 'student'), 'a9_look', 'look.py',
                                  target)
    job = probe_runs.Job('a9_look', tests[0].tests_file, 'look.py', target, box,
                         probe_runs.probe_slots(1), None)
    return probe_runs.run_probes(job, {name: 60})[name]


def secret_copies(folder):
    """Copies of a hidden tests file and a solution, and a lure in the grader's temp folder:
    what a probe must neither read nor change."""
    secrets = []
    for name in ('tests.py', 'boxes.py'):
        target = os.path.join(folder, 'teacher', name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(ROOT, 'assignments', 'a4_iou_loss', name), target)
        secrets.append(target)
    lure = os.path.join(folder, 'skimage.py')
    with open(lure, 'w') as f:
        f.write('raise SystemExit("the lure ran")\n')
    return secrets + [lure]


def claims_hold(line, data, secrets_unchanged):
    """Each guard the line says is up, against what the probe saw; the guards checked."""
    up = line.split('. DOWN: ')[0][len('sandbox guards up: '):].split('; ')
    checked = []
    for guard in up:
        if guard == 'memory, CPU time and file size limits':
            limits = data['limits']
            assert limits['RLIMIT_AS'][0] <= sandbox.MEMORY_LIMIT * 2, limits
            assert limits['RLIMIT_FSIZE'][0] == sandbox.FILE_LIMIT, limits
            assert 0 < limits['RLIMIT_CPU'][0] < 10**6, limits
        elif guard.startswith('process count limit'):
            assert data['limits']['RLIMIT_NPROC'][0] == sandbox.PROCESS_LIMIT, data['limits']
            assert data['forks'] < sandbox.PROCESS_LIMIT, data['forks']
        elif guard == 'own read-only filesystem view (bubblewrap)':
            assert data['read'] == ['FileNotFoundError'] * 3, data['read']
            assert all(w != 'done' for w in data['write']), data['write']
            assert data['photos'] != 'done', 'the few-shot photos are readable'
            assert secrets_unchanged
        elif guard == 'no network':
            assert data['connect'] != 'done'
        elif guard == 'own process tree':
            assert data['pids'] < 10, data['pids']
        elif guard.startswith('own IPC namespace'):
            assert not data['outside_shm']
        elif guard == 'own process tree, IPC namespace and no network (unshare)':
            assert data['pids'] < 10 and not data['outside_shm'] and data['connect'] != 'done'
        elif guard.startswith('unprivileged user'):
            assert int(data['uid']) >= sandbox.UID_BASE, data['uid']
            assert all(w != 'done' for w in data['write']), data['write']
        else:
            raise AssertionError('a guard this test does not check: %r' % guard)
        checked.append(guard)
    return checked


@pytest.fixture
def outside_segment():
    """A SysV shared-memory segment in the grader's IPC namespace: a probe with its own
    must not see it."""
    libc = _libc()
    segment = libc.shmget(SHM_KEY, 4096, 0o1666)  # readable by anyone
    assert segment != -1, os.strerror(ctypes.get_errno())
    yield segment
    libc.shmctl(segment, 0, None)  # IPC_RMID


def _digest(paths):
    out = []
    for path in paths:
        with open(path, 'rb') as f:
            out.append(f.read())
    return out


def test_the_probe_sees_and_reaches_nothing_of_the_graders(tmp_path, outside_segment):
    box = sandbox.Sandbox(hide=[os.path.join(ROOT, 'assignments')])
    if not box.bwrap:
        box.close()
        pytest.skip('no bubblewrap here (%s): no guard keeps a probe from the grader\'s '
                    'files, so the grader refuses to start (test_without_bubblewrap_...)'
                    % (box.problem or 'not installed'))
    secrets = secret_copies(str(tmp_path))
    before = _digest(secrets)
    tests = inventory(str(tmp_path), secrets)
    try:
        seen = probe(box, str(tmp_path), tests, 'look_around')
    finally:
        box.close()
    assert seen.status == 'ok', (seen.message, seen.output)
    data = seen.data
    assert data['own_file'] == 'done'
    # /tmp is empty but for the way to a Python installation checked out under /tmp
    python_under_tmp = {os.path.realpath(p).split(os.sep)[2] for p in (
        sys.prefix, sys.base_prefix) if os.path.realpath(p).startswith('/tmp/')}
    assert set(data['tmp']) <= python_under_tmp and data['cwd'] == '/sandbox/work'
    assert not any(t.endswith('.json') for t in data['fd_targets']), data['fd_targets']
    assert '' not in data['sys_path'] and data['sys_path'][-1] == data['cwd']
    assert 'site-packages' in data['skimage']
    checked = claims_hold(box.describe(), data, _digest(secrets) == before)
    assert 'own read-only filesystem view (bubblewrap)' in checked


def test_nothing_passes_from_one_probe_process_to_the_next(tmp_path):
    """A (hidden) probe leaves its probes' source in every folder it may write and a SysV
    segment; a later (public) probe of the same user finds neither. As root, the SysV
    segments a probe may hold outside its memory limit are capped."""
    box = sandbox.Sandbox(hide=[os.path.join(ROOT, 'assignments')])
    if not box.bwrap:
        box.close()
        pytest.skip('no bubblewrap here: without it the grader runs nothing unless told the '
                    'machine is disposable, and then probes share its folders')
    tests = inventory(str(tmp_path), [])
    try:
        left = probe(box, str(tmp_path), tests, 'leave_traces', 'copy1')
        found = probe(box, str(tmp_path), tests, 'find_traces', 'copy2')
    finally:
        box.close()
    assert left.status == 'ok' and found.status == 'ok', (left.message, found.message)
    assert '/tmp' in left.data['left'] and int(left.data['segment']) != -1, left.data
    assert found.data['found'] == 'nothing' and not found.data['segment'], found.data
    if os.geteuid() == 0:  # bubblewrap as root: SysV segments are capped like the scratch
        assert 0 < int(left.data['shm_bytes']) <= sandbox.SCRATCH_LIMIT, left.data['shm_bytes']


def test_without_bubblewrap_the_grader_refuses_in_one_line(tmp_path, monkeypatch):
    """No bubblewrap and no opt-in: nothing of the student's runs, one line names the
    remedy; the CLI says it and stops before any set-up."""
    monkeypatch.delenv(sandbox.DISPOSABLE_ENV, raising=False)
    box = sandbox.Sandbox(use_bwrap=False)
    line = box.refusal()
    assert line and '\n' not in line
    assert 'apt-get install bubblewrap' in line and sandbox.DISPOSABLE_FLAG in line
    with pytest.raises(tests_files.GradeError, match='no sandbox here'):
        grading.setup([], box)
    with pytest.raises(sandbox.Refused):
        box.start({'probes': []}, str(tmp_path), 0, 10, str(tmp_path / 'out'))
    assert box.self_test() == line
    empty = tmp_path / 'bin'  # a PATH without bwrap (nor unshare)
    empty.mkdir()
    student = tmp_path / 'student'
    student.mkdir()
    env = {k: v for k, v in os.environ.items() if k != sandbox.DISPOSABLE_ENV}
    run = subprocess.run([sys.executable, '-m', 'assignments.grade', str(student), '--only',
                          'a4_iou_loss'], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env=dict(env, PATH=str(empty)))
    assert run.returncode == 2, run.stderr
    assert run.stderr.count('\n') == 1 and run.stderr.startswith('error: no sandbox here'), \
        run.stderr


def test_disposable_container_grades_and_says_which_guards_are_down(tmp_path, monkeypatch):
    """The opt-in: the reference scores full marks; the line says what is down."""
    monkeypatch.delenv(sandbox.DISPOSABLE_ENV, raising=False)
    student, autograder = build.build(str(tmp_path / 'dist'))
    root = os.path.join(autograder, 'assignments')
    tests = tests_files.read_all_tests(root, ['a4_iou_loss'])
    box = sandbox.Sandbox(use_bwrap=False, disposable=True)
    try:
        assert box.refusal() is None
        line = box.describe()
        assert 'DOWN: ' in line and 'filesystem isolation' in line.split('DOWN: ')[1]
        assert '\n' not in line and not box.complete()
        if os.geteuid() == 0 and not box.own_user:
            assert 'student code runs as root' in line
        results = grading.grade(root, tests, 2, box=box)
    finally:
        box.close()
    assert sum(r['points'] for r in results) == 9, results


UNPRIVILEGED_DRIVER = '''
import json, os, sys
sys.path.insert(0, %(root)r)
sys.path.insert(0, %(here)r)
from assignments import sandbox
from test_grader_sandbox import inventory, probe
folder = %(folder)r
box = sandbox.Sandbox(hide=[os.path.join(%(root)r, 'assignments')])
out = {'uid': os.getuid(), 'refusal': box.refusal(), 'line': box.describe()}
if out['refusal'] is None:
    tests = inventory(folder, %(secrets)r)
    out['self_test'] = box.self_test()
    seen = probe(box, folder, tests, 'look_around')
    out['status'], out['message'] = seen.status, seen.message
    out['data'] = seen.data
box.close()
print(json.dumps(out, default=lambda a: a.tolist()))
'''


def _unused_uid():
    used = set()
    for pid in os.listdir('/proc'):
        try:
            used.add(os.stat('/proc/' + pid).st_uid)
        except OSError:
            pass
    for uid in range(64990, 64900, -1):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            if uid not in used:
                return uid
    pytest.skip('no unused uid in 64901-64990')


def test_a_teacher_who_is_not_root_gets_the_guards_the_line_claims(outside_segment):
    """The grader's sandbox run once by a user who is not root (as root: an unused uid, no
    account made): it refuses where there is no bubblewrap, else every guard its line lists
    as up holds, the process count included (400 forks)."""
    prefix = []
    if os.geteuid() == 0:
        uid = _unused_uid()
        setpriv = shutil.which('setpriv')
        if not setpriv:
            pytest.skip('util-linux setpriv is missing: cannot run as another user')
        prefix = [setpriv, '--reuid', str(uid), '--regid', str(uid), '--clear-groups']
        closed = [r for r in sandbox._python_roots() if not sandbox._others_can_enter(r)]
        if closed:
            pytest.skip('the Python installation is not readable by an unprivileged user '
                        '(%s: a folder on the way lets no other user in)' % closed[0])
        if not os.access(ROOT, os.R_OK | os.X_OK):
            pytest.skip('the checkout is not readable by other users')
    folder = tempfile.mkdtemp(prefix='grade-unprivileged-')
    try:
        os.chmod(folder, 0o755)
        work = os.path.join(folder, 'work')
        os.makedirs(work)
        os.chmod(work, 0o777)
        secrets = secret_copies(folder)
        for path in secrets:
            os.chmod(path, 0o644)
        before = _digest(secrets)
        driver = os.path.join(folder, 'driver.py')
        with open(driver, 'w') as f:
            f.write(UNPRIVILEGED_DRIVER % dict(root=ROOT, here=os.path.dirname(__file__),
                                               folder=work, secrets=secrets))
        os.chmod(driver, 0o644)
        env = {k: v for k, v in os.environ.items() if k != sandbox.DISPOSABLE_ENV}
        env.update(HOME=work, MPLCONFIGDIR=os.path.join(work, 'mpl'))
        run = subprocess.run(prefix + [sys.executable, driver], cwd=work, capture_output=True,
                             text=True, timeout=600, env=env)
        assert run.returncode == 0, run.stderr[-3000:]
        out = json.loads(run.stdout.strip().splitlines()[-1])
        print(out['line'], '| forks:', out.get('data', {}).get('forks'))  # shown with -s
        assert out['uid'] != 0
        if out['refusal']:  # no bubblewrap for this user: fail closed
            assert 'install bubblewrap' in out['refusal'], out
            return
        assert out['self_test'] is None and out['status'] == 'ok', out
        checked = claims_hold(out['line'], out['data'], _digest(secrets) == before)
        assert any(c.startswith('process count limit') for c in checked), out['line']
        assert out['data']['forks'] < 300
    finally:
        shutil.rmtree(folder, ignore_errors=True)
