"""utils.threads: the CPUs a process may use (affinity and cgroup quota, read from fake files),
the user's settings kept, and the grader's share of threads per probe process."""
import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location('threads_under_test',
                                              os.path.join(ROOT, 'utils', 'threads.py'))
threads = importlib.util.module_from_spec(spec)
spec.loader.exec_module(threads)  # by path: the module needs no MXNet


def fake_cgroups(tmp_path, cgroup, mountinfo, files):
    proc = tmp_path / 'proc'
    proc.mkdir(parents=True)
    (proc / 'cgroup').write_text(cgroup)
    (proc / 'mountinfo').write_text(mountinfo)
    root = tmp_path / 'root'
    for path, text in files.items():
        target = root / path.lstrip('/')
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return threads.cgroup_cpu_limit(str(proc), str(root))


V2_MOUNT = '30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n'
V1_MOUNTS = ('31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n'
             '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n'
             '35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n')


def test_v2_quota_of_the_process_own_cgroup_below_the_root(tmp_path):
    limit = fake_cgroups(tmp_path, '0::/user.slice/jupyter-ann.service\n', V2_MOUNT, {
        '/sys/fs/cgroup/cpu.max': 'max 100000\n',
        '/sys/fs/cgroup/user.slice/cpu.max': 'max 100000\n',
        '/sys/fs/cgroup/user.slice/jupyter-ann.service/cpu.max': '150000 100000\n'})
    assert limit == 1.5
    assert threads.usable_cpus(cpus=range(64), limit=limit) == 1  # rounded down


def test_v2_max_is_no_quota_and_a_parent_quota_counts(tmp_path):
    assert fake_cgroups(tmp_path, '0::/a\n', V2_MOUNT, {
        '/sys/fs/cgroup/cpu.max': 'max 100000\n',
        '/sys/fs/cgroup/a/cpu.max': 'max 100000\n'}) is None
    assert fake_cgroups(tmp_path / 'x', '0::/a/b\n', V2_MOUNT, {
        '/sys/fs/cgroup/a/cpu.max': '200000 100000\n',
        '/sys/fs/cgroup/a/b/cpu.max': 'max 100000\n'}) == 2.0


def test_v1_quota_in_a_container_whose_mount_root_is_its_cgroup(tmp_path):
    # docker on cgroup v1: /proc/self/cgroup names /docker/ID, mounted as the hierarchy's root
    mounts = V1_MOUNTS.replace('0:29 / /sys/fs/cgroup/cpu,cpuacct',
                               '0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct')
    limit = fake_cgroups(tmp_path, '4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n', mounts, {
        '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '50000\n',
        '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n'})
    assert limit == 0.5
    assert threads.usable_cpus(cpus=[0, 1], limit=limit) == 1  # below one CPU: one thread


def test_v1_no_quota_and_nested_quota(tmp_path):
    assert fake_cgroups(tmp_path, '2:cpu,cpuacct:/\n', V1_MOUNTS, {
        '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '-1\n',
        '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n'}) is None
    limit = fake_cgroups(tmp_path / 'x', '2:cpu,cpuacct:/class/ann\n', V1_MOUNTS, {
        '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '-1\n',
        '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
        '/sys/fs/cgroup/cpu,cpuacct/class/cpu.cfs_quota_us': '300000\n',
        '/sys/fs/cgroup/cpu,cpuacct/class/cpu.cfs_period_us': '100000\n',
        '/sys/fs/cgroup/cpu,cpuacct/class/ann/cpu.cfs_quota_us': '-1\n',
        '/sys/fs/cgroup/cpu,cpuacct/class/ann/cpu.cfs_period_us': '100000\n'})
    assert limit == 3.0
    assert threads.usable_cpus(cpus=range(8), limit=limit) == 3
    assert threads.usable_cpus(cpus=[2, 5], limit=limit) == 2  # the affinity mask is smaller


def test_no_cgroup_files_means_no_quota(tmp_path):
    assert fake_cgroups(tmp_path, '', '', {}) is None
    assert threads.usable_cpus(cpus=range(4), limit=None) == 4


def test_busy_jiffies_of_the_mask_cpus_only():
    stat = ('cpu  100 0 100 800 0 0 0 0 0 0\n'
            'cpu0 10 1 20 300 5 1 1 2 0 0\n'
            'cpu1 90 0 80 500 0 0 0 0 0 0\n'
            'intr 12345\n')
    assert threads._cpu_times([0], stat) == (35, 340)
    assert threads._cpu_times([0, 1], stat) == (205, 1010)


@pytest.mark.parametrize('usable, others, cpus, expected', [
    (2, 0.0, 2, 2), (2, 0.3, 2, 2), (2, 0.8, 2, 1), (2, 1.0, 2, 1), (2, 3.5, 2, 1),
    (2, None, 2, 2), (4, 1.2, 4, 3), (2, 10.0, 64, 2)])
def test_threads_left_by_other_processes(usable, others, cpus, expected):
    assert threads.threads_for(usable, others, cpus) == expected


def test_the_users_settings_are_kept():
    environ = {'OMP_NUM_THREADS': '3', 'OMP_WAIT_POLICY': 'passive', 'GOMP_SPINCOUNT': '1000'}
    before = dict(environ)
    assert threads.ThreadPolicy(environ).apply() == 3
    assert environ == before
    line = threads.describe()
    assert line == ('threads: OMP_NUM_THREADS=3 (yours); waiting: OMP_WAIT_POLICY=passive '
                    '(yours), GOMP_SPINCOUNT=1000 (yours)')


def test_an_empty_setting_is_no_setting():
    # libgomp warns about OMP_NUM_THREADS='' and ignores it: the policy chooses instead
    environ = {'OMP_NUM_THREADS': '', 'OMP_WAIT_POLICY': ''}
    chosen = threads.ThreadPolicy(environ).apply()
    assert environ['OMP_NUM_THREADS'] == str(chosen) and 1 <= chosen <= threads.usable_cpus()
    assert threads.describe().endswith("; waiting: libgomp's default")


def test_a_count_chosen_by_a_parent_is_chosen_again():
    environ = {'OMP_NUM_THREADS': '7', threads.CHOSEN_MARK: '7'}
    chosen = threads.ThreadPolicy(environ).apply()
    assert 1 <= chosen <= threads.usable_cpus()
    assert environ['OMP_NUM_THREADS'] == environ[threads.CHOSEN_MARK] == str(chosen)
    assert threads.describe().startswith('threads: %d OpenMP thread' % chosen)
    assert threads.describe().endswith("; waiting: libgomp's default")


@pytest.mark.parametrize('jobs, usable, expected', [
    (1, 2, '2'), (2, 2, '1'), (4, 2, '1'), (3, 8, '2'), (2, 1, '1')])
def test_grader_jobs_share_the_cpus(jobs, usable, expected):
    assert threads.job_environment(jobs, environ={}, usable=usable) == {
        'OMP_NUM_THREADS': expected}


def test_grader_jobs_keep_the_users_settings():
    environ = {'OMP_NUM_THREADS': '3', 'MXNET_CPU_WORKER_NTHREADS': '2', 'PATH': '/bin'}
    assert threads.job_environment(2, environ, usable=8) == {
        'OMP_NUM_THREADS': '3', 'MXNET_CPU_WORKER_NTHREADS': '2'}
    chosen = {'OMP_NUM_THREADS': '8', threads.CHOSEN_MARK: '8', 'OMP_WAIT_POLICY': 'active'}
    assert threads.job_environment(2, chosen, usable=8) == {
        'OMP_NUM_THREADS': '4', 'OMP_WAIT_POLICY': 'active'}


def test_probe_processes_get_their_share(monkeypatch):
    from assignments import sandbox
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    box = sandbox.Sandbox(use_bwrap=False, use_zygote=False)
    box.jobs = 2
    inside = {'work': '/w', 'tmp': '/t', 'mpl': '/m'}
    env = box.environment(inside, '/mx')
    assert env['OMP_NUM_THREADS'] == str(max(1, threads.usable_cpus() // 2))
    monkeypatch.setenv('OMP_NUM_THREADS', '3')
    assert box.environment(inside, '/mx')['OMP_NUM_THREADS'] == '3'


REFINE = '''
import ctypes, sys
sys.path.insert(0, sys.argv[1])
from utils import threads  # imports MXNet, with the numpy names it needs
import mxnet as mx
from mxnet.base import _LIB
gomp = ctypes.CDLL('libgomp.so.1')


def on_the_worker():
    seen = []
    callback = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)(
        lambda *_: seen.append(gomp.omp_get_max_threads()))
    context = (ctypes.c_int * 2)(1, 0)  # cpu(0)
    _LIB.MXEnginePushSync(callback, None, None, context, None, 0, None, 0, None, 0, None)
    mx.nd.waitall()
    return seen[0]


threads.set_engine_worker_threads(2)
print(on_the_worker())
policy = threads.ThreadPolicy(environ={})
seen = [0.0, 1.3]  # idle before MXNet loads, one core busy elsewhere while it loads
policy.sample.others_busy = lambda seconds=0.25: seen.pop(0)
policy.sample.cpus = [0, 1]  # as on a 2-core machine
print(policy.apply(), policy.refine_after_import(), policy.environ['OMP_NUM_THREADS'])
print(on_the_worker())
'''


def test_fewer_threads_seen_during_the_import_reach_the_engine_worker():
    import subprocess
    import sys
    if threads.usable_cpus(cpus=[0, 1]) < 2:
        pytest.skip('a CPU quota below 2 here: no count to lower')
    proc = subprocess.run([sys.executable, '-c', REFINE, ROOT], capture_output=True, text=True,
                          timeout=300)
    if 'libgomp' in proc.stderr:
        pytest.skip('MXNet here is not linked with libgomp')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['2', '2', '1', '1', '1']
