import gzip
import itertools
import struct

import numpy as np
import pytest
from mxnet import autograd, gluon, nd

from benchmarks import class_rows_study as study
from utils.pretrained import class_rows as cr
from utils.data import fashion_mnist as fm
from utils.errors import UserError

MODEL = 'mobilenetv2_1.0'


@pytest.fixture(scope='module')
def pretrained():
    return cr.get_pretrained(MODEL)


def test_dense_rows_copy_weight_and_bias():
    source, target = gluon.nn.Dense(5, in_units=4), gluon.nn.Dense(2, in_units=4)
    source.initialize()
    source.bias.set_data(nd.arange(5))
    target.initialize()
    cr.set_class_rows(target, source, [3, 1])
    np.testing.assert_array_equal(target.weight.data().asnumpy(),
                                  source.weight.data().asnumpy()[[3, 1]])
    np.testing.assert_array_equal(target.bias.data().asnumpy(), [3, 1])
    with pytest.raises(UserError, match='3 rows given for an output layer of 2 classes'):
        cr.set_class_rows(target, source, [0, 1, 2])


def test_mobilenet_rows_give_the_imagenet_logits(pretrained):
    net, _ = cr.new_classifier(MODEL, 3)
    x = nd.array(np.random.RandomState(0).uniform(-1, 1, size=(2, 3, 32, 32)))
    net(x)
    cr.set_class_rows(net, pretrained, [774, 770, 514])
    with autograd.predict_mode():
        np.testing.assert_allclose(net(x).asnumpy(), pretrained(x).asnumpy()[:, [774, 770, 514]],
                                   rtol=1e-5, atol=1e-5)


def brute_force_auc(scores, positive):
    pairs = [(p > n) + 0.5 * (p == n) for p, n in itertools.product(scores[positive],
                                                                    scores[~positive])]
    return np.mean(pairs)


def test_row_aucs_match_the_pairwise_definition():
    rng = np.random.RandomState(1)
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    logits = np.column_stack([
        labels == 0,                       # separates class 0 perfectly
        -(labels == 0).astype(float),      # perfectly the wrong way
        np.zeros(9),                       # all tied
        rng.randint(0, 3, size=9),         # ties and noise
        rng.normal(size=9)])
    aucs = cr.row_aucs(logits, labels)
    assert aucs.shape == (3, 5)
    assert aucs[0, 0] == 1 and aucs[0, 1] == 0 and aucs[0, 2] == 0.5
    for k in range(3):
        for r in range(5):
            assert aucs[k, r] == pytest.approx(brute_force_auc(logits[:, r], labels == k))
    with pytest.raises(UserError, match='class 3'):
        cr.row_aucs(logits, labels, classes=4)


def test_best_rows_are_distinct_and_the_stronger_class_keeps_a_shared_row():
    aucs = np.array([[0.9, 0.8, 0.1],
                     [0.95, 0.7, 0.2]])
    assert cr.best_rows(aucs) == [1, 0]
    names = ['a', 'b', 'c']
    assert cr.top_rows(aucs, names, count=2)[0] == [(0, 'a', 0.9, None), (1, 'b', 0.8, None)]


def test_margins_break_the_ties_of_perfect_rows():
    labels = np.array([0, 0, 1, 1])
    logits = np.array([[1.0, 10.0, 0.0],   # rows 0 and 1 both separate class 0 perfectly,
                       [1.2, 12.0, 0.0],   # row 1 by a far larger margin
                       [0.9, 0.0, 0.0],
                       [0.8, 1.0, 0.0]])
    aucs, margins = cr.row_aucs(logits, labels), cr.row_margins(logits, labels)
    assert aucs[0, 0] == aucs[0, 1] == 1 and margins[0, 1] > margins[0, 0] > 0
    assert cr.best_rows(aucs) == [0, 2]           # ties alone: the lowest index
    assert cr.best_rows(aucs, margins) == [1, 2]  # then the margin decides
    assert cr.top_rows(aucs, 'abc', 1, margins)[0][0][:3] == (1, 'b', 1.0)


def test_few_shot_subsets_are_balanced_reproducible_and_differ_by_seed():
    labels = np.repeat([0, 1, 2], 50)
    a, b = cr.few_shot_indices(labels, 4, 0), cr.few_shot_indices(labels, 4, 1)
    assert np.bincount(labels[a]).tolist() == [4, 4, 4]
    np.testing.assert_array_equal(a, cr.few_shot_indices(labels, 4, 0))
    assert set(a) != set(b)
    with pytest.raises(UserError, match='fewer than the 51'):
        cr.few_shot_indices(labels, 51, 0)


def test_initial_rows_of_each_variant():
    rng = np.random.default_rng(0)
    aucs = np.zeros((3, 1000))
    aucs[0, 10] = aucs[1, 20] = aucs[2, 30] = 1
    named = [774, 770, 514]
    assert cr.initial_rows('ImageNet rows', named, aucs, rng) == named
    assert cr.initial_rows('row 713 for all', named, aucs, rng) == [713] * 3
    assert cr.initial_rows('fresh layer', named, aucs, rng) is None
    assert cr.initial_rows('best AUC rows', named, aucs, rng) == [10, 20, 30]
    random_rows = cr.initial_rows('random rows', named, aucs, rng)
    assert len(set(random_rows)) == 3 and not set(random_rows) & set(named)
    with pytest.raises(UserError, match='unknown initialisation'):
        cr.initial_rows('rows', named, aucs, rng)


def test_measure_variant_starts_from_the_imagenet_decision(pretrained):
    """Before training, the accuracy is that of argmax over the chosen ImageNet logits."""
    rng = np.random.RandomState(0)
    images = rng.uniform(-2, 2, size=(12, 3, 32, 32)).astype('float32')
    labels = np.repeat([0, 1, 2], 4)
    features = cr.features_of(pretrained, images)
    rows = [1, 2, 3]
    with autograd.predict_mode():
        logits = pretrained(nd.array(images)).asnumpy()
    expected = np.mean(logits[:, rows].argmax(axis=1) == labels)
    result = cr.measure_variant(MODEL, rows, (features, labels), (features, labels), epochs=2,
                                batch_size=4)
    assert result['before'] == pytest.approx(expected)
    assert set(result) >= {'before', 'one_epoch', 'end', 'final_loss', 'seconds'}
    again = cr.measure_variant(MODEL, None, (features, labels), (features, labels), epochs=2,
                               batch_size=4, seed=3)
    repeat = cr.measure_variant(MODEL, None, (features, labels), (features, labels), epochs=2,
                                batch_size=4, seed=3)
    for key in ('before', 'one_epoch', 'end', 'final_loss'):  # the seed fixes the fresh layer
        assert repeat[key] == pytest.approx(again[key], abs=1e-6), key


def test_whole_network_fine_tuning_runs_with_frozen_statistics():
    rng = np.random.RandomState(0)
    images = rng.uniform(-2, 2, size=(6, 3, 32, 32)).astype('float32')
    labels = np.repeat([0, 1, 2], 2)
    result = cr.measure_variant(MODEL, [1, 2, 3], (images, labels), (images, labels),
                                train_what='all', epochs=1, batch_size=3, learning_rate=1e-4)
    assert result['one_epoch'] == result['end'] and 0 <= result['end'] <= 1
    with pytest.raises(UserError, match="train_what must be 'output' or 'all'"):
        cr.measure_variant(MODEL, None, (images, labels), (images, labels), train_what='some')


def write_fake_fashion(folder, per_class=6, seed=0):
    """A tiny Fashion-MNIST: random 28x28 images, labels cycling through all 10 classes."""
    rng = np.random.RandomState(seed)
    for split, (image_name, label_name) in fm.FILES.items():
        labels = np.tile(np.arange(10, dtype=np.uint8), per_class)
        images = rng.randint(0, 256, size=(len(labels), 28, 28)).astype(np.uint8)
        for name, array in ((image_name, images), (label_name, labels)):
            header = struct.pack('>BBBB', 0, 0, 8, array.ndim)
            header += struct.pack('>%dI' % array.ndim, *array.shape)
            (folder / (name + '.gz')).write_bytes(gzip.compress(header + array.tobytes()))


TINY = ['--image-size', '32', '--shots', '2', '--seeds', '0', '--epochs', '1',
        '--batch-size', '4']


def test_study_on_a_tiny_fashion_mnist(tmp_path, capsys):
    write_fake_fashion(tmp_path)
    metrics = study.main(TINY + ['--data', 'fashion-mnist', '--fashion-dir', str(tmp_path),
                                 '--test-per-class', '3',
                                 '--metrics-json', str(tmp_path / 'm.json')])
    out = capsys.readouterr().out
    assert 'Sandal -> 774 sandal, Sneaker -> 770 running shoe, Ankle boot -> 514 cowboy boot' \
        in out
    assert metrics['data'] == 'fashion-mnist' and metrics['named_rows'] == [774, 770, 514]
    runs = metrics['results']['2']
    assert list(runs) == list(cr.VARIANTS)
    assert runs['ImageNet rows'][0]['rows'] == [774, 770, 514]
    assert runs['row 713 for all'][0]['before'] == pytest.approx(1 / 3)  # equal rows: class 0
    assert 'ImageNet rows' in out and 'no training' in out
    assert (tmp_path / 'm.json').exists()


def test_study_falls_back_to_faces_and_says_how_to_get_fashion_mnist(
        tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(fm.ENV_VAR, raising=False)
    monkeypatch.setattr(fm, 'EXTRACTED_FOLDER', str(tmp_path / 'none'))
    monkeypatch.setattr(fm, 'DEBIAN_FOLDER', str(tmp_path / 'none-either'))
    metrics = study.main(TINY)
    out = capsys.readouterr().out
    assert metrics['data'] == 'faces' and metrics['named_rows'] is None
    assert 'Running the analogue on the faces instead' in out
    assert 'Top 5 rows by training AUC' in out
    assert 'apt-get install dataset-fashion-mnist' in out
    assert 'ImageNet rows' not in metrics['results']['2']
    best = metrics['results']['2']['best AUC rows'][0]['rows']
    assert best == [metrics['top_rows']['2'][0][k][0][0] for k in range(2)]
