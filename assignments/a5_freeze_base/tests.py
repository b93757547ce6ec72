"""Tests of assignment 5: a frozen base keeps its weights and BatchNorm statistics."""
import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

from assignments.testing import assert_close, graded

SUBMISSION_FILE = 'freeze.py'


def make_net(seed, dtype='float32', nested=False):
    """pre (trainable) -> base (to freeze: conv, BatchNorm, ReLU, conv, BatchNorm) -> head."""
    mx.random.seed(seed)
    pre = nn.Conv2D(4, 3, padding=1, in_channels=3)
    base = nn.HybridSequential()
    inner = nn.HybridSequential()
    inner.add(nn.Conv2D(5, 3, in_channels=6), nn.BatchNorm(in_channels=5))
    base.add(nn.Conv2D(6, 3, padding=1, in_channels=4), nn.BatchNorm(in_channels=6),
             nn.Activation('relu'))
    if nested:  # a BatchNorm one level down, as in MobileNet's blocks
        base.add(inner)
    else:
        base.add(*inner._children.values())
    head = nn.Dense(3, in_units=5 * 4 * 4)
    net = nn.HybridSequential()
    net.add(pre, base, head)
    net.initialize(init.Xavier())
    net.cast(dtype)
    for name, param in base.collect_params().items():  # statistics far from a fresh 0 / 1
        if name.endswith('running_mean'):
            param.set_data(nd.random.normal(shape=param.shape, dtype=dtype))
        elif name.endswith('running_var'):
            param.set_data(nd.random.uniform(0.5, 2, shape=param.shape, dtype=dtype))
    return net, pre, base, head


def snapshot(block):
    return {name: p.data().asnumpy().copy() for name, p in block.collect_params().items()}


def train_one_step(net, seed, dtype='float32'):
    rng = np.random.RandomState(seed)
    x = nd.array(rng.randn(8, 3, 6, 6), dtype=dtype)
    y = nd.array(rng.randint(0, 3, 8), dtype=dtype)
    trainable = {n: p for n, p in net.collect_params().items() if p.grad_req != 'null'}
    trainer = gluon.Trainer(trainable, 'sgd', {'learning_rate': 0.1})
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    with autograd.record():
        lo = loss(net(x), y)
    lo.backward()
    trainer.step(8)
    nd.waitall()


def check_step(sub, nested, hybridize):
    net, pre, base, head = make_net(seed=1, nested=nested)
    returned = sub.freeze(base)
    assert returned is base, 'freeze should return the block'
    if hybridize:
        net.hybridize()
    before_base, before_head = snapshot(base), snapshot(head)
    train_one_step(net, seed=2)
    after_base = snapshot(base)
    for name, value in before_base.items():
        what = 'running statistic' if 'running' in name else 'weight'
        assert_close(after_base[name], value, 'frozen %s %s after a training step'
                     % (what, name), rtol=0, atol=0)
    changed = any(not np.allclose(snapshot(head)[n], v) for n, v in before_head.items())
    assert changed, 'the head did not change: it must keep training'


@graded(1, timeout=30)
def test_no_gradient_for_base(sub):
    net, pre, base, head = make_net(seed=0)
    sub.freeze(base)
    trainable = [n for n, p in base.collect_params().items() if p.grad_req != 'null']
    assert not trainable, 'these parameters of the base still get gradients: %s' % trainable
    still = [n for n, p in list(pre.collect_params().items()) + list(head.collect_params().items())
             if p.grad_req == 'null']
    assert not still, 'freeze(base) froze parameters outside the base: %s' % still


@graded(2, timeout=30)
def test_step_leaves_base_unchanged(sub):
    check_step(sub, nested=False, hybridize=False)


### BEGIN HIDDEN TESTS
@graded(2, timeout=40)
def test_step_nested_and_hybridized(sub):
    check_step(sub, nested=True, hybridize=True)


@graded(2, timeout=40)
def test_training_output_equals_inference_output(sub):
    net, pre, base, head = make_net(seed=3, nested=True)
    sub.freeze(base)
    x = nd.random.normal(shape=(4, 4, 6, 6))
    inference = base(x)
    with autograd.record():
        training = base(x)
    assert_close(training, inference, 'the frozen base in training mode against inference '
                 'mode', rtol=1e-5, atol=1e-5)


@graded(3, timeout=60)
def test_gradients_match_finite_differences(sub):
    net, pre, base, head = make_net(seed=4, dtype='float64', nested=True)
    sub.freeze(base)
    rng = np.random.RandomState(5)
    x = nd.array(rng.randn(4, 3, 6, 6), dtype='float64')
    r = nd.array(rng.randn(4, 3), dtype='float64')
    x.attach_grad()
    with autograd.record():
        total = (net(x) * r).sum()
    total.backward()

    def value():
        with autograd.record():  # training mode, as when the gradients were taken
            return float((net(x) * r).sum().asscalar())

    h = 1e-5
    checks = [(pre.weight.data(), pre.weight.grad(), 'pre-layer weight'),
              (pre.bias.data(), pre.bias.grad(), 'pre-layer bias'),
              (head.weight.data(), head.weight.grad(), 'head weight'),
              (x, x.grad, 'input')]
    for array, grad, what in checks:
        flat = array.reshape((-1,))
        for i in rng.choice(flat.size, 4, replace=False):
            old = flat[i].asscalar()
            flat[i] = old + h
            plus = value()
            flat[i] = old - h
            minus = value()
            flat[i] = old
            numeric = (plus - minus) / (2 * h)
            analytic = grad.reshape((-1,))[i].asscalar()
            assert abs(numeric - analytic) <= 1e-4 * max(1.0, abs(numeric)), \
                '%s: autograd gives %.6g, a finite difference %.6g' % (what, analytic, numeric)
### END HIDDEN TESTS
