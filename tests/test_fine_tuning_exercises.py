import json
import math

import numpy as np
import pytest
from mxnet import nd

import utils
from chapters import fine_tuning_exercises as ex

TINY = ['--dataset', 'faces', '--epochs', '1', '--image-size', '32', '--batch-size', '16',
        '--no-progress']


@pytest.fixture(scope='module')
def pretrained():
    return utils.get_pretrained('mobilenetv2_1.0')


def test_hotdog_row_initialisation(pretrained):
    net = ex.finetune_from('mobilenetv2_1.0')
    ex.init_from_row(net, pretrained, 934)
    x = nd.array(np.random.RandomState(0).uniform(size=(2, 3, 64, 64)))
    imagenet_logits = pretrained(x).asnumpy()
    logits = net(x).asnumpy()
    np.testing.assert_allclose(logits[:, 0], imagenet_logits[:, 934], rtol=1e-4, atol=1e-4)
    others = np.delete(imagenet_logits, 934, axis=1)
    # a mean over 999 float32 logits computed two ways: allow float32 rounding
    np.testing.assert_allclose(logits[:, 1], others.mean(axis=1) + math.log(999),
                               rtol=1e-4, atol=1e-3)


def test_reuse_first_copies_exactly_the_first_children(pretrained):
    net = ex.reuse_first(pretrained, 'mobilenetv2_1.0', 6)
    for i, (mine, theirs) in enumerate(zip(net.features, pretrained.features)):
        pairs = list(zip(mine.collect_params().values(), theirs.collect_params().values()))
        same = [np.array_equal(a.data().asnumpy(), b.data().asnumpy()) for a, b in pairs
                if not a.name.endswith(('running_var', 'gamma'))]  # 1 at init can match
        if pairs and same:
            assert all(same) if i < 6 else not all(same), i


def test_exercise_3_offline_prints_names_and_shapes(tmp_path, capsys):
    metrics = tmp_path / 'm.json'
    ex.main(TINY + ['--exercise', '3', '--out', str(tmp_path), '--metrics-json', str(metrics)])
    out = capsys.readouterr().out
    assert 'class 713: photocopier' in out and 'class 934: hotdog' in out
    assert 'hotdog_w.shape (1, 1280)' in out
    assert 'needs the hotdog data' in out
    assert json.loads(metrics.read_text())['exercises']['3']['names']['934'] == 'hotdog'


def test_exercise_4_runs_and_reports_both_variants(tmp_path, capsys):
    metrics = tmp_path / 'm.json'
    ex.main(TINY + ['--exercise', '4', '--out', str(tmp_path), '--metrics-json', str(metrics)])
    result = json.loads(metrics.read_text())['exercises']['4']['histories']
    assert set(result) == {'fine-tune all', 'features frozen'}
    assert (tmp_path / 'exercise4_frozen.png').exists()
    assert 'median sec/epoch' in capsys.readouterr().out
