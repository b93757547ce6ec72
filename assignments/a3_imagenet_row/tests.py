"""Tests of assignment 3: the ImageNet row, found by name.

The probes hand the student's functions layers whose weights come from a seeded numpy
generator, and return the layers afterwards; the checks build the same arrays, and the
expected row from the pretrained weights, in the grader.
"""
import numpy as np
from mxnet import nd
from mxnet.gluon import nn

import utils
from assignments.testing import assert_close, graded, probe

SUBMISSION_FILE = 'imagenet_row.py'
TEXT_INDEX = 713  # what the text says; ImageNet's 713 is 'photocopier'
_cache = {}


def pretrained():
    """The offline pretrained MobileNetV2, loaded once per process."""
    if 'net' not in _cache:
        _cache['net'] = utils.get_pretrained('mobilenetv2_1.0')
    return _cache['net']


def prepare():
    """The grader's set-up: the weights (converted once) and the class names."""
    pretrained()
    utils.imagenet_classes()


def layer_arrays(seed, shapes):
    """Weights and biases of several layers, in order, from one seeded generator."""
    rng = np.random.RandomState(seed)
    return [(rng.randn(*shape).astype('float32'), rng.randn(shape[0]).astype('float32'))
            for shape in shapes]


def dense_layers(seed, classes_in, classes_out, features):
    """(old, new): Dense layers holding layer_arrays(seed, ...)."""
    layers = []
    for units, (weight, bias) in zip((classes_in, classes_out), layer_arrays(
            seed, [(classes_in, features), (classes_out, features)])):
        layer = nn.Dense(units, in_units=features)
        layer.initialize()
        layer.weight.set_data(nd.array(weight))
        layer.bias.set_data(nd.array(bias))
        layers.append(layer)
    return layers


def layer_after(new):
    return {'weight': new.weight.data(), 'bias': new.bias.data()}


def check_row(seen, expected_weight_row, expected_bias, row, before):
    """Row `row` equals the expected one, the other rows are unchanged."""
    weight, bias = seen['weight'], seen['bias']
    assert_close(np.shape(weight), np.shape(before[0]), 'the shape of the weight')
    assert_close(weight[row], expected_weight_row, 'weight row %d' % row)
    assert_close(bias[row], expected_bias, 'bias %d' % row)
    others = [r for r in range(len(before[0])) if r != row]
    assert_close(weight[others], before[0][others], 'the other weight rows (unchanged)')
    assert_close(bias[others], before[1][others], 'the other biases (unchanged)')


def check_dense(seen, seed, classes_in, classes_out, features, index, row):
    old, new = layer_arrays(seed, [(classes_in, features), (classes_out, features)])
    check_row(seen, old[0][index], old[1][index], row, new)


def assert_integer(value, expected, what):
    value = np.asarray(value)
    assert value.shape == () and value.dtype.kind in 'iu', \
        '%s: returned %r, not an integer' % (what, value.tolist())
    assert int(value) == expected, '%s: returned %d, expected %d' % (what, value, expected)


@probe(timeout=30)
def class_index_small(sub):
    return {'dog': sub.class_index(['cat', 'dog', 'hotdog'], 'dog'),
            'b': sub.class_index(('a', 'b'), 'b')}


@graded(1, probe=class_index_small)
def test_class_index_small_list(seen):
    assert_integer(seen['dog'], 1, "class_index(['cat', 'dog', 'hotdog'], 'dog')")
    assert_integer(seen['b'], 1, "class_index(('a', 'b'), 'b')")


@probe(timeout=30)
def init_row_dense(sub):
    old, new = dense_layers(3, 10, 2, 6)
    sub.init_output_row(new, old, 4, 0)
    return layer_after(new)


@graded(1, probe=init_row_dense)
def test_init_output_row_dense(seen):
    check_dense(seen, 3, 10, 2, 6, index=4, row=0)


### BEGIN HIDDEN TESTS
LOOKED_UP = ('hotdog', 'espresso', 'photocopier')


def shuffled_classes():
    classes = list(utils.imagenet_classes())
    order = np.random.RandomState(5).permutation(len(classes))
    return [classes[i] for i in order]


def two_class_output(seed):
    """A 2-class net shaped like the pretrained one: output = 1x1 conv with a bias + Flatten."""
    net = nn.HybridSequential()
    with net.name_scope():
        net.output = nn.HybridSequential()
        net.output.add(nn.Conv2D(2, 1, use_bias=True, in_channels=1280), nn.Flatten())
    net.output.initialize()
    (weight, bias), = layer_arrays(seed, [(2, 1280, 1, 1)])
    net.output[0].weight.set_data(nd.array(weight))
    net.output[0].bias.set_data(nd.array(bias))
    return net


@probe(timeout=30)
def class_index_imagenet(sub):
    shuffled = shuffled_classes()
    seen = {name: sub.class_index(shuffled, name) for name in LOOKED_UP}
    try:
        sub.class_index(['cat'], 'hotdog')
        seen['missing'] = 'no error'
    except ValueError:
        seen['missing'] = 'ValueError'
    return seen


@graded(1, probe=class_index_imagenet)
def test_class_index_by_name_not_number(seen):
    shuffled = shuffled_classes()
    for name in LOOKED_UP:
        assert_integer(seen[name], shuffled.index(name), 'the index of %r' % name)
    assert seen['missing'] == 'ValueError', 'a missing name should raise ValueError'


@probe(timeout=30)
def init_row_other(sub):
    old, new = dense_layers(4, 7, 3, 5)
    sub.init_output_row(new, old, 6, 2)
    return layer_after(new)


@graded(1, probe=init_row_other)
def test_init_output_row_other_row(seen):
    check_dense(seen, 4, 7, 3, 5, index=6, row=2)


@probe(timeout=60)
def hotdog_row(sub):
    net = two_class_output(6)
    index = sub.hotdog_output(net, pretrained())
    return dict(layer_after(net.output[0]), index=index)


@graded(3, probe=hotdog_row)
def test_hotdog_row_and_bias(seen):
    expected = utils.imagenet_classes().index('hotdog')
    assert np.asarray(seen['index']).tolist() != TEXT_INDEX, \
        'the index is the text\'s %d (photocopier)' % TEXT_INDEX
    assert_integer(seen['index'], expected, 'hotdog_output')
    layer = pretrained().output[0]
    before, = layer_arrays(6, [(2, 1280, 1, 1)])
    check_row(seen, layer.weight.data().asnumpy()[expected],
              layer.bias.data().asnumpy()[expected], 0, before)
### END HIDDEN TESTS
