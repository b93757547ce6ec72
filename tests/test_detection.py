import argparse
import contextlib
import io
import json
import math
import os
import shutil

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, nd

import utils
from utils.detection import bbox
from utils.detection.loss import ScaledMSELoss, TwoOutputLoss


# --- the text's loss ----------------------------------------------------------------------

def test_scaled_mse_on_hand_computed_examples():
    loss = ScaledMSELoss()
    label = nd.array([[1, 10, 20, 30, 40], [0, 0, 0, 0, 0]])
    pred = nd.array([[224, 10, 20, 30, 40],     # exact: 0
                     [0, 1, 2, 3, 4]])          # (1 + 4 + 9 + 16) / 5 = 6
    np.testing.assert_allclose(loss(pred, label).asnumpy(), [0.0, 6.0])
    # shape wrong by the whole canvas: 224^2 / 5, no factor 1/2 (Gluon's L2Loss halves)
    wrong = loss(nd.array([[0, 10, 20, 30, 40]]), nd.array([[1, 10, 20, 30, 40]]))
    assert wrong.asscalar() == pytest.approx(224 ** 2 / 5)
    unscaled = ScaledMSELoss(1)(nd.array([[0.5, 1, 2, 3, 4]]), nd.array([[1, 0, 0, 0, 0]]))
    assert unscaled.asscalar() == pytest.approx((0.25 + 1 + 4 + 9 + 16) / 5)


def test_scaled_mse_hybridized_matches():
    loss = ScaledMSELoss()
    pred, label = nd.array([[100, 1, 2, 3, 4]]), nd.array([[1, 0, 2, 3, 5]])
    eager = loss(pred, label).asscalar()
    loss.hybridize()
    assert loss(pred, label).asscalar() == pytest.approx(eager) == pytest.approx((124 ** 2 + 2) / 5)


def test_two_output_loss():
    loss = TwoOutputLoss(box_weight=0.5)
    pred = nd.array([[0, 0, 10, 20, 30, 40], [0, 0, 10, 20, 30, 42]])
    label = nd.array([[1, 10, 20, 30, 40], [0, 10, 20, 30, 40]])
    np.testing.assert_allclose(loss(pred, label).asnumpy(),
                               [math.log(2), math.log(2) + 0.5 * 4 / 4], rtol=1e-5)


def test_decode_thresholds():
    out = np.array([[113, 1, 2, 3, 4], [111, 1, 2, 3, 4]], dtype='float32')
    assert bbox.decode(out)[0].tolist() == [True, False]
    assert bbox.decode(out / 224, 'unscaled')[0].tolist() == [True, False]
    two = np.array([[0, 1, 5, 6, 7, 8], [1, 0, 5, 6, 7, 8]], dtype='float32')
    is_rect, boxes = bbox.decode(two, 'two_output')
    assert is_rect.tolist() == [True, False] and boxes[0].tolist() == [5, 6, 7, 8]


# --- IoU ----------------------------------------------------------------------------------

@pytest.mark.parametrize('a, b, expected', [
    ([0, 10, 0, 10], [0, 10, 0, 10], 1.0),          # identical
    ([0, 10, 0, 10], [20, 30, 20, 30], 0.0),        # disjoint
    ([0, 10, 0, 10], [10, 20, 0, 10], 0.0),         # touching along an edge
    ([0, 20, 0, 20], [5, 15, 5, 15], 0.25),         # nested: 100 / 400
    ([0, 2, 0, 2], [1, 3, 0, 2], 2 / 6),            # half overlap: 2 / (4 + 4 - 2)
    ([0, 10, 0, 10], [5, 5, 0, 10], 0.0),           # no area
])
def test_iou_hand_computed(a, b, expected):
    assert bbox.iou(a, b) == pytest.approx(expected)
    assert bbox.iou(b, a) == pytest.approx(expected)


def test_iou_vectorised_and_metrics():
    boxes = np.array([[0, 10, 0, 10], [0, 20, 0, 20]])
    np.testing.assert_allclose(bbox.iou(boxes, [[0, 10, 0, 10], [5, 15, 5, 15]]),
                               [1.0, 0.25])
    out = np.array([[200, 0, 10, 0, 10], [10, 0, 20, 0, 20]])
    labels = np.array([[1, 0, 10, 0, 10], [1, 5, 15, 5, 15]])
    assert bbox.detection_metrics(out, labels) == {'shape_acc': 0.5, 'mean_iou': 0.625}


# --- frozen layers ------------------------------------------------------------------------

def _values(params):
    return {name: p.data().asnumpy().copy() for name, p in params.items()}


def _changed(before, params):
    return {name for name, p in params.items()
            if not np.array_equal(before[name], p.data().asnumpy())}


def _step(det, size=64, batch=4):
    images, labels = utils.detection.scenes.make_scenes(batch, seed=1)
    x, y = utils.preprocess_batch(images, size), nd.array(labels)
    params = utils.trainable_params(det.net)
    trainer = gluon.Trainer(params, 'rmsprop', {'learning_rate': 1e-3})
    det.net.hybridize()
    with autograd.record():
        loss = ScaledMSELoss()(det.net(x), y)
    loss.backward()
    trainer.step(batch)


TINY = ['--random-base', '--no-progress', '--num-examples', '40', '--initial-epochs', '2',
        '--fine-tuning-epochs', '1', '--input-size', '64', '--head', 'conv3x3',
        '--batch-size', '16', '--test-scenes', '8']


PRINTED = {}  # what the tiny run printed


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    """A tiny run of the chapter on a randomly initialised base (offline and fast; the
    chapter itself loads ImageNet weights): (namespace, metrics, output folder)."""
    out = tmp_path_factory.mktemp('detection')
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        namespace = utils.run_chapter('chapters.simple_object_detection', TINY + [
            '--out', str(out), '--metrics-json', str(out / 'metrics.json')])
    PRINTED['tiny'] = printed.getvalue()
    with open(out / 'metrics.json') as f:
        return namespace, json.load(f), out


@pytest.fixture(scope='module')
def chapter(tiny_run):
    return tiny_run[0]


@pytest.fixture(scope='module')
def v2_base(chapter):
    return chapter['random_base']('mobilenetv2_1.0')


@pytest.mark.parametrize('head', ['text', 'conv', 'conv3x3'])
def test_phase1_step_changes_only_the_head(chapter, v2_base, head):
    mx.random.seed(0)
    det = chapter['Detector'](v2_base.features, 'mobilenetv2_1.0', 3, head)
    det.net(nd.zeros((1, 3, 64, 64)))   # complete the head's deferred initialisation
    base_params = v2_base.features.collect_params()
    before = _values(base_params)
    head_before = _values(det.head.collect_params())
    _step(det)
    # neither weights nor BatchNorm running statistics of the base moved, in training mode
    assert _changed(before, base_params) == set()
    assert _changed(head_before, det.head.collect_params()) == set(head_before)
    assert any(n.endswith('running_mean') for n in before)


def test_phase2_step_changes_exactly_the_unfrozen_blocks(chapter, v2_base):
    mx.random.seed(0)
    features = v2_base.features
    det = chapter['Detector'](features, 'mobilenetv2_1.0', 3, 'conv')
    det.phase2()
    base_params = features.collect_params()
    before = _values(base_params)
    _step(det)
    tail = set()
    for block in (features[13], features[14], features[15]):
        tail |= {n for n in block.collect_params() if not n.endswith(('running_mean',
                                                                     'running_var'))}
    assert _changed(before, base_params) == tail
    assert len(tail) == 3 * 9   # 3 convs + 3 BatchNorms (gamma, beta) per block


def test_static_shapes_give_the_same_outputs_and_gradients_for_any_batch_size(chapter):
    """The chapter hybridizes with static_alloc and static_shape; a last batch of another size
    must be planned again, not read through the first batch's memory plan."""
    features = chapter['random_base']('mobilenetv2_1.0').features
    mx.random.seed(0)
    det = chapter['Detector'](features, 'mobilenetv2_1.0', 3, 'conv3x3')
    dropout = det.head[4]
    assert isinstance(dropout, gluon.nn.Dropout)
    dropout._rate = 0.0   # no dropout: the two runs must see the same network
    det.phase2()
    rng = np.random.default_rng(0)
    batches = [nd.array(rng.standard_normal((n, 64, 4, 4))) for n in (6, 2, 6, 1)]
    params = utils.trainable_params(det.trainee)

    def run():
        results = []
        for x in batches:
            with autograd.record():
                out = det.trainee(x)
                loss = (out ** 2).sum()
            loss.backward()
            results.append([out.asnumpy()] + [p.grad().asnumpy().copy()
                                              for p in params.values()])
        return results
    static = run()
    det.trainee.hybridize(active=False)
    plain = run()
    for got, want in zip(static, plain):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_mobilenet025_phase2_unfreezes_the_text_layers(chapter):
    """conv_pw_9..11 and their BatchNorms: features 54-56, 60-62, 66-68; not conv_dw."""
    net = chapter['random_base']('mobilenet0.25')
    features = net.features
    det = chapter['Detector'](features, 'mobilenet0.25', 3, 'text')
    det.phase2()
    trained = set(utils.trainable_params(det.tail))
    expected = set()
    for i in (54, 55, 60, 61, 66, 67):
        expected |= {n for n in features[i].collect_params()
                     if not n.endswith(('running_mean', 'running_var'))}
    assert trained == expected and len(expected) == 9   # 3 conv weights + 3 (gamma, beta)
    assert set(utils.trainable_params(det.prefix)) == set()


# --- the chapter --------------------------------------------------------------------------

def test_auto_base_falls_back_with_one_line(chapter, monkeypatch, capsys):
    calls = []

    def fake(name):
        calls.append(name)
        if name == 'mobilenet0.25':
            raise utils.UserError('could not get the weights of mobilenet0.25: offline')
        return 'v2'
    monkeypatch.setattr(utils, 'get_pretrained', fake, raising=False)
    assert chapter['load_base']('auto', pretrained=True) == ('v2', 'mobilenetv2_1.0')
    assert calls == ['mobilenet0.25', 'mobilenetv2_1.0']
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and 'mobilenetv2_1.0' in out[0]
    with pytest.raises(utils.UserError):
        chapter['load_base']('mobilenet0.25', pretrained=True)


def test_tiny_end_to_end_run_and_predict(tiny_run):
    _, metrics, out = tiny_run
    for key in ('shape_acc', 'mean_iou', 'val_loss', 'wall_seconds', 'phase1_sec_per_epoch'):
        assert key in metrics
    assert 0 <= metrics['shape_acc'] <= 1 and 0 <= metrics['mean_iou'] <= 1
    assert len(metrics['history']['phase1']['loss']) == 2
    assert os.path.exists(os.path.join(out, 'detections.png'))
    assert os.path.exists(os.path.join(out, 'detector.params'))
    utils.run_chapter('chapters.simple_object_detection',
                      ['--random-base', '--out', str(out), '--predict', '3'])
    assert os.path.exists(os.path.join(out, 'predictions.png'))


def test_the_texts_settings_are_printed_beside_the_runs(tiny_run):
    lines = PRINTED['tiny'].splitlines()
    assert 'This run: 40 scenes, 2 + 1 epochs, 64 px, head conv3x3, RMSProp 0.005 then 0.0002' \
        in lines, lines[:5]
    assert ("The text: 20000 scenes, 100 + 200 epochs, 224 px, head text, RMSProp 0.005 then "
            "0.002 (train.js's defaults: 2000 scenes, 100 + 100 epochs)") in lines, lines[:5]
    assert os.path.exists(os.path.join(tiny_run[2], 'scenes.png'))  # figure 5.14


def test_predict_without_a_model_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        utils.run_chapter('chapters.simple_object_detection',
                          ['--predict', '2', '--out', str(tmp_path)])
    assert exit_info.value.code == 2
    assert 'no saved model' in capsys.readouterr().err


# --- the exercises start from the ImageNet weights ----------------------------------------

def test_exercise_variants_train_on_features_of_the_pristine_base(tmp_path, monkeypatch):
    """Every variant's phase 2 trains on cached features computed with the base's original
    weights, never with blocks an earlier variant fine-tuned."""
    phase2_inputs = []
    real_train_arrays = utils.train_arrays

    def recording(net, loss_fn, trainer, train, *rest, **kw):
        if kw.get('label') == 'Fine-tune epoch':
            phase2_inputs.append(train[0].copy())
        return real_train_arrays(net, loss_fn, trainer, train, *rest, **kw)
    monkeypatch.setattr(utils, 'train_arrays', recording)
    ns = utils.run_chapter('chapters.simple_object_detection', TINY + [
        '--exercises', '--out', str(tmp_path)])
    features, snapshot, x_cache = ns['features'], ns['snapshot'], ns['x_cache']
    for name, param in features.collect_params().items():
        param.set_data(snapshot[name])
    cut = ns['BASES']['mobilenetv2_1.0']['cut']
    # reference, no label scaling, unfreeze 1, unfreeze 5, two outputs, the text's head
    unfreezes = [3, 3, 1, 5, 3, 3]
    assert len(phase2_inputs) == len(unfreezes)
    for unfreeze, x in zip(unfreezes, phase2_inputs):
        extra = utils.freeze(features[ns['cache_start']:cut - unfreeze])
        expected = utils.predict_arrays(extra, x_cache) if len(extra) else x_cache
        np.testing.assert_allclose(x[:len(expected)], expected[:len(x)], rtol=1e-5,
                                   atol=1e-5, err_msg='unfreeze %d' % unfreeze)


# --- several devices ----------------------------------------------------------------------

def test_training_on_three_devices_with_a_last_batch_of_two(chapter):
    """--devices cpu:3 when the last batch (34 = 2 x 16 + 2; phase 2: 4 x 8 + 2) holds fewer
    samples than devices: both phases run, the replicas stay equal, and the weights are those
    of the same training on one device."""
    mx.random.seed(3)   # the base's weights must not depend on which tests ran before
    features = chapter['random_base']('mobilenetv2_1.0').features
    original = {name: p.data().copy() for name, p in features.collect_params().items()}
    prefix = utils.freeze(features[:13])
    images, labels = utils.detection.scenes.make_scenes(40, seed=3)
    x = utils.predict_batches(prefix, [utils.preprocess_batch(images, 64)])
    args = argparse.Namespace(**vars(chapter['args']))
    args.batch_size, args.initial_epochs, args.fine_tuning_epochs = 16, 1, 1
    trained = []
    for ctx in ([mx.cpu(0)], [mx.cpu(i) for i in range(3)]):
        for name, param in features.collect_params().items():
            param.set_data(original[name])
        mx.random.seed(5)
        det, record = chapter['train_detector'](
            args, features, 'mobilenetv2_1.0', ((x, labels), 34), ctx, head='conv',
            unfreeze=3, loss_fn=ScaledMSELoss())
        history = record['history']
        assert len(history['phase1']['loss']) == 1 and len(history['phase2']['loss']) == 1
        assert np.isfinite(record['final_loss'])
        params = det.trainee.collect_params()
        for name, param in params.items():
            copies = [d.asnumpy() for d in param.list_data()]
            assert len(copies) == len(ctx)
            for other in copies[1:]:
                np.testing.assert_array_equal(copies[0], other, err_msg=name)
        trained.append({name: p.data(ctx[0]).asnumpy() for name, p in params.items()})
        features.collect_params().reset_ctx(mx.cpu())
    for name in trained[0]:
        np.testing.assert_allclose(trained[1][name], trained[0][name], rtol=1e-4, atol=1e-5,
                                   err_msg=name)


@pytest.mark.parametrize('how', ['cut', 'garbage with its checksum', 'meta not json'])
def test_damaged_saved_detector_is_one_line(tiny_run, tmp_path, capsys, how):
    from utils.files import checked_path
    _, _, out = tiny_run
    for name in ('detector.params', 'detector.params.sha256', 'detector.params.json'):
        shutil.copy(os.path.join(out, name), str(tmp_path))
    params = str(tmp_path / 'detector.params')
    if how == 'cut':
        with open(params, 'r+b') as f:
            f.truncate(os.path.getsize(params) // 2)
    elif how == 'garbage with its checksum':  # the checksum passes: the load is caught
        with checked_path(params) as tmp, open(tmp, 'wb') as f:
            f.write(b'abc')
    else:
        (tmp_path / 'detector.params.json').write_text('{"base": ')
    with pytest.raises(SystemExit) as exit_info:
        utils.run_chapter('chapters.simple_object_detection',
                          ['--random-base', '--out', str(tmp_path), '--predict', '2'])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and params in err[0] and 'train again' in err[0]


# --- memory -------------------------------------------------------------------------------

def test_scene_features_in_small_batches_match_one_pass(chapter):
    """scene_features feeds the base FORWARD_BATCH scenes at a time and writes them into one
    array: the same scenes, labels and features (float32) as one pass over all of them."""
    mx.random.seed(4)
    prefix = utils.freeze(chapter['random_base']('mobilenetv2_1.0').features[:6])
    prefix.hybridize(**chapter['STATIC'])
    n, start = 2 * chapter['FORWARD_BATCH'] + 5, 3
    feats, labels = chapter['scene_features'](prefix, n, 7, 64, chunk=20, start=start)
    images, expected_labels = utils.detection.scenes.make_scenes(n, seed=7, start=start)
    prefix.hybridize()   # another graph, whole batch: the reference
    expected = utils.predict_batches(prefix, [utils.preprocess_batch(images, 64)])
    assert feats.dtype == np.float32 and feats.shape == expected.shape
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_allclose(feats, expected, rtol=1e-4, atol=1e-5)
