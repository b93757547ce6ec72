"""Tests of assignment 2: finetune_net reuses the features, has a new output, learns few-shot.

A probe builds the student's network and returns its parameters, in order, with their
`lr_mult`. The checks compare them with the pretrained weights in the grader; the few-shot
check loads them into a MobileNetV2 the grader builds itself (the architecture the statement
asks for) and trains that, in the grader, on photos the student's code never sees.
"""
import mxnet as mx
import numpy as np
from mxnet import gluon, image, nd
from mxnet.gluon.model_zoo import vision

import utils
from assignments.testing import assert_close, graded, probe

SUBMISSION_FILE = 'finetune.py'
MODEL = 'mobilenetv2_1.0'
_cache = {}


def pretrained():
    """The offline pretrained MobileNetV2, loaded once per process."""
    if 'net' not in _cache:
        _cache['net'] = utils.get_pretrained(MODEL)
    return _cache['net']


def pretrained_values(part):
    """(name, numpy copy) of each parameter of the pretrained net's `part`, taken once: the
    checks compare with copies, which no later MXNet work in this process can touch."""
    key = part + '_values'
    if key not in _cache:
        _cache[key] = [(p.name, p.data().asnumpy().copy())
                       for p in getattr(pretrained(), part).collect_params().values()]
    return _cache[key]


def prepare():
    """The grader's set-up: the weights (converted once) and the photos."""
    pretrained_values('features')
    pretrained_values('output')
    from skimage import data as skdata
    _cache['photos'] = skdata.lfw_subset()  # 100 faces, then 100 non-faces, 25x25 in [0, 1]


def network_observations(sub, classes, mult):
    base = pretrained()
    mx.nd.waitall()  # the weights fully in place before the student's code runs
    net = sub.make_finetune_net(base, classes, mult)
    assert net is not None, 'make_finetune_net returned nothing'
    seen = {'out_shape': net(nd.random.normal(shape=(2, 3, 64, 64))).shape}
    for part in ('features', 'output'):
        params = list(getattr(net, part).collect_params().values())
        seen[part + '_lr_mult'] = [float(p.lr_mult) for p in params]
        for i, p in enumerate(params):
            seen['%s%d' % (part, i)] = p.data().asnumpy()  # as they are now
    return seen


def part(seen, name):
    return [seen['%s%d' % (name, i)] for i in range(len(seen[name + '_lr_mult']))]


def check_shape(seen, classes):
    shape = tuple(np.asarray(seen['out_shape']).tolist())
    assert shape == (2, classes), 'output shape %s, expected (2, %d)' % (shape, classes)


def check_features(seen):
    mine = part(seen, 'features')
    theirs = pretrained_values('features')
    assert len(mine) == len(theirs), 'features have %d parameters, the pretrained ones %d' % (
        len(mine), len(theirs))
    for p, (name, value), mult in zip(mine, theirs, seen['features_lr_mult']):
        assert_close(p, value, 'features parameter %s' % name, rtol=0, atol=0)
        assert mult == 1, 'features parameter %s has lr_mult %s' % (name, mult)


def check_output(seen, classes, mult):
    params = part(seen, 'output')
    assert params, 'the output has no parameters'
    old = [value for _, value in pretrained_values('output')]
    for value, lr_mult in zip(params, seen['output_lr_mult']):
        assert lr_mult == mult, 'an output parameter has lr_mult %s, expected %s' % (
            lr_mult, mult)
        value = np.asarray(value)
        assert value.dtype.kind == 'f', 'an output parameter is not floats (%s)' % value.dtype
        # at most a weight per class and feature (1280 of them) before it is cast
        assert value.size <= classes * 1280, 'an output parameter has shape %s' % (
            value.shape,)
        value = value.astype(np.float64)
        if value.ndim > 1:  # weights: random, so neither constant nor ImageNet's rows
            assert value.shape[0] == classes, 'output weight has %d rows' % value.shape[0]
            assert value.std() > 1e-4, 'the output weight is not initialised at random'
            for rows in old:
                if rows.ndim == value.ndim and rows.shape[1:] == value.shape[1:]:
                    copied = any(np.allclose(value[i], rows[j]) for i in range(classes)
                                 for j in range(min(len(rows), 1000)))
                    assert not copied, 'the output weight copies ImageNet rows'


@probe(timeout=60)
def two_classes_ten_times(sub):
    return network_observations(sub, 2, 10.0)


@graded(2, probe=two_classes_ten_times)
def test_features_reused(seen):
    check_shape(seen, 2)
    check_features(seen)


@graded(2, probe=two_classes_ten_times)
def test_output_new_and_faster(seen):
    check_shape(seen, 2)
    check_output(seen, 2, 10.0)


### BEGIN HIDDEN TESTS
@probe(timeout=60)
def three_classes_five_times(sub):
    return network_observations(sub, 3, 5.0)


@graded(1, probe=three_classes_five_times)
def test_other_classes_and_multiplier(seen):
    check_shape(seen, 3)
    check_features(seen)
    check_output(seen, 3, 5.0)


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


def rebuilt(seen, classes):
    """The statement's architecture, built here, holding the student's parameters."""
    net = vision.mobilenet_v2_1_0(classes=classes)
    net.initialize()
    net(nd.zeros((1, 3, 64, 64)))
    for name in ('features', 'output'):
        mine = part(seen, name)
        params = list(getattr(net, name).collect_params().values())
        assert len(mine) == len(params), '%s have %d parameters, MobileNetV2 has %d' % (
            name, len(mine), len(params))
        for param, value, mult in zip(params, mine, seen[name + '_lr_mult']):
            assert tuple(np.shape(value)) == param.shape, '%s: shape %s, expected %s' % (
                param.name, np.shape(value), param.shape)
            param.set_data(nd.array(value))
            param.lr_mult = float(mult)
    return net


@graded(5, probe=two_classes_ten_times)
def test_few_shot_faces(seen):
    # 4 photos per class, 64 pixels, batch 8, 8 epochs: 8 steps, about a second each on 2 cores
    train, test = faces(64, 4, 20)
    net = rebuilt(seen, 2)
    for bn in utils.batchnorms(net):  # the chapter's quick setting: few steps, so forget fast
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
