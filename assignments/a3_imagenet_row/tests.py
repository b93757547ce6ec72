"""Tests of assignment 3: the ImageNet row, found by name."""
import mxnet as mx
import numpy as np
from mxnet import init, nd
from mxnet.gluon import nn

import utils
from assignments.testing import assert_close, graded

SUBMISSION_FILE = 'imagenet_row.py'
TEXT_INDEX = 713  # what the text says; ImageNet's 713 is 'photocopier'
_cache = {}


def prepare():
    """The offline pretrained MobileNetV2 and the class names, loaded before the guards."""
    _cache['classes'] = utils.imagenet_classes()
    _cache['pretrained'] = utils.get_pretrained('mobilenetv2_1.0')


def dense_pair(classes_in, classes_out, features, seed):
    mx.random.seed(seed)
    old, new = nn.Dense(classes_in), nn.Dense(classes_out)
    for layer in (old, new):
        layer.initialize(init.Normal(1))
        layer(nd.zeros((1, features)))
    new.bias.set_data(nd.random.normal(shape=(classes_out,)))
    return old, new


def finetune_net_2_classes():
    """A 2-class net shaped like the pretrained one: output = 1x1 conv with a bias + Flatten."""
    net = nn.HybridSequential()
    with net.name_scope():
        net.output = nn.HybridSequential()
        net.output.add(nn.Conv2D(2, 1, use_bias=True, in_channels=1280), nn.Flatten())
    net.output.initialize(init.Xavier())
    return net


def check_row(new, old, index, row, before):
    """Row `row` equals old's row `index`, the other rows are unchanged."""
    w_new, w_old = new.weight.data().asnumpy(), old.weight.data().asnumpy()
    b_new, b_old = new.bias.data().asnumpy(), old.bias.data().asnumpy()
    assert_close(w_new[row], w_old[index], 'weight row %d' % row)
    assert_close(b_new[row], b_old[index], 'bias %d' % row)
    others = [r for r in range(w_new.shape[0]) if r != row]
    assert_close(w_new[others], before[0][others], 'the other weight rows (unchanged)')
    assert_close(b_new[others], before[1][others], 'the other biases (unchanged)')


@graded(1, timeout=30)
def test_class_index_small_list(sub):
    assert sub.class_index(['cat', 'dog', 'hotdog'], 'dog') == 1
    assert sub.class_index(('a', 'b'), 'b') == 1


@graded(1, timeout=30)
def test_init_output_row_dense(sub):
    old, new = dense_pair(10, 2, 6, seed=3)
    before = (new.weight.data().asnumpy(), new.bias.data().asnumpy())
    sub.init_output_row(new, old, 4, 0)
    check_row(new, old, 4, 0, before)


### BEGIN HIDDEN TESTS
@graded(1, timeout=30)
def test_class_index_by_name_not_number(sub):
    classes = list(_cache['classes'])
    rng = np.random.RandomState(5)
    order = rng.permutation(len(classes))
    shuffled = [classes[i] for i in order]
    for name in ('hotdog', 'espresso', 'photocopier'):
        assert sub.class_index(shuffled, name) == shuffled.index(name)
    try:
        sub.class_index(['cat'], 'hotdog')
    except ValueError:
        pass
    else:
        raise AssertionError('a missing name should raise ValueError')


@graded(1, timeout=30)
def test_init_output_row_other_row(sub):
    old, new = dense_pair(7, 3, 5, seed=4)
    before = (new.weight.data().asnumpy(), new.bias.data().asnumpy())
    sub.init_output_row(new, old, 6, 2)
    check_row(new, old, 6, 2, before)


@graded(3, timeout=60)
def test_hotdog_row_and_bias(sub):
    pretrained = _cache['pretrained']
    net = finetune_net_2_classes()
    layer = net.output[0]
    before = (layer.weight.data().asnumpy(), layer.bias.data().asnumpy())
    index = sub.hotdog_output(net, pretrained)
    expected = _cache['classes'].index('hotdog')
    assert index != TEXT_INDEX, 'the index is the text\'s %d (photocopier)' % TEXT_INDEX
    assert index == expected, 'returned index %s is not the hotdog class' % index
    check_row(layer, pretrained.output[0], expected, 0, before)
### END HIDDEN TESTS
