"""Tests of assignment 2: finetune_net reuses the features, has a new output, learns few-shot."""
import mxnet as mx
import numpy as np
from mxnet import gluon, image, nd
from mxnet.gluon import nn

import utils
from assignments.testing import assert_close, graded

SUBMISSION_FILE = 'finetune.py'
MODEL = 'mobilenetv2_1.0'
_cache = {}


def prepare():
    """Weights and photos, loaded before the guards (the weights file is converted once)."""
    _cache['pretrained'] = utils.get_pretrained(MODEL)
    from skimage import data as skdata
    _cache['photos'] = skdata.lfw_subset()  # 100 faces, then 100 non-faces, 25x25 in [0, 1]


def features_params(net):
    return list(net.features.collect_params().values())


def build(sub, classes, mult):
    net = sub.make_finetune_net(_cache['pretrained'], classes, mult)
    assert net is not None, 'make_finetune_net returned nothing'
    out = net(nd.random.normal(shape=(2, 3, 64, 64)))
    assert out.shape == (2, classes), 'output shape %s, expected (2, %d)' % (out.shape, classes)
    return net


def check_features(net):
    mine, theirs = features_params(net), features_params(_cache['pretrained'])
    assert len(mine) == len(theirs), 'features have %d parameters, the pretrained ones %d' % (
        len(mine), len(theirs))
    for p, q in zip(mine, theirs):
        assert_close(p.data(), q.data(), 'features parameter %s' % p.name, rtol=0, atol=0)
        assert p.lr_mult == 1, 'features parameter %s has lr_mult %s' % (p.name, p.lr_mult)


def check_output(net, classes, mult):
    params = list(net.output.collect_params().values())
    assert params, 'the output has no parameters'
    pretrained = [p.data().asnumpy() for p in _cache['pretrained'].output.collect_params()
                  .values()]
    for p in params:
        value = p.data().asnumpy()
        assert p.lr_mult == mult, 'output parameter %s has lr_mult %s, expected %s' % (
            p.name, p.lr_mult, mult)
        if value.ndim > 1:  # weights: random, so neither constant nor ImageNet's rows
            assert value.shape[0] == classes, 'output weight has %d rows' % value.shape[0]
            assert value.std() > 1e-4, 'the output weight is not initialised at random'
            for old in pretrained:
                if old.ndim == value.ndim and old.shape[1:] == value.shape[1:]:
                    copied = any(np.allclose(value[i], old[j]) for i in range(classes)
                                 for j in range(min(len(old), 1000)))
                    assert not copied, 'the output weight copies ImageNet rows'


@graded(2, timeout=60)
def test_features_reused(sub):
    check_features(build(sub, 2, 10.0))


@graded(2, timeout=60)
def test_output_new_and_faster(sub):
    check_output(build(sub, 2, 10.0), 2, 10.0)


### BEGIN HIDDEN TESTS
@graded(1, timeout=60)
def test_other_classes_and_multiplier(sub):
    net = build(sub, 3, 5.0)
    check_features(net)
    check_output(net, 3, 5.0)


def faces(size, per_class, test_per_class, seed=0):
    """Few-shot split of the face / not-face photos, resized, normalised like ImageNet."""
    photos = _cache['photos']
    labels = np.repeat([0, 1], 100)
    rng = np.random.RandomState(seed)
    train, test = [], []
    for cls in (0, 1):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        train += list(idx[:per_class])
        test += list(idx[per_class:per_class + test_per_class])
    grey = nd.array(photos[..., None] * 255)
    x = np.stack([image.imresize(g, size, size, interp=1).asnumpy() for g in grey])[..., 0]
    mean = np.array(utils.IMAGENET_MEAN)[None, :, None, None]
    std = np.array(utils.IMAGENET_STD)[None, :, None, None]
    x = ((x[:, None] / 255 - mean) / std).astype('float32')
    return (gluon.data.ArrayDataset(nd.array(x[train]), nd.array(labels[train])),
            gluon.data.ArrayDataset(nd.array(x[test]), nd.array(labels[test])))


def batchnorms(block):
    found = [block] if isinstance(block, nn.BatchNorm) else []
    for child in block._children.values():
        found += batchnorms(child)
    return found


@graded(5, timeout=180)
def test_few_shot_faces(sub):
    # 4 photos per class, 64 pixels, batch 8, 8 epochs: 8 steps, about a second each on 2 cores
    train, test = faces(64, 4, 20)
    net = sub.make_finetune_net(_cache['pretrained'], 2, 10.0)
    for bn in batchnorms(net):  # the chapter's quick setting: few steps, so forget fast
        bn._kwargs['momentum'] = 0.5
    net.hybridize(static_alloc=True, static_shape=True)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.01, 'wd': 0.001})
    history = utils.train(gluon.data.DataLoader(train, 8, shuffle=True), None, net,
                          gluon.loss.SoftmaxCrossEntropyLoss(), trainer, mx.cpu(), 8,
                          progress=False, seed=0, print_fn=lambda *a: None)
    assert np.isfinite(history['loss'][-1]), 'the training loss is not finite'
    accuracy = utils.evaluate_accuracy(gluon.data.DataLoader(test, 40), net, mx.cpu())
    assert accuracy >= 0.8, 'test accuracy %.2f after 8 steps, expected at least 0.80' % accuracy
### END HIDDEN TESTS
