"""The feature-extraction chapter: a tiny offline run, the fine-tuning point, frozen BatchNorm."""
import contextlib
import io
import json

import numpy as np
from mxnet import autograd, gluon, nd

import pytest

import utils

TINY = ['--dataset', 'faces', '--image-size', '32', '--initial-epochs', '2',
        '--fine-tune-epochs', '1', '--no-progress']


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    """The chapter's tiny offline run: (namespace, metrics, printed lines, output folder)."""
    folder = tmp_path_factory.mktemp('fe')
    metrics = folder / 'metrics.json'
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        namespace = utils.run_chapter('chapters.feature_extraction', TINY + [
            '--out', str(folder / 'out'), '--metrics-json', str(metrics)])
    return namespace, json.loads(metrics.read_text()), out.getvalue(), folder / 'out'


def test_tiny_offline_run_writes_metrics_and_figures(tiny_run):
    _, result, out, folder = tiny_run
    assert result['dataset'] == 'faces'
    assert result['sizes'] == {'train': 160, 'validation': 32, 'test': 8}
    assert result['fine_tune_at'] == 'features[14].out[3]'
    assert result['trainable_weight_arrays'] == 56  # the text's len(model.trainable_variables)
    assert len(result['history']['val_accuracy']) == 2
    assert len(result['history_fine']['val_accuracy']) == 1
    assert 0 <= result['test_accuracy'] <= 1
    # the head epoch timed both ways (the speedup is a timing: benchmarks/feature_cache.py)
    seconds = result['head_epoch_seconds']
    assert seconds['cached'] > 0 and seconds['recomputed'] > 0
    assert seconds['speedup'] == pytest.approx(seconds['recomputed'] / seconds['cached'])
    assert len(tiny_run[0]['recomputed']['images_per_sec']) == 1  # one epoch, recomputing
    bn = result['bn_comparison']
    assert bn['BatchNorm in inference mode']['max_running_stat_change'] == 0
    assert bn['BatchNorm statistics updating']['max_running_stat_change'] > 0
    assert 'initial loss:' in out and 'initial accuracy:' in out and 'Test accuracy :' in out
    assert 'Seconds per head epoch' in out
    for png in ('learning_curves.png', 'test_predictions.png'):
        assert (folder / png).stat().st_size > 1000


def _one_step(fe, bn_inference):
    base = fe['unfreeze_top'](utils.get_pretrained(fe['MODEL']).features, bn_inference)
    net = gluon.nn.HybridSequential()
    net.add(base, fe['make_head']())
    net.hybridize()
    params = utils.trainable_params(net)
    stats = utils.running_stats(base)
    weights = {name: p.data().copy() for name, p in base.collect_params().items()}
    trainer = gluon.Trainer(params, 'rmsprop', {'learning_rate': 1e-3})
    x = nd.random.normal(shape=(4, 3, 32, 32))
    y = nd.array([0, 1, 0, 1])
    with autograd.record():
        loss = gluon.loss.SoftmaxCrossEntropyLoss()(net(x), y)
    loss.backward()
    trainer.step(4)
    changed = {name for name, p in base.collect_params().items()
               if not np.array_equal(p.data().asnumpy(), weights[name].asnumpy())}
    stat_change = max(float(nd.abs(utils.running_stats(base)[k] - v).max().asscalar())
                      for k, v in stats.items())
    return base, params, changed, stat_change


def test_the_texts_figures_and_parameter_counts(tiny_run):
    _, _, out, folder = tiny_run
    for name in ('first_nine.png', 'augmentation.png', 'feature_extraction_curves.png',
                 'learning_curves.png'):
        assert (folder / name).exists(), name
    lines = out.splitlines()
    # MobileNetV2's features counted as Keras' summary counts them: Keras reports 2,257,984
    # for its MobileNetV2 without top; Gluon's first block has a 32 -> 32 expansion
    # convolution and its BatchNorm more (1024 + 4 x 32 = 1152).
    assert ('Base: 24 children, 143 layers; non-trainable params: 2259136 (34176 of them '
            'BatchNorm running statistics)') in lines, lines
    assert 2259136 - 2257984 == 32 * 32 + 4 * 32
    # Dropout + Dense(2) on 1280 features: 2 x 1280 weights + 2 biases
    assert 'Head: trainable params: 2562 in 2 arrays (the text: 1281 in 2)' in lines


def test_fine_tuning_keeps_batchnorm_statistics_and_trains_only_the_top(tiny_run):
    fe = tiny_run[0]
    base, params, changed, stat_change = _one_step(fe, bn_inference=True)
    assert stat_change == 0.0
    assert len(params) == 56
    top = set()
    for part in fe['top_layers'](base):
        top |= set(part.collect_params().keys())
    trainable_top = {n for n in top if not n.endswith(('running_mean', 'running_var'))}
    assert changed == trainable_top  # every top weight moved, nothing below it did
    # block_11's expansion conv (Keras layers 98-99) stays frozen, its depthwise conv trains
    assert base[14].out[0].weight.name not in changed
    assert base[14].out[3].weight.name in changed


def test_batchnorm_statistics_move_when_left_updating(tiny_run):
    _, _, _, stat_change = _one_step(tiny_run[0], bn_inference=False)
    assert stat_change > 0


def test_test_split_is_one_fifth_of_validation_and_disjoint():
    data = gluon.data.SimpleDataset(list(range(40)))
    val, test = utils.split_validation(data, seed=0)
    assert len(test) == 8 and len(val) == 32
    assert sorted(list(val) + list(test)) == list(range(40))


def test_hotdog_path_through_a_mirror(tmp_path, hotdog_mirror, run_chapter, capsys):
    url, sha1 = hotdog_mirror(per_class=(6, 5))
    _, result = run_chapter('feature_extraction', '--dataset', 'hotdog', '--data-dir',
                            str(tmp_path / 'data'), '--data-url', url, '--data-sha1', sha1,
                            '--image-size', '32', '--initial-epochs', '1',
                            '--fine-tune-epochs', '1', '--no-bn-comparison')
    assert result['dataset'] == 'hotdog'
    assert result['sizes'] == {'train': 12, 'validation': 8, 'test': 2}
    assert list(result['bn_comparison']) == ['BatchNorm in inference mode']
    assert 'hotdog: 12 training, 8 validation and 2 test images' in capsys.readouterr().out
