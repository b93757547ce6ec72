"""Tests of assignment 1: split_batch and one data-parallel training step on CPU contexts.

The training probes give the student's train_step a small net on several devices and a
Trainer that notes each device's gradient when the update begins; they return the loss,
those gradients and every replica's weights after each step. The checks replay the steps on
one device in the grader: each device's gradient must be the gradient of its own slice of
the batch (a step that computes everything on one device fails), an idle device's must be
zero, and every replica must equal the one-device weights.
"""
import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

from assignments.testing import assert_close, graded, probe

SUBMISSION_FILE = 'data_parallel.py'
SHAPES = [(8, 4), (8,), (3, 8), (3,)]  # Dense(8, tanh) on 4 inputs, then Dense(3)


def devices(n):
    return [mx.cpu(i) for i in range(n)]


def split_observations(sub, batch, n):
    X = nd.arange(batch * 3).reshape((batch, 3))
    y = nd.arange(batch)
    xs, ys = sub.split_batch(X, y, devices(n))
    seen = {'count': [len(xs), len(ys)],
            'contexts': [str(x.context) for x in xs] + [str(t.context) for t in ys]}
    for i, (x, t) in enumerate(zip(xs, ys)):
        seen['x%d' % i], seen['y%d' % i] = x, t
    return seen


def check_split(seen, batch, n):
    used = min(batch, n)
    count = np.asarray(seen['count']).tolist()
    assert count == [used, used], \
        '%d examples over %d devices: expected %d slices, got %s' % (batch, n, used, count)
    expected = [str(c) for c in devices(used)] * 2
    assert seen['contexts'] == expected, 'slices on %s, expected %s' % (seen['contexts'],
                                                                        expected)
    xs, ys = [seen['x%d' % i] for i in range(used)], [seen['y%d' % i] for i in range(used)]
    for i, x in enumerate(xs):
        assert np.ndim(x) >= 1 and np.shape(x)[0] > 0, 'slice %d is empty' % i
    rows = [sum(np.shape(part)[0] for part in parts) for parts in (xs, ys)]
    assert rows == [batch, batch], 'the slices of X and y hold %s rows, the batch %d' % (
        rows, batch)
    assert_close(np.concatenate(xs), np.arange(batch * 3).reshape((batch, 3)),
                 'the slices of X put back together')
    assert_close(np.concatenate(ys), np.arange(batch), 'the slices of y put back together')


def initial_weights(seed):
    rng = np.random.RandomState(seed)
    return [(rng.randn(*s) * (0.5 if len(s) == 1 else np.sqrt(2 / sum(s)))).astype('float32')
            for s in SHAPES]


def batches(seed, sizes):
    rng = np.random.RandomState(seed + 1000)
    return [(rng.randn(size, 4).astype('float32'), rng.randint(0, 3, size).astype('float32'))
            for size in sizes]


def make_net(ctx, weights):
    """A small net without BatchNorm (replicas then equal one device exactly), given weights."""
    net = nn.Sequential()
    net.add(nn.Dense(8, activation='tanh', in_units=4), nn.Dense(3, in_units=8))
    net.initialize(ctx=ctx)
    for param, value in zip(net.collect_params().values(), weights):
        param.set_data(nd.array(value))
    return net


class WatchedTrainer(gluon.Trainer):
    """A Trainer that notes every device's gradients when an update begins."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.noted = None

    def _note(self):
        if self.noted is None:
            self.noted = {p.name: [g.asnumpy() for g in p.list_grad()]
                          for p in self._params if p.grad_req != 'null'}

    def step(self, *args, **kwargs):
        self._note()
        return super().step(*args, **kwargs)

    def allreduce_grads(self):
        self._note()
        return super().allreduce_grads()

    def update(self, *args, **kwargs):
        self._note()
        return super().update(*args, **kwargs)


def training_observations(sub, sizes, n, seed, **trainer_kwargs):
    ctx = devices(n)
    net = make_net(ctx, initial_weights(seed))
    trainer = WatchedTrainer(net.collect_params(), 'sgd', {'learning_rate': 0.5},
                             **trainer_kwargs)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    seen = {}
    for step, (X, y) in enumerate(batches(seed, sizes)):
        X, y = nd.array(X), nd.array(y)
        trainer.noted = None
        seen['loss%d' % step] = float(sub.train_step(net, loss, trainer, X, y, ctx))
        assert trainer.noted is not None, 'train_step did not update with the trainer'
        for p, param in enumerate(net.collect_params().values()):
            for d, grad in enumerate(trainer.noted.get(param.name, [])):
                seen['grad%d_%d_%d' % (step, p, d)] = grad
        for p, param in enumerate(net.collect_params().values()):
            for d, replica in enumerate(param.list_data()):
                seen['weight%d_%d_%d' % (step, p, d)] = replica.asnumpy()
    return seen


def slice_gradients(one, loss, X, y, start, stop):
    """The one-device gradients of rows start..stop of the batch."""
    with autograd.record():
        part = loss(one(nd.array(X[start:stop])), nd.array(y[start:stop]))
    part.backward()
    return [param.grad().asnumpy() for param in one.collect_params().values()]


def gradients_equal(seen, step, d, expected):
    """Whether device d's gradients, as noted at step `step`, are `expected`."""
    for p, value in enumerate(expected):
        got = seen['grad%d_%d_%d' % (step, p, d)]
        if np.shape(got) != value.shape or np.asarray(got).dtype.kind != 'f' or \
                not np.allclose(got, value, rtol=1e-4, atol=1e-5):
            return False
    return True


def check_training(seen, sizes, n, seed, **trainer_kwargs):
    """Replays the steps on one device; compares gradients per device and every replica.

    Which rows each device trained on follows from its gradient: the first min(n, batch)
    devices each hold the gradient of its own slice, consecutive and not empty, in the
    order of the devices, together the whole batch; the others a zero gradient."""
    one = make_net([mx.cpu(0)], initial_weights(seed))
    trainer = gluon.Trainer(one.collect_params(), 'sgd', {'learning_rate': 0.5})
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    params = list(one.collect_params().values())
    for step, (X, y) in enumerate(batches(seed, sizes)):
        used, start = min(n, len(X)), 0
        where = 'step %d (batch of %d on %d devices)' % (step, len(X), n)
        for d in range(n):
            if d >= used:  # an idle device
                expected, what = [np.zeros(p.shape, 'float32') for p in params], 'zero'
            elif d == used - 1:  # the last slice: what is left
                expected = slice_gradients(one, loss, X, y, start, len(X))
                what = 'that of rows %d to %d' % (start, len(X) - 1)
            else:
                stops = range(start + 1, len(X) - (used - 1 - d) + 1)
                found = [stop for stop in stops if gradients_equal(
                    seen, step, d, slice_gradients(one, loss, X, y, start, stop))]
                assert found, '%s: the gradient on cpu(%d) is not that of any slice of the ' \
                    'batch from row %d on, leaving a row for each later device' % (
                        where, d, start)
                start = found[0]
                continue
            for p, param in enumerate(params):
                assert_close(seen['grad%d_%d_%d' % (step, p, d)], expected[p],
                             '%s: the gradient of %s on cpu(%d) (%s)' % (
                                 where, param.name.split('_', 1)[-1], d, what),
                             rtol=1e-4, atol=1e-5)
        with autograd.record():
            expected_loss = loss(one(nd.array(X)), nd.array(y))
        expected_loss.backward()
        trainer.step(len(X))
        expected = float(expected_loss.sum().asscalar())
        got = float(seen['loss%d' % step])
        assert abs(got - expected) < 1e-4 * max(1, abs(expected)), \
            'step %d (batch of %d): returned loss %s, one device gets %.5f' % (
                step, len(X), got, expected)
        for p, param in enumerate(params):
            for d in range(n):
                assert_close(seen['weight%d_%d_%d' % (step, p, d)], param.data().asnumpy(),
                             'after step %d (batch of %d on %d devices), %s on cpu(%d)' % (
                                 step, len(X), n, param.name.split('_', 1)[-1], d),
                             rtol=1e-4, atol=1e-5)


@probe(timeout=30)
def split_even(sub):
    return split_observations(sub, 6, 2)


@graded(1, probe=split_even)
def test_split_even(seen):
    check_split(seen, 6, 2)


@probe(timeout=30)
def split_uneven(sub):
    return split_observations(sub, 7, 3)


@graded(1, probe=split_uneven)
def test_split_uneven(seen):
    check_split(seen, 7, 3)


@probe(timeout=40)
def train_two_devices(sub):
    return training_observations(sub, [6, 4], 2, seed=1)


@graded(2, probe=train_two_devices)
def test_train_step_two_devices(seen):
    check_training(seen, [6, 4], 2, seed=1)


### BEGIN HIDDEN TESTS
@probe(timeout=30)
def split_small(sub):
    return dict([('a_' + k, v) for k, v in split_observations(sub, 2, 3).items()] +
                [('b_' + k, v) for k, v in split_observations(sub, 1, 4).items()])


@graded(1, probe=split_small)
def test_split_smaller_than_devices(seen):
    for prefix, batch, n in (('a_', 2, 3), ('b_', 1, 4)):
        check_split({k[2:]: v for k, v in seen.items() if k.startswith(prefix)}, batch, n)


@probe(timeout=60)
def train_last_batch_small(sub):
    # a full batch, an uneven one, then fewer examples than devices, then a full one again
    return training_observations(sub, [12, 7, 2, 9], 3, seed=20)


@graded(3, probe=train_last_batch_small)
def test_train_unseen_last_batch_smaller_than_devices(seen):
    check_training(seen, [12, 7, 2, 9], 3, seed=20)


@probe(timeout=60)
def train_no_update_on_kvstore(sub):
    # the gradients are summed and each replica updates itself: an idle one must update too
    return training_observations(sub, [8, 1, 8], 4, seed=21, update_on_kvstore=False)


@graded(2, probe=train_no_update_on_kvstore)
def test_train_without_update_on_kvstore(seen):
    check_training(seen, [8, 1, 8], 4, seed=21)
### END HIDDEN TESTS
