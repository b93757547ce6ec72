"""python -m utils.training.launch: parameter-server training on loopback, and the launcher's
supervision."""
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon, init
from mxnet.gluon import nn

import utils
from tests.conftest import ROOT
from utils.training import launch, loop
from utils.training.distributed import make_trainer, shard_dataset
from utils.training.loop import seed_everything

LAUNCH = [sys.executable, '-m', 'utils.training.launch']
TIMEOUT = 150  # generous: four processes import MXNet at once on a possibly busy machine


def data(n=45):
    rng = np.random.RandomState(3)
    y = rng.randint(0, 2, size=n).astype('float32')
    x = (rng.normal(size=(n, 6)) + y[:, None]).astype('float32')
    return x, y


def mlp(ctx):
    """No BatchNorm: its per-process statistics would make the comparison inexact."""
    net = nn.HybridSequential()
    net.add(nn.Dense(8, activation='relu'), nn.Dense(2))
    seed_everything(42)
    net.initialize(init.Xavier(), ctx=ctx)
    return net


WORKER = '''
import sys
import numpy as np
import utils
import mxnet as mx
from mxnet import gluon
from tests.test_launch import BATCH, EPOCHS, OPTIMIZER, data, mlp
from utils.training.distributed import create_kvstore, make_trainer, shard_dataset

kv = create_kvstore('dist_sync')
net = mlp(mx.cpu())
trainer = make_trainer(net.collect_params(), 'sgd', OPTIMIZER, kv)
shard = shard_dataset(gluon.data.ArrayDataset(*data()), kv)
loader = gluon.data.DataLoader(shard, BATCH)
utils.train(loader, None, net, gluon.loss.SoftmaxCrossEntropyLoss(), trainer, mx.cpu(), EPOCHS,
            progress=False)
np.savez(sys.argv[1] % kv.rank,
         **{name: p.data().asnumpy() for name, p in net._collect_params_with_prefix().items()})
print('saved rank', kv.rank, 'of', kv.num_workers)
'''
BATCH, EPOCHS = 8, 2
OPTIMIZER = {'learning_rate': 0.5, 'momentum': 0.9}


def run(cmd, env=None, **kwargs):
    env = env or dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT, **kwargs)


def single_process_equivalent():
    """One process on both workers' batches together: step k uses worker 0's batch k and
    worker 1's batch k (16 samples, the last step 6 + 6); utils.train divides by all 16."""
    x, y = data()
    dataset = gluon.data.ArrayDataset(x, y)
    shards = [[int(i) for i in shard_dataset(gluon.data.ArrayDataset(np.arange(len(x))), None,
                                             rank=r, num_workers=2)] for r in range(2)]
    order = []
    for k in range(0, len(shards[0]), BATCH):
        order += shards[0][k:k + BATCH] + shards[1][k:k + BATCH]
    merged = gluon.data.ArrayDataset(x[order], y[order])
    assert len(merged) == 44 and len(dataset) == 45  # one sample left out: equal shards
    net = mlp(mx.cpu())
    trainer = gluon.Trainer(net.collect_params(), 'sgd', OPTIMIZER)
    utils.train(gluon.data.DataLoader(merged, 2 * BATCH), None, net,
                gluon.loss.SoftmaxCrossEntropyLoss(), trainer, mx.cpu(), EPOCHS,
                progress=False, print_fn=lambda *a: None)
    return {name: p.data().asnumpy() for name, p in net._collect_params_with_prefix().items()}


def launch_workers(tmp_path, worker=WORKER):
    script = tmp_path / 'worker.py'
    script.write_text(worker)
    out = str(tmp_path / 'params%d.npz')
    proc = run(LAUNCH + ['-n', '2', '-s', '1', '--', 'python', str(script), out,
                         str(tmp_path / 'lock')])
    return proc, out


def mismatch(workers, expected):
    """Every difference: between each pair of workers, and between each worker and the single
    process ('' when all agree)."""
    holders = [('worker %d' % r, got) for r, got in enumerate(workers)]
    pairs = [(a, b) for i, a in enumerate(holders) for b in holders[i + 1:]]
    pairs += [(h, ('the single process', expected)) for h in holders]
    problems = []
    for (name_a, a), (name_b, b) in pairs:
        # structural names: '0.weight', ..., '1.bias'
        assert a.keys() == b.keys() == expected.keys() and len(expected) == 4
        for key in expected:
            if not np.allclose(a[key], b[key], rtol=1e-7, atol=1e-5):
                problems.append('%s and %s differ in %s by up to %g' % (
                    name_a, name_b, key, float(np.abs(a[key] - b[key]).max())))
    return '\n'.join(problems)


def test_mismatch_reports_every_difference():
    ref = {k: np.zeros(2) for k in ('0.weight', '0.bias', '1.weight', '1.bias')}
    off = dict(ref, **{'1.weight': np.array([0.0, 3.0])})
    assert mismatch([ref, ref], ref) == ''
    assert mismatch([off, ref], ref).splitlines() == [
        'worker 0 and worker 1 differ in 1.weight by up to 3',
        'worker 0 and the single process differ in 1.weight by up to 3']


def test_two_workers_equal_one_process_on_both_shards(tmp_path):
    # The single process runs fresh too: no state left by other tests in this one.
    ref = str(tmp_path / 'single.npz')
    proc = run([sys.executable, '-c', 'import utils, numpy as np; from tests.test_launch import '
                'single_process_equivalent as f; np.savez(%r, **f())' % ref])
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = dict(np.load(ref))
    proc, out = launch_workers(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count('saved rank') == 2
    assert '[worker 0] ' in proc.stdout and '[worker 1] ' in proc.stdout
    problems = mismatch([dict(np.load(out % r)) for r in range(2)], expected)
    assert not problems, problems + '\n' + proc.stdout[-3000:]


# Asynchronous SGD: each worker's gradient is applied by the server as it arrives. Shards of
# 100 samples in batches of 8 end with a batch of 4 (what MXNet refuses by itself).
ASYNC_WORKER = '''
import sys
import numpy as np
import utils
import mxnet as mx
from mxnet import gluon, nd
from tests.test_launch import BATCH, data, mlp
from utils.training.distributed import create_kvstore, make_trainer, shard_dataset

kv = create_kvstore('dist_async')
net = mlp(mx.cpu())
trainer = make_trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1}, kv)
shard = shard_dataset(gluon.data.ArrayDataset(*data(200)), kv)
assert len(shard) % BATCH == 4
history = utils.train(gluon.data.DataLoader(shard, BATCH, shuffle=True), None, net,
                      gluon.loss.SoftmaxCrossEntropyLoss(), trainer, mx.cpu(), 6,
                      progress=False)
saved = {'loss': np.array(history['loss'])}
for name, p in net._collect_params_with_prefix().items():
    saved['worker ' + name] = p.data().asnumpy()
    on_server = nd.zeros_like(p.data())
    kv.pull(trainer._param2idx[p.name], out=on_server)  # the server's value, once more
    saved['server ' + name] = on_server.asnumpy()
np.savez(sys.argv[1] % kv.rank, **saved)
print('saved rank', kv.rank, 'of', kv.num_workers)
'''


def test_dist_async_trains_ragged_shards_and_ends_with_the_servers_parameters(tmp_path):
    proc, out = launch_workers(tmp_path, ASYNC_WORKER)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count('saved rank') == 2
    saved = [dict(np.load(out % r)) for r in range(2)]
    names = [k[len('worker '):] for k in saved[0] if k.startswith('worker ')]
    assert len(names) == 4
    for rank, got in enumerate(saved):
        assert got['loss'][-1] < 0.8 * got['loss'][0], (rank, got['loss'])
        for name in names:  # every worker ends with exactly the server's parameters
            np.testing.assert_array_equal(got['worker ' + name], got['server ' + name])
            np.testing.assert_array_equal(got['worker ' + name], saved[0]['worker ' + name])


def test_ragged_batch_scaling_equals_a_step_with_its_own_size():
    """What utils.train does for dist_async's last batch: its gradient scaled by B / b, then a
    step of B, is the step of b the text's trainer.step(batch_size) takes."""
    x, y = data(5)
    nets = []
    for step in ('own size', 'scaled'):
        net = mlp(mx.cpu())  # seeded, initialised at its first forward: both start equal
        nets.append(net)
        trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.5})
        with mx.autograd.record():
            loss = gluon.loss.SoftmaxCrossEntropyLoss()(net(mx.nd.array(x)), mx.nd.array(y))
        loss.backward()
        if step == 'own size':
            trainer.step(5)
        else:
            loop._scale_grads(trainer, 8 / 5)
            trainer.step(8)
    for a, b in zip(nets[0].collect_params().values(), nets[1].collect_params().values()):
        np.testing.assert_allclose(a.data().asnumpy(), b.data().asnumpy(), rtol=1e-6, atol=1e-7)


# Both workers train on all the data (equal batches); the first to take the lock nudges one
# weight after the first epoch's last step, which the check at the end of that epoch must see.
PERTURBED = '''
import os, sys
import utils  # first: it prepares numpy for MXNet (numpy 2)
import mxnet as mx
from mxnet import gluon
from tests.test_launch import BATCH, OPTIMIZER, data, mlp
from utils.training.distributed import make_trainer
from utils.errors import main_guard


class NudgeAfterEpoch:
    def __init__(self, loader, param, amount):
        self.loader, self.param, self.amount = loader, param, amount

    def __iter__(self):
        yield from self.loader
        self.param.set_data(self.param.data() + self.amount)


@main_guard
def main():
    net = mlp(mx.cpu())
    trainer = make_trainer(net.collect_params(), 'sgd', OPTIMIZER, 'dist_sync')
    try:
        os.close(os.open(sys.argv[2], os.O_CREAT | os.O_EXCL))
        amount = 0.01
    except FileExistsError:
        amount = 0.0
    loader = NudgeAfterEpoch(gluon.data.DataLoader(gluon.data.ArrayDataset(*data()), BATCH),
                             net[1].weight, amount)
    utils.train(loader, None, net, gluon.loss.SoftmaxCrossEntropyLoss(), trainer, mx.cpu(), 2,
                progress=False)
    print('not stopped')


main()
'''


def test_disagreeing_workers_stop_with_one_line(tmp_path):
    proc, _ = launch_workers(tmp_path, PERTURBED)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if 'error:' in line]
    assert lines, proc.stdout[-3000:]
    assert re.search(r'\] error: the workers disagree after epoch 0: parameter \S*dense1_weight '
                     r'differs between workers \(0\) and \(1\); the run cannot be trusted',
                     lines[0]), lines
    assert 'Traceback' not in proc.stdout and 'not stopped' not in proc.stdout


def test_replica_groups():
    table = np.ones((3, 2, 4))
    table[1, 1] += 1e-3
    assert loop.replica_groups(table, 0) == [[0, 1, 2]]
    assert loop.replica_groups(table, 1) == [[0, 2], [1]]
    table[1, 1] = 1 + 1e-7  # rounding, not disagreement
    assert loop.replica_groups(table, 1) == [[0, 1, 2]]


def test_make_trainer_refuses_dist_sync_outside_a_launch(monkeypatch):
    monkeypatch.delenv('DMLC_ROLE', raising=False)
    net = mlp(mx.cpu())
    with pytest.raises(utils.UserError, match='python -m utils.training.launch'):
        make_trainer(net.collect_params(), 'sgd', OPTIMIZER, 'dist_sync')


def test_shards_are_equal_strided_and_disjoint():
    dataset = gluon.data.ArrayDataset(np.arange(11))
    shards = [[int(v) for v in shard_dataset(dataset, None, rank=r, num_workers=3)]
              for r in range(3)]
    assert shards == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    assert shard_dataset(dataset, None) is dataset  # no distributed kvstore: everything


# Workers that do not need MXNet: the first to start sleeps, the other fails after a moment.
FAILING = textwrap.dedent('''
    import os, sys, time
    lock = sys.argv[1]
    with open(sys.argv[2], 'a') as f:
        f.write('%d\\n' % os.getpid())
    try:
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL))
        time.sleep(600)
    except FileExistsError:
        time.sleep(1)
        sys.exit(3)
''')


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    with open('/proc/%d/stat' % pid) as f:
        return f.read().split(')')[-1].split()[0] != 'Z'


def pids_in(path):
    with open(path) as f:
        return [int(line) for line in f if line.strip()]


def tagged_processes(tag):
    """Live processes (scheduler, servers, workers) whose environment carries `tag`."""
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/environ' % entry, 'rb') as f:
                if ('LAUNCH_TEST_TAG=%s' % tag).encode() not in f.read().split(b'\0'):
                    continue
        except OSError:  # gone, or not ours
            continue
        if alive(int(entry)):
            found.append(int(entry))
    return found


def assert_nothing_left(tag, pids):
    """No process of the launch runs any more (a moment for the kernel to reap them)."""
    deadline = time.time() + 10
    while tagged_processes(tag) and time.time() < deadline:
        time.sleep(0.1)
    assert tagged_processes(tag) == []
    assert not any(alive(pid) for pid in pids)


def start_sleepers(tmp_path):
    """A launcher of two workers that only sleep; returns it once both workers run."""
    script = tmp_path / 'w.py'
    script.write_text('import os, sys, time\nopen(sys.argv[1], "a").write("%d\\n" % '
                      'os.getpid())\ntime.sleep(600)\n')
    pids = tmp_path / 'pids'
    tag = tmp_path.name
    launcher = subprocess.Popen(LAUNCH + ['-n', '2', '--', 'python', str(script), str(pids)],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=dict(os.environ, LAUNCH_TEST_TAG=tag),
                                preexec_fn=default_sigint)
    deadline = time.time() + TIMEOUT
    while not (pids.exists() and len(pids_in(pids)) == 2):
        if time.time() > deadline or launcher.poll() is not None:
            launcher.kill()
            raise AssertionError('the workers did not start: %s' % launcher.communicate())
        time.sleep(0.1)
    assert len(tagged_processes(tag)) >= 4  # scheduler, server and two workers
    return launcher, pids_in(pids), tag


def default_sigint():
    """Ctrl-C as in a terminal: a suite started in the background (`cmd &`) ignores SIGINT,
    and a child would inherit that and never see the interrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_failure_stops_every_process_and_returns_its_status(tmp_path):
    script = tmp_path / 'w.py'
    script.write_text(FAILING)
    pids = tmp_path / 'pids'
    tag = tmp_path.name
    proc = run(LAUNCH + ['-n', '2', '--', 'python', str(script), str(tmp_path / 'lock'),
                         str(pids)], env=dict(os.environ, PYTHONPATH=ROOT, LAUNCH_TEST_TAG=tag))
    assert proc.returncode == 3, proc.stderr
    assert 'exited with status 3: stopping the other processes' in proc.stderr
    assert len(pids_in(pids)) == 2
    assert_nothing_left(tag, pids_in(pids))


@pytest.mark.parametrize('how, status', [('kill -9 of a worker', 137),
                                         ('Ctrl-C of the launcher', 130)])
def test_kill_or_interrupt_stops_every_process(tmp_path, how, status):
    launcher, pids, tag = start_sleepers(tmp_path)
    try:
        if how.startswith('kill'):
            os.kill(pids[0], signal.SIGKILL)
        else:
            launcher.send_signal(signal.SIGINT)
        _, err = launcher.communicate(timeout=60)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == status, err
    assert_nothing_left(tag, pids)


@pytest.mark.parametrize('args, message', [
    (['-n', '2'], 'no worker command'),
    (['-n', '0', '--', 'python', '-V'], 'at least 1'),
    (['--', 'python', '-V'], 'required: -n'),
    (['-n', '1000', '--', 'python', '-V'], 'processes with the scheduler; this machine'),
    (['-n', '2', '-s', '500', '--', 'python', '-V'], 'give fewer'),
])
def test_bad_usage_is_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        launch.parse_args(args)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_bad_usage_from_the_command_line():
    proc = run(LAUNCH + ['-n', '2'])
    assert proc.returncode == 2 and proc.stderr.count('\n') == 1, proc.stderr
