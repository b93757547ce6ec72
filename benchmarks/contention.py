"""Many at once on one machine: one, two and four processes started together, each wall time
against the lone run of the same minute.

    python -m benchmarks.contention [--workload chapter,train] [--processes 1,2,4]
        [--settings policy] [--quota] [--chapter fine_tuning] [--json PATH]

Workloads: `chapter` runs `python -m chapters.<chapter> --quick` (fine_tuning by default);
`train` runs a utils.train loop (mobilenet0.25, 96 px, random pictures in memory, two classes,
a DataLoader, 3 epochs of 1024 pictures). Settings, each in a fresh group of runs:

  policy   the environment without OMP_NUM_THREADS: utils.threads chooses (the default)
  before   OMP_NUM_THREADS = every CPU of the affinity mask, libgomp's default waiting (what
           utils set before utils.threads chose; a pair of these took 9-10x its lone time)
  one      OMP_NUM_THREADS=1
  passive  OMP_WAIT_POLICY=passive, threads chosen by the policy

For each workload and setting: a lone run, then for each N > 1 of --processes, N processes
started at the same moment, then the lone run again; each process's wall time is divided by
the mean of the two lone runs around it. /proc/loadavg is read before every group and shown.

--quota (root only): the lone run again inside a cgroup whose CPU quota is one CPU, made for
the run (cgroup v1 `cpu.cfs_quota_us`, or v2 `cpu.max`) and removed after, with the policy and
with OMP_NUM_THREADS=1 (and `before` when asked for).

A measurement, so printed here, not asserted by a test; the load column says how quiet the
machine was. The default (both workloads, policy, 1,2,4 processes) with --quota took 18
minutes on a busy 2-core machine (load 4-14); on a quiet one about 5 (an estimate).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = ('policy', 'before', 'one', 'passive')
WORKLOADS = ('chapter', 'train')
THREAD_VARIABLES = ('OMP_NUM_THREADS', 'OMP_WAIT_POLICY', 'GOMP_SPINCOUNT',
                    'MXNET_CPU_WORKER_NTHREADS', 'GLUON_TRANSFER_OMP_CHOSEN')


# ---------------------------------------------------------------------------------------------
# The train workload (a child process)

def train_child():
    """A utils.train loop on pictures in memory; prints its threads line and a JSON line."""
    start = time.time()
    sys.path.insert(0, ROOT)
    import utils
    from utils import threads
    import numpy as np
    import mxnet as mx
    from mxnet import gluon
    print(threads.describe(), flush=True)
    utils.seed_everything(0)
    rng = np.random.RandomState(0)
    pictures = rng.uniform(0, 1, size=(1024, 3, 96, 96)).astype('float32')
    labels = (np.arange(1024) % 2).astype('float32')
    pictures[labels == 1, 0] += 0.5  # a red cast for class 1: something to learn
    data = gluon.data.ArrayDataset(mx.nd.array(pictures), mx.nd.array(labels))
    train = gluon.data.DataLoader(data, batch_size=32, shuffle=True)
    test = gluon.data.DataLoader(gluon.data.ArrayDataset(mx.nd.array(pictures[:128]),
                                                         mx.nd.array(labels[:128])),
                                 batch_size=64)
    net = gluon.model_zoo.vision.mobilenet0_25(classes=2)
    net.initialize(mx.init.Xavier())
    net.hybridize(static_alloc=True, static_shape=True)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.05,
                                                          'momentum': 0.9})
    loop = time.time()
    utils.train(train, test, net, gluon.loss.SoftmaxCrossEntropyLoss(), trainer, [mx.cpu()],
                3, progress=False, print_fn=lambda *a: None)
    print(json.dumps({'train_seconds': round(time.time() - loop, 2),
                      'process_seconds': round(time.time() - start, 2)}), flush=True)


# ---------------------------------------------------------------------------------------------
# Groups of processes

def affinity_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def environment(setting):
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    if setting == 'before':
        env['OMP_NUM_THREADS'] = str(affinity_count())
    elif setting == 'one':
        env['OMP_NUM_THREADS'] = '1'
    elif setting == 'passive':
        env['OMP_WAIT_POLICY'] = 'passive'
    return env


def command(workload, chapter, out):
    if workload == 'train':
        return [sys.executable, '-m', 'benchmarks.contention', '--child-train']
    return [sys.executable, '-m', 'chapters.' + chapter, '--quick', '--no-progress',
            '--out', out]


def load_average():
    with open('/proc/loadavg') as f:
        return float(f.read().split()[0])


def run_group(workload, setting, count, args, tmp, cgroup=None):
    """`count` processes started together: their wall times and threads lines."""
    env = environment(setting)
    running = []
    for i in range(count):
        out = os.path.join(tmp, '%s-%s-%d-%d' % (workload, setting, count, i))
        log = open(out + '.log', 'w+')
        running.append((subprocess.Popen(
            command(workload, args.chapter, out), cwd=ROOT, env=env, stdout=log,
            stderr=subprocess.STDOUT, preexec_fn=(lambda: join_cgroup(cgroup)) if cgroup
            else None), log, time.time()))
    ended = {}
    while len(ended) < count:  # each process's own end, not when the loop reaches it
        for i, (process, _, started) in enumerate(running):
            if i in ended:
                continue
            if process.poll() is not None:
                ended[i] = time.time() - started
            elif time.time() - started > args.timeout:
                process.kill()
                process.wait()
                ended[i] = None
        time.sleep(0.05)
    results = []
    for i, (process, log, started) in enumerate(running):
        seconds = ended[i]
        log.seek(0)
        text = log.read()
        log.close()
        lines = text.splitlines()
        threads = next((line for line in lines if line.startswith('threads:')), '?')
        train = next((json.loads(line) for line in lines if line.startswith('{"train')), {})
        if process.returncode not in (0, None) and seconds is not None:
            sys.exit('contention: a %s run failed (status %d):\n%s'
                     % (workload, process.returncode, text[-2000:]))
        results.append({'seconds': None if seconds is None else round(seconds, 1),
                        'train_seconds': train.get('train_seconds'), 'threads': threads})
    return results


# ---------------------------------------------------------------------------------------------
# A cgroup with a CPU quota (root only)

def make_cgroup(cpus):
    """A new cgroup allowed `cpus` CPUs (its folder), or None where it cannot be made."""
    name = 'gluon-transfer-contention-%d' % os.getpid()
    for top in ('/sys/fs/cgroup/cpu', '/sys/fs/cgroup/cpu,cpuacct'):
        if os.path.exists(os.path.join(top, 'cpu.cfs_quota_us')):  # cgroup v1
            folder = os.path.join(top, name)
            os.mkdir(folder)
            with open(os.path.join(folder, 'cpu.cfs_period_us')) as f:
                period = int(f.read())
            with open(os.path.join(folder, 'cpu.cfs_quota_us'), 'w') as f:
                f.write(str(int(period * cpus)))
            return folder
    top = '/sys/fs/cgroup'
    controllers = os.path.join(top, 'cgroup.controllers')
    if os.path.exists(controllers) and 'cpu' in open(controllers).read().split():  # v2
        with open(os.path.join(top, 'cgroup.subtree_control'), 'w') as f:
            f.write('+cpu')
        folder = os.path.join(top, name)
        os.mkdir(folder)
        with open(os.path.join(folder, 'cpu.max'), 'w') as f:
            f.write('%d 100000' % int(100000 * cpus))
        return folder
    return None


def join_cgroup(folder):
    with open(os.path.join(folder, 'cgroup.procs'), 'w') as f:
        f.write(str(os.getpid()))


def remove_cgroup(folder):
    for _ in range(50):  # the last process may take a moment to leave
        try:
            os.rmdir(folder)
            return
        except OSError:
            time.sleep(0.1)


# ---------------------------------------------------------------------------------------------

def measure(args):
    rows = []
    tmp = tempfile.mkdtemp(prefix='contention-')
    try:
        for workload in args.workload:
            for setting in args.settings:
                load = load_average()
                lone = run_group(workload, setting, 1, args, tmp)[0]
                if 1 in args.processes:
                    rows.append(row(workload, setting, 1, load, [lone], [lone]))
                    report(rows[-1])
                for count in [c for c in args.processes if c > 1]:
                    load = load_average()
                    group = run_group(workload, setting, count, args, tmp)
                    lone_after = run_group(workload, setting, 1, args, tmp)[0]
                    rows.append(row(workload, setting, count, load, group, [lone, lone_after]))
                    report(rows[-1])
                    lone = lone_after
            if args.quota:
                rows += quota_rows(workload, args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def quota_rows(workload, args, tmp):
    if not (hasattr(os, 'geteuid') and os.geteuid() == 0):
        print('--quota: not root, no cgroup made')
        return []
    folder = make_cgroup(1.0)
    if folder is None:
        print('--quota: no cgroup v1 cpu controller nor v2 cpu.max here')
        return []
    rows = []
    try:
        settings = ['policy', 'one'] + (['before'] if 'before' in args.settings else [])
        for setting in settings:
            load = load_average()
            result = run_group(workload, setting, 1, args, tmp, cgroup=folder)
            rows.append(row(workload, setting + ', 1-CPU quota', 1, load, result, result))
            report(rows[-1])
    finally:
        remove_cgroup(folder)
    return rows


def row(workload, setting, count, load, group, lone):
    lone_times = [r['seconds'] for r in lone if r['seconds'] is not None]
    lone_mean = sum(lone_times) / len(lone_times) if lone_times else None
    times = [r['seconds'] for r in group]
    ratios = [None if t is None or not lone_mean else round(t / lone_mean, 2) for t in times]
    return {'workload': workload, 'setting': setting, 'processes': count, 'load': load,
            'seconds': times, 'lone_seconds': lone_times, 'ratios': ratios,
            'train_seconds': [r['train_seconds'] for r in group],
            'threads': sorted({r['threads'] for r in group}),
            'lone_threads': [r['threads'] for r in lone]}


def shown(values):
    return ' '.join('>timeout' if v is None else '%g' % v for v in values)


def report(r):
    print('%-8s %-22s %d at once, load %.2f before: %s s (lone %s s), x%s; %s (lone: %s)'
          % (r['workload'], r['setting'], r['processes'], r['load'], shown(r['seconds']),
             shown(r['lone_seconds']), shown(r['ratios']), ' | '.join(r['threads']),
             ' | '.join(r['lone_threads'])), flush=True)


def table(rows):
    sys.path.insert(0, ROOT)
    from utils.display.tables import format_table  # noqa: E402  (imports no MXNet of its own)
    header = ['workload', 'setting', 'at once', 'load before', 'wall each (s)', 'lone (s)',
              'each / lone', 'train loop each (s)', 'threads (first line of each run)']
    return format_table(header, [
        [r['workload'], r['setting'], r['processes'], '%.2f' % r['load'], shown(r['seconds']),
         shown(r['lone_seconds']), shown(r['ratios']),
         shown(r['train_seconds']) if r['workload'] == 'train' else '-',
         ' | '.join(r['threads'])] for r in rows], markdown=True)


def positive_list(text):
    try:
        values = [int(v) for v in text.split(',') if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError('%r: give counts such as 1,2,4' % text)
    return values


def choices(allowed):
    def parse(text):
        values = [v.strip() for v in text.split(',') if v.strip()]
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise argparse.ArgumentTypeError('%r: choose from %s' % (text, ', '.join(allowed)))
        return values
    return parse


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--workload', type=choices(WORKLOADS), default=list(WORKLOADS),
                   help='comma-separated: chapter, train (default both)')
    p.add_argument('--processes', type=positive_list, default=[1, 2, 4],
                   help='processes at once, comma-separated (default 1,2,4)')
    p.add_argument('--settings', type=choices(SETTINGS), default=['policy'],
                   help='comma-separated thread settings: %s (default policy)'
                        % ', '.join(SETTINGS))
    p.add_argument('--quota', action='store_true',
                   help='also run alone under a 1-CPU cgroup quota (root only)')
    p.add_argument('--chapter', default='fine_tuning', help='the chapter run with --quick')
    p.add_argument('--timeout', type=float, default=900, help='seconds per process')
    p.add_argument('--json', metavar='PATH', help='write the rows as JSON')
    args = p.parse_args(argv)
    when = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    print('%d CPUs in the affinity mask, load %.2f at the start, %s'
          % (affinity_count(), load_average(), when), flush=True)
    rows = measure(args)
    print(table(rows))
    if args.json:
        with open(args.json + '.tmp', 'w') as f:
            json.dump({'cpus': affinity_count(), 'rows': rows}, f, indent=2)
        os.replace(args.json + '.tmp', args.json)
        print('Rows written to %s' % args.json)
    return rows


if __name__ == '__main__':
    if sys.argv[1:] == ['--child-train']:
        train_child()
    else:
        main()
