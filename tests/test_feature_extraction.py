"""The feature-extraction chapter: a tiny offline run, the fine-tuning point, frozen BatchNorm."""
import json

import numpy as np
from mxnet import autograd, gluon, nd

import utils
from chapters import feature_extraction as fe
from tests.test_fine_tuning import hotdog_zip, mirror  # noqa: F401 (a fixture)
from utils import detection

TINY = ['--dataset', 'faces', '--image-size', '32', '--initial-epochs', '2',
        '--fine-tune-epochs', '1', '--no-progress']


def test_tiny_offline_run_writes_metrics_and_figures(tmp_path, capsys):
    metrics = tmp_path / 'metrics.json'
    fe.main(TINY + ['--out', str(tmp_path / 'out'), '--metrics-json', str(metrics)])
    result = json.loads(metrics.read_text())
    assert result['dataset'] == 'faces'
    assert result['sizes'] == {'train': 160, 'validation': 32, 'test': 8}
    assert result['fine_tune_at'] == 'features[14].out[3]'
    assert result['trainable_weight_arrays'] == 56  # the text's len(model.trainable_variables)
    assert len(result['history']['val_accuracy']) == 2
    assert len(result['history_fine']['val_accuracy']) == 1
    assert 0 <= result['test_accuracy'] <= 1
    assert result['head_epoch_seconds']['speedup'] > 1
    bn = result['bn_comparison']
    assert bn['BatchNorm in inference mode']['max_running_stat_change'] == 0
    assert bn['BatchNorm statistics updating']['max_running_stat_change'] > 0
    out = capsys.readouterr().out
    assert 'initial loss:' in out and 'initial accuracy:' in out and 'Test accuracy :' in out
    assert 'Seconds per head epoch' in out
    for png in ('learning_curves.png', 'test_predictions.png'):
        assert (tmp_path / 'out' / png).stat().st_size > 1000


def _one_step(bn_inference):
    base = fe.unfreeze_top(utils.get_pretrained(fe.MODEL).features, bn_inference)
    net = gluon.nn.HybridSequential()
    net.add(base, fe.make_head())
    net.hybridize()
    params = detection.trainable_params(net)
    stats = fe.running_stats(base)
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
    stat_change = max(float(nd.abs(fe.running_stats(base)[k] - v).max().asscalar())
                      for k, v in stats.items())
    return base, params, changed, stat_change


def test_fine_tuning_keeps_batchnorm_statistics_and_trains_only_the_top():
    base, params, changed, stat_change = _one_step(bn_inference=True)
    assert stat_change == 0.0
    assert len(params) == 56
    top = set()
    for part in fe.top_layers(base):
        top |= set(part.collect_params().keys())
    trainable_top = {n for n in top if not n.endswith(('running_mean', 'running_var'))}
    assert changed == trainable_top  # every top weight moved, nothing below it did
    # block_11's expansion conv (Keras layers 98-99) stays frozen, its depthwise conv trains
    assert base[14].out[0].weight.name not in changed
    assert base[14].out[3].weight.name in changed


def test_batchnorm_statistics_move_when_left_updating():
    _, _, _, stat_change = _one_step(bn_inference=False)
    assert stat_change > 0


def test_test_split_is_one_fifth_of_validation_and_disjoint():
    data = gluon.data.SimpleDataset(list(range(40)))
    val, test = fe.split_validation(data, seed=0)
    assert len(test) == 8 and len(val) == 32
    assert sorted(list(val) + list(test)) == list(range(40))


def test_hotdog_path_through_a_mirror(tmp_path, mirror, capsys):  # noqa: F811
    root, url = mirror
    sha1 = hotdog_zip(str(root / 'hotdog.zip'), per_class=(6, 5))
    metrics = tmp_path / 'metrics.json'
    fe.main(['--dataset', 'hotdog', '--data-dir', str(tmp_path / 'data'), '--data-url',
             url + '/hotdog.zip', '--data-sha1', sha1, '--image-size', '32',
             '--initial-epochs', '1', '--fine-tune-epochs', '1', '--no-bn-comparison',
             '--no-progress', '--out', str(tmp_path / 'out'), '--metrics-json', str(metrics)])
    result = json.loads(metrics.read_text())
    assert result['dataset'] == 'hotdog'
    assert result['sizes'] == {'train': 12, 'validation': 8, 'test': 2}
    assert list(result['bn_comparison']) == ['BatchNorm in inference mode']
    assert 'hotdog: 12 training, 8 validation and 2 test images' in capsys.readouterr().out
