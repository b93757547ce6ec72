"""OpenMP threads: how many MXNet's engine uses, chosen once per process, for chapters,
notebooks, the grader's probes, the book's kernels and the benchmarks.

Standard library only, so that the grader can compute its probes' threads without MXNet.

The policy (measured on 2 cores, `fine_tuning --quick`; benchmarks/contention.py):
- as many threads as CPUs the process may really use: its affinity mask, and the CPU quota of
  its cgroup (docker `--cpus`, a JupyterHub `cpu_limit`, a Kubernetes limit; v1 or v2);
- minus the CPUs other processes keep busy when it starts (from /proc/stat, over numpy's
  import and at least a quarter of a second, then again over MXNet's import, which can only
  lower the count, on the engine's worker before its first operator): a lone run takes every
  core, two chapters started side by side on 2 cores take one thread each. An OpenMP team of
  2 whose threads share the cores with another process waits at each of a small net's many
  barriers for a thread the scheduler has parked: 9-10x slower than alone, where one thread
  each costs 1.3x;
- libgomp's waiting is left as it is (spin, then sleep): passive waiting measured a third
  slower alone, GOMP_SPINCOUNT=10000 a quarter slower alone and still 4-6x in a pair, and a
  team of one thread never waits. Changing the count while running does not reach MXNet's
  engine: MXSetNumOMPThreads sets only the calling thread's count, and oneDNN primitives keep
  the count they were created with.

What the user set is kept: OMP_NUM_THREADS, OMP_WAIT_POLICY, GOMP_SPINCOUNT,
MXNET_CPU_WORKER_NTHREADS. A count this module chose is marked (CHOSEN_MARK), so that a child
process chooses again for itself instead of taking the parent's choice for the user's.
"""
import ctypes
import math
import os
import time

USER_SETTINGS = ('OMP_NUM_THREADS', 'OMP_WAIT_POLICY', 'GOMP_SPINCOUNT',
                 'MXNET_CPU_WORKER_NTHREADS')
CHOSEN_MARK = 'GLUON_TRANSFER_OMP_CHOSEN'  # the OMP_NUM_THREADS value this module wrote
SAMPLE_SECONDS = 0.25
BUSY_CORES = ('user', 'nice', 'system', 'irq', 'softirq', 'steal')  # /proc/stat's busy columns

# What the policy decided in this process (describe() says it in one line).
decision = {}


# ---------------------------------------------------------------------------------------------
# The CPUs this process may use

def affinity_cpus():
    """The CPU numbers of the affinity mask (all CPUs where there is no such call)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return list(range(os.cpu_count() or 1))


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _cgroup_dirs(proc, root):
    """(version, folder) of every cgroup hierarchy with a CPU controller this process is in,
    from /proc/self/cgroup and /proc/self/mountinfo (the folder may sit below a container's
    mount root, or the process in a cgroup of its own below the mount point)."""
    memberships = {}
    for line in (_read(os.path.join(proc, 'cgroup')) or '').splitlines():
        parts = line.split(':', 2)
        if len(parts) == 3:
            memberships[parts[1]] = parts[2]
    found = []
    for line in (_read(os.path.join(proc, 'mountinfo')) or '').splitlines():
        left, _, right = line.partition(' - ')
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        mount_root, mount_point, fstype = fields[3], fields[4], tail[0]
        if fstype == 'cgroup2':
            path = memberships.get('')
            version = 2
        elif fstype == 'cgroup' and 'cpu' in tail[2].split(','):
            path = next((p for names, p in memberships.items() if 'cpu' in names.split(',')),
                        None)
            version = 1
        else:
            continue
        if path is None:
            continue
        relative = os.path.relpath(path, mount_root) if path.startswith(mount_root) else '.'
        leaf = os.path.normpath(os.path.join(mount_point, relative))
        found.append((version, mount_point, leaf))
    return [(v, root + top, root + leaf) for v, top, leaf in found]


def _quota(version, folder):
    """CPUs a cgroup folder's quota allows (float), or None without a quota."""
    if version == 2:
        text = _read(os.path.join(folder, 'cpu.max'))
        parts = text.split() if text else []
        if len(parts) != 2 or parts[0] == 'max':
            return None
        quota, period = parts
    else:
        quota = _read(os.path.join(folder, 'cpu.cfs_quota_us'))
        period = _read(os.path.join(folder, 'cpu.cfs_period_us'))
        if quota is None or period is None:
            return None
    try:
        quota, period = int(quota), int(period)
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def cgroup_cpu_limit(proc='/proc/self', root=''):
    """The CPUs the cgroup quota allows this process (float), or None without a quota: the
    smallest quota of its cgroup and every cgroup above it, v1 or v2.

    Written by hand: joblib's loky (installed here only as scikit-learn's dependency) reads
    the quota at the root of the hierarchy only, which misses a process in a cgroup of its own
    below it (systemd's user slices, JupyterHub's SystemdSpawner, a cgroup made for a test).
    `root` prefixes every path under the mount points (tests point it at fake files).
    """
    limits = []
    for version, top, leaf in _cgroup_dirs(proc, root):
        folder = leaf
        while True:
            quota = _quota(version, folder)
            if quota is not None:
                limits.append(quota)
            if folder == top or len(folder) <= len(top):
                break
            folder = os.path.dirname(folder)
    return min(limits) if limits else None


def usable_cpus(cpus=None, limit='read'):
    """The number of CPUs this process may keep busy: the affinity mask, at most the cgroup
    quota rounded down (an OpenMP team is as fast as its slowest throttled thread), at least 1.
    """
    count = len(affinity_cpus() if cpus is None else cpus)
    if limit == 'read':
        limit = cgroup_cpu_limit()
    if limit is not None:
        count = min(count, math.floor(limit + 1e-6))
    return max(1, count)


# ---------------------------------------------------------------------------------------------
# How busy the other processes keep those CPUs

def _cpu_times(cpus, stat_text):
    """(busy, total) jiffies of the given CPUs from /proc/stat's text."""
    wanted = {'cpu%d' % c for c in cpus}
    busy = total = 0
    for line in stat_text.splitlines():
        fields = line.split()
        if fields and fields[0] in wanted:
            values = [int(v) for v in fields[1:9]] + [0] * 8
            user, nice, system, idle, iowait, irq, softirq, steal = values[:8]
            busy += user + nice + system + irq + softirq + steal
            total += user + nice + system + idle + iowait + irq + softirq + steal
    return busy, total


def _own_jiffies():
    text = _read('/proc/self/stat')
    fields = text.rsplit(')', 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime of every thread


class MachineSample:
    """Started before a slow step (importing numpy), read after it: the cores other
    processes kept busy in between, on this process's CPUs. None where /proc is missing."""

    def __init__(self, cpus=None):
        self.cpus = affinity_cpus() if cpus is None else cpus
        self.start = time.time()
        try:
            self.first = _cpu_times(self.cpus, _read('/proc/stat') or ''), _own_jiffies()
        except (OSError, AttributeError, IndexError, ValueError):
            self.first = None

    def others_busy(self, seconds=SAMPLE_SECONDS):
        """Cores kept busy by other processes since the start (waits until `seconds` have
        passed; a short window at 100 ticks a second gives too few ticks)."""
        if self.first is None:
            return None
        time.sleep(max(0.0, seconds - (time.time() - self.start)))
        try:
            (busy, total), own = _cpu_times(self.cpus, _read('/proc/stat') or ''), \
                _own_jiffies()
        except (OSError, AttributeError, IndexError, ValueError):
            return None
        (busy0, total0), own0 = self.first
        per_cpu = (total - total0) / max(1, len(self.cpus))
        if per_cpu <= 0:
            return None
        return max(0.0, (busy - busy0) - (own - own0)) / per_cpu


def threads_for(usable, others_busy, cpus):
    """Threads for a process that may use `usable` CPUs of the `cpus` in its mask while
    other processes keep `others_busy` of them busy: the CPUs left free, rounded to the
    nearest, between 1 and `usable`."""
    if others_busy is None:
        return usable
    free = int(cpus - others_busy + 0.5)
    return max(1, min(usable, free))


# ---------------------------------------------------------------------------------------------
# The policy

def user_setting(name, environ=None):
    """The value of one of USER_SETTINGS as the user gave it, or None (a count this module
    chose in a parent process is not the user's, and an empty value, which libgomp rejects
    with a warning, is no setting)."""
    environ = os.environ if environ is None else environ
    value = environ.get(name) or None
    if name == 'OMP_NUM_THREADS' and value is not None and value == environ.get(CHOSEN_MARK):
        return None
    return value


class ThreadPolicy:
    """utils/__init__.py: `policy = ThreadPolicy()` first, then import numpy, then
    `policy.apply()` before MXNet is imported."""

    def __init__(self, environ=None):
        self.environ = os.environ if environ is None else environ
        self.user = user_setting('OMP_NUM_THREADS', self.environ)
        self.sample = None if self.user is not None else MachineSample()

    def apply(self):
        """Set OMP_NUM_THREADS unless the user did; record the decision. Returns the count."""
        decision.clear()
        decision.update({name: self.environ[name] for name in USER_SETTINGS[1:]
                         if user_setting(name, self.environ)})
        if self.user is not None:
            decision.update(threads=self.user, why='yours')
            self.environ.pop(CHOSEN_MARK, None)
            return _as_int(self.user)
        cpus = self.sample.cpus
        usable = usable_cpus(cpus)
        others = self.sample.others_busy()
        threads = threads_for(usable, others, len(cpus))
        decision.update(threads=str(threads), usable=usable, cpus=len(cpus),
                        others_busy=None if others is None else round(others, 2))
        self.environ['OMP_NUM_THREADS'] = self.environ[CHOSEN_MARK] = str(threads)
        return threads

    def refine_after_import(self):
        """After MXNet's import (2-3 s of one busy core in any process starting beside this
        one): sampled over that longer window, fewer threads may be due than the quarter of a
        second before it showed. Lowers the count of the engine's CPU worker, before it has
        run anything, and OMP_NUM_THREADS for children; never raises it. Returns the count."""
        if self.user is not None or self.sample is None or \
                'MXNET_CPU_WORKER_NTHREADS' in self.environ:  # one push reaches one worker
            return _as_int(self.environ.get('OMP_NUM_THREADS', '1'))
        chosen = int(decision['threads'])
        others = self.sample.others_busy(seconds=0)
        threads = threads_for(decision['usable'], others, decision['cpus'])
        if threads < chosen and set_engine_worker_threads(threads):
            decision.update(threads=str(threads), others_busy=round(others, 2))
            self.environ['OMP_NUM_THREADS'] = self.environ[CHOSEN_MARK] = str(threads)
            return threads
        return chosen


def set_engine_worker_threads(count):
    """OpenMP threads of MXNet's CPU worker thread (the one that runs cpu(0)'s operators):
    omp_set_num_threads is per thread, and MXSetNumOMPThreads runs it on the caller only, so
    it runs on the worker itself, as an operation pushed to the engine. Call it before the
    first operator: oneDNN keeps the count its primitives were created with. False where
    MXNet or libgomp lacks the calls."""
    import mxnet as mx
    from mxnet.base import _LIB, check_call
    try:
        gomp = ctypes.CDLL('libgomp.so.1')
        push = _LIB.MXEnginePushSync
    except (OSError, AttributeError):
        return False

    class Context(ctypes.Structure):  # mxnet::Context: device type (1: CPU) and id
        _fields_ = [('dev_type', ctypes.c_int), ('dev_id', ctypes.c_int)]

    ran = []

    def on_worker(_run_context, _param):
        gomp.omp_set_num_threads(count)
        ran.append(gomp.omp_get_max_threads())

    callback = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)(on_worker)
    context = Context(1, 0)
    check_call(push(callback, None, None, ctypes.byref(context), None, 0, None, 0, None, 0,
                    None))
    mx.nd.waitall()  # the callback has run before it is freed
    return ran == [count]


def _as_int(text):
    try:
        return max(1, int(text))
    except ValueError:
        return 1


def default_omp_threads():
    """Choose OMP_NUM_THREADS now (unless the user set it) and return it, for child processes
    that must all run with it (a benchmark's variants): they keep it as if the user set it."""
    threads = ThreadPolicy().apply()
    os.environ.pop(CHOSEN_MARK, None)
    return threads


def describe():
    """One line: the threads and the waiting this process runs with, and why."""
    if not decision:
        return 'threads: OMP_NUM_THREADS=%s' % os.environ.get('OMP_NUM_THREADS', 'unset')
    if decision.get('why') == 'yours':
        count = 'OMP_NUM_THREADS=%s (yours)' % decision['threads']
    else:
        count = '%s OpenMP thread%s (%d usable CPU%s' % (
            decision['threads'], '' if decision['threads'] == '1' else 's',
            decision['usable'], '' if decision['usable'] == 1 else 's')
        if decision.get('others_busy') is not None:
            count += ', %.1f kept busy by other processes' % decision['others_busy']
        count += ')'
    waiting = ', '.join('%s=%s (yours)' % (k, decision[k])
                        for k in ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT') if k in decision)
    line = 'threads: %s; waiting: %s' % (count, waiting or "libgomp's default")
    if 'MXNET_CPU_WORKER_NTHREADS' in decision:
        line += '; MXNET_CPU_WORKER_NTHREADS=%s (yours)' % decision['MXNET_CPU_WORKER_NTHREADS']
    return line


def job_environment(jobs, environ=None, usable=None):
    """The thread settings for one of `jobs` processes running at once (the grader's probes
    and checks): the usable CPUs shared among them, at least 1 each; the user's settings
    kept. A dict to merge into the child's environment."""
    environ = os.environ if environ is None else environ
    out = {name: environ[name] for name in USER_SETTINGS if user_setting(name, environ)}
    if 'OMP_NUM_THREADS' not in out:
        usable = usable_cpus() if usable is None else usable
        out['OMP_NUM_THREADS'] = str(max(1, usable // max(1, jobs)))
    return out


def serial_openmp_in_this_thread():
    """MXNet work done in the calling thread runs its OpenMP loops on that thread alone; the
    engine's threads, which do the training, keep OMP_NUM_THREADS. Call it from the Python
    thread after MXNet is imported (utils/__init__.py does).

    Why, measured on 2 cores: one `asnumpy` of a 10-element array on the Python thread took a
    mobilenet0.25 training loop at 96 px from 1800-1950 to 1090-1150 images/sec for the rest of
    the process (creating the pictures with `asnumpy`, as utils.data.decoded does, was enough); with
    this call it stays at 1710-1750, and decoding takes the same time. OMP_WAIT_POLICY=ACTIVE
    removes the slowdown too, which points at libgomp's waiting: once it counts more OpenMP
    threads in use than cores, a waiting thread spins 1000 times instead of 300000 before it
    sleeps, and each of a small net's many short parallel loops then pays for waking threads.
    Returns False where MXNet was built without the call.
    """
    from mxnet.base import _LIB
    setter = getattr(_LIB, 'MXSetNumOMPThreads', None)
    if setter is None:
        return False
    setter(ctypes.c_int(1))
    return True
