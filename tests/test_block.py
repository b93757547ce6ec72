"""utils.pretrained.block: frozen BatchNorm layers keep their statistics and give exact
gradients."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, init, nd
from mxnet.gluon import nn

import utils


def test_frozen_batchnorm_gradients_match_finite_differences():
    # MXNet 1.9.1's oneDNN BatchNorm gives wrong gradients inside
    # autograd.record(train_mode=False); the use_global_stats route must be exact.
    mx.random.seed(0)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, 3, padding=1), nn.BatchNorm(), nn.Activation('tanh'),
            nn.Conv2D(8, 1), nn.BatchNorm(), nn.Activation('tanh'), nn.Dense(2))
    net.initialize(init.Xavier())
    x = nd.random.normal(shape=(4, 3, 8, 8))
    net(x)
    for bn in (net[1], net[4]):
        bn.running_mean.set_data(nd.random.normal(shape=bn.running_mean.shape))
        bn.running_var.set_data(nd.random.uniform(0.5, 2, shape=bn.running_var.shape))
    utils.freeze_batchnorm(net)
    net.hybridize()
    stats = net[1].running_mean.data().asnumpy().copy()
    weight = net[0].weight

    def f():
        return (net(x) ** 2).sum()
    with autograd.record():
        y = f()
    y.backward()
    assert np.array_equal(stats, net[1].running_mean.data().asnumpy())
    grad, w0, eps = weight.grad().asnumpy(), weight.data().asnumpy(), 1e-2
    for idx in [(0, 0, 1, 1), (2, 1, 0, 2), (3, 0, 2, 2), (7, 2, 2, 0)]:
        values = []
        for sign in (1, -1):
            w = w0.copy()
            w[idx] += sign * eps
            weight.set_data(nd.array(w))
            values.append(f().asscalar())
        numeric = (values[0] - values[1]) / (2 * eps)
        assert grad[idx] == pytest.approx(numeric, rel=2e-3, abs=1e-3), idx


def test_release_graph_drops_every_graph_and_the_next_call_is_the_same():
    """release_graph clears the cached graph of a block and of its children (each kept
    static buffers); the block then builds it again and computes the same outputs."""
    mx.random.seed(0)
    inner = nn.HybridSequential()
    inner.add(nn.Dense(4, activation='relu'))
    net = nn.HybridSequential()
    net.add(inner, nn.Dense(2))
    net.initialize()
    net.hybridize(static_alloc=True, static_shape=True)
    x = nd.random.normal(shape=(3, 5))
    before = net(x).asnumpy()
    inner(x).wait_to_read()   # the child called on its own: a graph of its own
    assert net._cached_op is not None and inner._cached_op is not None
    assert utils.release_graph(net) is net
    assert net._cached_op is None and inner._cached_op is None
    np.testing.assert_array_equal(net(x).asnumpy(), before)
    assert net._cached_op is not None


def test_predict_arrays_writes_into_one_array_like_concatenating():
    """predict_arrays knows how many inputs come: the batches' outputs go into one array,
    equal to what concatenating them gives, for a ragged last batch too."""
    mx.random.seed(1)
    net = nn.Dense(3)
    net.initialize()
    x = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    out = utils.predict_arrays(net, x, batch_size=4)
    expected = np.concatenate([utils.predict_batches(net, [nd.array(x[i:i + 4])])
                               for i in range(0, 10, 4)])
    assert out.shape == (10, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)
    assert utils.predict_arrays(net, x[:0]).shape[0] == 0
