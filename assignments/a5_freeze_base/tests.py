"""Tests of assignment 5: a frozen base keeps its weights and BatchNorm statistics.

A probe builds a small network `pre -> base -> head`, lets the student's freeze(base) act on
it and exports it: the hybridized graph (symbol JSON), every parameter's value and grad_req.
The checks rebuild that graph in the grader (only the layers such a network is made of),
check it still computes the network it was given, then train it one step there, compare
training with inference and take finite differences.
"""
import json

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

from assignments.testing import assert_close, graded, probe

SUBMISSION_FILE = 'freeze.py'
# the operators a frozen pre -> base -> head network is made of, and those a freeze may add
OPERATORS = {'null', 'Convolution', 'BatchNorm', 'Activation', 'FullyConnected', 'Flatten',
             'BlockGrad', 'stop_gradient', 'identity', '_copy'}
ADDED = {'BlockGrad', 'stop_gradient', 'identity', '_copy'}  # what a freeze may add
SHAPE_ATTRIBUTES = ('kernel', 'stride', 'pad', 'dilate', 'num_filter', 'num_group',
                    'num_hidden', 'no_bias', 'flatten')
INPUT = (8, 3, 6, 6)


def make_net(seed, dtype='float32', nested=False):
    """pre (trainable) -> base (to freeze: conv, BatchNorm, ReLU, conv, BatchNorm) -> head,
    its weights and BatchNorm statistics from a seeded generator."""
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
    net.initialize()
    rng = np.random.RandomState(seed)
    for name, param in net.collect_params().items():
        if name.endswith('running_var'):  # statistics far from a fresh 0 / 1
            value = rng.uniform(0.5, 2, param.shape)
        elif name.endswith('gamma'):
            value = rng.uniform(0.5, 1.5, param.shape)
        else:
            value = rng.randn(*param.shape) * (0.3 if name.endswith('weight') else 1)
        param.set_data(nd.array(value))
    net.cast(dtype)
    return net, pre, base, head


def exported(sub, seed, nested, dtype='float32'):
    """freeze(base), then the network as a graph, parameters and the role of each one."""
    net, pre, base, head = make_net(seed, dtype, nested)
    returned = sub.freeze(base)
    seen = {'returned_base': returned is base}
    roles = {}
    for role, block in (('pre', pre), ('base', base), ('head', head)):
        for name, param in block.collect_params().items():
            roles[name] = [role, param.grad_req]
            seen['param:' + name] = param.data().asnumpy()
    net.hybridize()
    net(nd.zeros(INPUT, dtype=dtype))
    seen['symbol'] = net._cached_graph[1].tojson()
    seen['roles'] = roles
    return seen


def reference_graph(seed, nested, dtype='float32'):
    """The graph of the network handed to freeze, exported here."""
    net = make_net(seed, dtype, nested)[0]
    net.hybridize()
    net(nd.zeros(INPUT, dtype=dtype))
    return json.loads(net._cached_graph[1].tojson())


def layers(graph):
    """The graph's layers in order, each with the attributes that set its shape and cost."""
    return [(node.get('op'), [node.get('attrs', {}).get(k) for k in SHAPE_ATTRIBUTES])
            for node in graph['nodes'] if node.get('op') not in ADDED | {'null'}]


def check_graph(graph, seed, nested, dtype):
    """The handed-back graph is the network's, before MXNet is given it: each node takes the
    first output of a node before it, the layers (and their shapes) are the network's, a
    freeze adds no more than one identity-like node per layer."""
    nodes = graph.get('nodes') if isinstance(graph, dict) else None
    assert isinstance(nodes, list) and nodes, 'the graph has no list of nodes'
    ops = {node.get('op') for node in nodes}
    assert ops <= OPERATORS, 'the network holds operators it should not: %s' % sorted(
        map(str, ops - OPERATORS))
    entries = [(i, entry) for i, node in enumerate(nodes) for entry in node.get('inputs', [])]
    entries += [(len(nodes), entry) for entry in graph.get('heads', [])]
    for i, entry in entries:
        assert len(entry) >= 2 and 0 <= entry[0] < i and entry[1] == 0, \
            'node %d of the graph takes an input that is not an earlier node\'s output' % i
    reference = reference_graph(seed, nested, dtype)
    assert layers(graph) == layers(reference), \
        'the network\'s layers are not those of the network handed to freeze'
    added = sum(node.get('op') in ADDED for node in nodes)
    assert added <= len(layers(reference)), 'the graph adds %d nodes' % added
    nulls = sum(node.get('op') == 'null' for node in nodes)
    assert nulls <= sum(node.get('op') == 'null' for node in reference['nodes']), \
        'the graph has %d inputs and parameters' % nulls


def roles_by_value(seen, seed, nested, dtype='float32'):
    """{name: 'pre', 'base' or 'head'} for each parameter handed back, found by its value
    among the parameters of the network handed to freeze (which freeze does not change)."""
    _, pre, base, head = make_net(seed, dtype, nested)
    blocks = (('pre', pre), ('base', base), ('head', head))
    left = [(role, p.data().asnumpy()) for role, block in blocks
            for p in block.collect_params().values()]
    roles = {}
    for key in sorted(k for k in seen if k.startswith('param:')):
        value = np.asarray(seen[key])
        found = [i for i, (_, v) in enumerate(left)
                 if v.shape == value.shape and v.dtype == value.dtype and np.array_equal(v, value)]
        assert found, 'parameter %s holds values the network handed to freeze did not have' \
            % key[6:]
        roles[key[6:]] = left.pop(found[0])[0]
    assert not left, 'the network handed back lacks %d of its parameters' % len(left)
    return roles


def data(seed, dtype='float32'):
    rng = np.random.RandomState(seed)
    return (nd.array(rng.randn(*INPUT), dtype=dtype),
            nd.array(rng.randint(0, 3, INPUT[0]), dtype=dtype))


def rebuilt(seen, seed, nested, dtype='float32'):
    """The exported network, rebuilt here: (net, {name: role}); checked to compute what the
    network handed to freeze computes, in inference."""
    check_graph(json.loads(seen['symbol']), seed, nested, dtype)
    assert seen['returned_base'], 'freeze should return the block'
    known = roles_by_value(seen, seed, nested, dtype)
    symbol = mx.sym.load_json(seen['symbol'])
    inputs = [n for n in symbol.list_inputs() if 'param:' + n not in seen]
    assert len(inputs) == 1, 'the network has inputs %s' % inputs
    net = gluon.SymbolBlock(symbol, mx.sym.var(inputs[0]))
    roles = {}
    for name, param in net.collect_params().items():
        assert 'param:' + name in seen and name in seen['roles'], 'no value for %s' % name
        value = seen['param:' + name]
        param.shape = np.shape(value)
        param.initialize()
        param.set_data(nd.array(value, dtype=dtype))
        grad_req = seen['roles'][name][1]
        param.grad_req = 'null' if grad_req == 'null' else 'write'
        roles[name] = known[name]
    net.cast(dtype)
    reference = make_net(seed, dtype, nested)[0]
    x = data(seed + 100, dtype)[0]
    assert_close(net(x), reference(x), 'the network after freeze, in inference',
                 rtol=1e-4, atol=1e-5)
    return net, roles


def values(net, roles, role):
    return {n: p.data().asnumpy().copy() for n, p in net.collect_params().items()
            if roles[n] == role}


def check_grad_req(seen, seed, nested):
    """grad_req of each parameter, whose role the check finds by its value."""
    roles = roles_by_value(seen, seed, nested)
    requests = {name: str(seen['roles'][name][1]) for name in roles}
    trainable = [n for n, role in roles.items() if role == 'base' and requests[n] != 'null']
    assert not trainable, 'these parameters of the base still get gradients: %s' % trainable
    still = [n for n, role in roles.items() if role != 'base' and requests[n] == 'null']
    assert not still, 'freeze(base) froze parameters outside the base: %s' % still


def check_step(seen, seed, nested):
    check_grad_req(seen, seed, nested)
    net, roles = rebuilt(seen, seed, nested)
    before_base, before_head = values(net, roles, 'base'), values(net, roles, 'head')
    trainable = {n: p for n, p in net.collect_params().items() if p.grad_req != 'null'}
    trainer = gluon.Trainer(trainable, 'sgd', {'learning_rate': 0.1})
    x, y = data(seed + 1)
    with autograd.record():
        lo = gluon.loss.SoftmaxCrossEntropyLoss()(net(x), y)
    lo.backward()
    trainer.step(INPUT[0])
    after_base = values(net, roles, 'base')
    for name, value in before_base.items():
        what = 'running statistic' if 'running' in name else 'weight'
        assert_close(after_base[name], value, 'frozen %s %s after a training step'
                     % (what, name), rtol=0, atol=0)
    after_head = values(net, roles, 'head')
    changed = any(not np.allclose(after_head[n], v) for n, v in before_head.items())
    assert changed, 'the head did not change: it must keep training'


@probe(timeout=30)
def frozen_flat(sub):
    return exported(sub, 1, nested=False)


@graded(1, probe=frozen_flat)
def test_no_gradient_for_base(seen):
    check_grad_req(seen, 1, nested=False)


@graded(2, probe=frozen_flat)
def test_step_leaves_base_unchanged(seen):
    check_step(seen, 1, nested=False)


### BEGIN HIDDEN TESTS
@probe(timeout=40)
def frozen_nested(sub):
    return exported(sub, 3, nested=True)


@graded(2, probe=frozen_nested)
def test_step_nested_and_hybridized(seen):
    check_step(seen, 3, nested=True)


@graded(2, probe=frozen_nested)
def test_training_output_equals_inference_output(seen):
    net, roles = rebuilt(seen, 3, nested=True)
    x = data(9)[0]
    inference = net(x)
    with autograd.record():
        training = net(x)
    assert_close(training, inference, 'the frozen network in training mode against '
                 'inference mode', rtol=1e-5, atol=1e-5)


@probe(timeout=60)
def frozen_float64(sub):
    return exported(sub, 4, nested=True, dtype='float64')


@graded(3, probe=frozen_float64)
def test_gradients_match_finite_differences(seen):
    net, roles = rebuilt(seen, 4, nested=True, dtype='float64')
    rng = np.random.RandomState(5)
    x = nd.array(rng.randn(*INPUT), dtype='float64')
    r = nd.array(rng.randn(INPUT[0], 3), dtype='float64')
    x.attach_grad()
    with autograd.record():
        total = (net(x) * r).sum()
    total.backward()

    def value():
        with autograd.record():  # training mode, as when the gradients were taken
            return float((net(x) * r).sum().asscalar())

    h = 1e-5
    checks = [(p.data(), p.grad(), '%s %s' % (roles[n], n))
              for n, p in net.collect_params().items()
              if roles[n] in ('pre', 'head') and p.grad_req != 'null'] + [(x, x.grad, 'input')]
    for array, grad, what in checks:
        flat = array.reshape((-1,))
        for i in rng.choice(flat.size, 3, replace=False):
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
