import math

import numpy as np
import pytest
from mxnet import nd

import utils

TINY = ['--dataset', 'faces', '--epochs', '1', '--image-size', '32', '--batch-size', '16']


@pytest.fixture(scope='module')
def pretrained():
    return utils.get_pretrained('mobilenetv2_1.0')


@pytest.fixture
def exercise_3(run_chapter, capsys):
    """The chapter run with exercise 3 only (offline: no training): its namespace, metrics
    and printed lines."""
    namespace, metrics = run_chapter('fine_tuning_exercises', *TINY, '--exercise', '3')
    return namespace, metrics, capsys.readouterr().out


def test_hotdog_row_initialisation(pretrained, exercise_3):
    ex = exercise_3[0]
    net = ex['finetune_from']('mobilenetv2_1.0')
    ex['init_from_row'](net, pretrained, 934)
    x = nd.array(np.random.RandomState(0).uniform(size=(2, 3, 64, 64)))
    imagenet_logits = pretrained(x).asnumpy()
    logits = net(x).asnumpy()
    np.testing.assert_allclose(logits[:, 0], imagenet_logits[:, 934], rtol=1e-4, atol=1e-4)
    others = np.delete(imagenet_logits, 934, axis=1)
    # a mean over 999 float32 logits computed two ways: allow float32 rounding
    np.testing.assert_allclose(logits[:, 1], others.mean(axis=1) + math.log(999),
                               rtol=1e-4, atol=1e-3)


def test_reuse_first_copies_exactly_the_first_children(pretrained, exercise_3):
    net = exercise_3[0]['reuse_first'](pretrained, 'mobilenetv2_1.0', 6)
    for i, (mine, theirs) in enumerate(zip(net.features, pretrained.features)):
        pairs = list(zip(mine.collect_params().values(), theirs.collect_params().values()))
        same = [np.array_equal(a.data().asnumpy(), b.data().asnumpy()) for a, b in pairs
                if not a.name.endswith(('running_var', 'gamma'))]  # 1 at init can match
        if pairs and same:
            assert all(same) if i < 6 else not all(same), i


def test_exercise_3_offline_prints_names_and_shapes(exercise_3):
    _, metrics, out = exercise_3
    assert 'class 713: photocopier' in out and 'class 934: hotdog' in out
    assert 'hotdog_w.shape (1, 1280)' in out
    assert 'needs the hotdog data' in out
    assert metrics['exercises']['3']['names']['934'] == 'hotdog'


def test_exercise_4_runs_and_reports_both_variants(tmp_path, run_chapter, capsys):
    _, metrics = run_chapter('fine_tuning_exercises', *TINY, '--exercise', '4')
    result = metrics['exercises']['4']['histories']
    assert set(result) == {'fine-tune all', 'features frozen'}
    assert (tmp_path / 'out' / 'exercise4_frozen.png').exists()
    assert 'median sec/epoch' in capsys.readouterr().out
