"""utils.block: frozen BatchNorm layers keep their statistics and give exact gradients."""
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
