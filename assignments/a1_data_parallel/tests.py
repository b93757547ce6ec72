"""Tests of assignment 1: split_batch and one data-parallel training step on CPU contexts."""
import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

from assignments.testing import assert_close, graded

SUBMISSION_FILE = 'data_parallel.py'


def devices(n):
    return [mx.cpu(i) for i in range(n)]


def check_split(sub, batch, n):
    X = nd.arange(batch * 3).reshape((batch, 3))
    y = nd.arange(batch)
    ctx = devices(n)
    xs, ys = sub.split_batch(X, y, ctx)
    used = min(batch, n)
    assert len(xs) == len(ys) == used, \
        '%d examples over %d devices: expected %d slices, got %d' % (batch, n, used, len(xs))
    for i, (x, t) in enumerate(zip(xs, ys)):
        assert x.shape[0] > 0, 'slice %d is empty' % i
        assert x.context == ctx[i] and t.context == ctx[i], 'slice %d is not on %s' % (i, ctx[i])
    assert_close(nd.concat(*[x.as_in_context(mx.cpu()) for x in xs], dim=0), X,
                 'the slices of X put back together')
    assert_close(nd.concat(*[t.as_in_context(mx.cpu()) for t in ys], dim=0), y,
                 'the slices of y put back together')


def make_net(ctx, weights, **trainer_kwargs):
    """A small net without BatchNorm (replicas then equal one device exactly), given weights."""
    net = nn.Sequential()
    net.add(nn.Dense(8, activation='tanh'), nn.Dense(3))
    net.initialize(ctx=ctx)
    net(nd.zeros((1, 4), ctx=ctx[0]))
    for param, value in zip(net.collect_params().values(), weights):
        param.set_data(nd.array(value))
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.5},
                            **trainer_kwargs)
    return net, trainer


def initial_weights(seed):
    mx.random.seed(seed)
    net = nn.Sequential()
    net.add(nn.Dense(8, activation='tanh'), nn.Dense(3))
    net.initialize(init.Xavier())
    net(nd.zeros((1, 4)))
    return [p.data().asnumpy() for p in net.collect_params().values()]


def check_training(sub, batch_sizes, n, seed, **trainer_kwargs):
    """Steps of the student's train_step on n devices against one device, replica by replica."""
    rng = np.random.RandomState(seed)
    weights = initial_weights(seed)
    ctx = devices(n)
    net, trainer = make_net(ctx, weights, **trainer_kwargs)
    one, one_trainer = make_net([mx.cpu(0)], weights)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    for step, size in enumerate(batch_sizes):
        X = nd.array(rng.randn(size, 4))
        y = nd.array(rng.randint(0, 3, size))
        got = sub.train_step(net, loss, trainer, X, y, ctx)
        with autograd.record():
            expected_loss = loss(one(X), y)
        expected_loss.backward()
        one_trainer.step(size)
        expected = float(expected_loss.sum().asscalar())
        assert abs(float(got) - expected) < 1e-4 * max(1, abs(expected)), \
            'step %d (batch of %d): returned loss %s, one device gets %.5f' % (
                step, size, got, expected)
        for (name, mine), theirs in zip(net.collect_params().items(),
                                        one.collect_params().values()):
            for replica in mine.list_data():
                assert_close(replica, theirs.data(), 'after step %d (batch of %d on %d '
                             'devices), %s on %s' % (step, size, n, name, replica.context),
                             rtol=1e-4, atol=1e-5)


@graded(1, timeout=30)
def test_split_even(sub):
    check_split(sub, 6, 2)


@graded(1, timeout=30)
def test_split_uneven(sub):
    check_split(sub, 7, 3)


@graded(2, timeout=40)
def test_train_step_two_devices(sub):
    check_training(sub, [6, 4], 2, seed=1)


### BEGIN HIDDEN TESTS
@graded(1, timeout=30)
def test_split_smaller_than_devices(sub):
    check_split(sub, 2, 3)
    check_split(sub, 1, 4)


@graded(3, timeout=60)
def test_train_unseen_last_batch_smaller_than_devices(sub):
    # a full batch, an uneven one, then fewer examples than devices, then a full one again
    check_training(sub, [12, 7, 2, 9], 3, seed=20)


@graded(2, timeout=60)
def test_train_without_update_on_kvstore(sub):
    # the gradients are summed and each replica updates itself: an idle one must update too
    check_training(sub, [8, 1, 8], 4, seed=21, update_on_kvstore=False)
### END HIDDEN TESTS
