"""The how-much-data chapter: per-class subsets, fixed updates, intervals, a toy-size run."""
import argparse

import numpy as np
import pytest

from utils.errors import UserError
from utils.few_shot import (ALL, FixedUpdates, load_pool, mean_interval, parse_per_class,
                            per_class_subset, summarise)
from utils.transfer_methods import run_experiment

LABELS = np.repeat([0, 1], [80, 70])


def test_per_class_subset_takes_n_of_each_class_and_nests_within_a_seed():
    small = per_class_subset(LABELS, 4, seed=3)
    large = per_class_subset(LABELS, 16, seed=3)
    assert np.bincount(LABELS[small]).tolist() == [4, 4]
    assert np.bincount(LABELS[large]).tolist() == [16, 16]
    assert set(small) <= set(large)
    assert len(set(large)) == 32
    np.testing.assert_array_equal(per_class_subset(LABELS, 16, seed=3), large)
    assert not np.array_equal(per_class_subset(LABELS, 16, seed=4), large)
    np.testing.assert_array_equal(per_class_subset(LABELS, ALL, seed=3), np.arange(150))


def test_per_class_subset_larger_than_a_class_is_a_user_error():
    with pytest.raises(UserError, match='class 1 has only 70 training images'):
        per_class_subset(LABELS, 75, seed=0)


@pytest.mark.parametrize('text, value', [('8', 8), ('all', ALL), ('ALL', ALL)])
def test_parse_per_class(text, value):
    assert parse_per_class(text) == value


@pytest.mark.parametrize('text', ['0', '-2', 'many', '2.5'])
def test_parse_per_class_rejects(text):
    with pytest.raises(UserError, match='whole number >= 1 or "all"'):
        parse_per_class(text)


def test_fixed_updates_yields_exactly_that_many_full_batches():
    indices = np.array([3, 5, 7, 11, 13, 17])
    batches = list(FixedUpdates(indices, batch_size=4, updates=7, seed=0))
    assert len(batches) == 7 == len(FixedUpdates(indices, 4, 7))
    assert all(len(b) == 4 for b in batches)
    assert set(np.concatenate(batches)) == set(indices)
    # a batch larger than the set is the whole set, every time
    whole = list(FixedUpdates(indices[:3], batch_size=16, updates=2, seed=1))
    assert [sorted(b) for b in whole] == [[3, 5, 7], [3, 5, 7]]


def test_mean_interval_is_students_t():
    mean, low, high = mean_interval([1, 2, 3, 4, 5])
    # t(0.975, 4) = 2.776445, sd = sqrt(2.5), half width = 2.776445 * sqrt(2.5) / sqrt(5)
    assert mean == 3
    assert high - mean == pytest.approx(1.963243, abs=1e-5)
    assert mean - low == pytest.approx(high - mean)
    assert mean_interval([0.7]) == (0.7, 0.7, 0.7)
    assert mean_interval([0.9, 0.9, 0.9]) == (pytest.approx(0.9),) * 3


def test_summarise_clips_the_interval_to_accuracies():
    summary = summarise({'m': {4: [1.0, 0.5], ALL: [0.8, 0.8]}})
    assert summary['m']['4']['high'] == 1.0 and summary['m']['4']['low'] == 0.0
    assert summary['m']['4']['runs'] == [1.0, 0.5]
    assert summary['m']['all']['mean'] == pytest.approx(0.8)


class Recorder:
    """A stand-in method that records the training subset it is given."""

    def __init__(self):
        self.seen = []

    def run(self, data, indices, batch_size, updates, ctx, seed):
        self.seen.append((tuple(indices), batch_size, updates))
        return len(indices) / 100


def test_every_method_trains_on_the_same_subsets_and_each_seed_on_others():
    methods = {'a': Recorder(), 'b': Recorder()}
    accuracies, _ = run_experiment(methods, None, LABELS, [2, 8, ALL], range(3), 5, None,
                                   batch_size=16, log=lambda *a: None)
    assert methods['a'].seen == methods['b'].seen
    subsets = [set(s) for s, _, _ in methods['a'].seen]
    assert len(subsets) == 9
    assert subsets[0] != subsets[3]  # seed 0 against seed 1, 2 per class
    assert [b for _, b, _ in methods['a'].seen[:3]] == [4, 16, 16]
    assert {u for _, _, u in methods['a'].seen} == {5}
    assert accuracies['a'][8] == [0.16] * 3


def test_training_pool_and_test_photos_are_disjoint():
    (train_x, train_y), (test_x, test_y), synsets, name = load_pool(
        argparse.Namespace(dataset='faces'), 25)
    assert name == 'faces' and synsets == ['face', 'not-face']
    assert np.bincount(train_y).tolist() == [80, 80] and np.bincount(test_y).tolist() == [20, 20]
    train_rows = {img.tobytes() for img in train_x}
    assert not any(img.tobytes() in train_rows for img in test_x)


def test_toy_run_writes_curve_table_and_metrics(tmp_path, run_chapter, capsys):
    _, result = run_chapter('how_much_data', '--dataset', 'faces', '--per-class', 'all', '2',
                            '--seeds', '2', '--updates', '2', '--image-size', '32')
    assert result['per_class'] == ['2', 'all'] and result['seeds'] == [0, 1]
    assert set(result['accuracy']) == {'fine-tune', 'frozen features', 'scratch'}
    for by_size in result['accuracy'].values():
        for point in by_size.values():
            assert len(point['runs']) == 2
            assert 0 <= point['low'] <= point['mean'] <= point['high'] <= 1
    out = capsys.readouterr().out
    assert 'faces: a pool of 160 training images (80 per class), 40 test images' in out
    assert 'all (80)' in out and 'seed 1, 2 per class (4 images)' in out
    assert (tmp_path / 'out' / 'how_much_data.png').stat().st_size > 1000


@pytest.mark.parametrize('argv, message', [
    (['--seeds', '0'], 'argument --seeds: 0: give a whole number of 1 or more'),
    (['--per-class', 'x'], 'whole number >= 1'),
    (['--per-class', '81', '--dataset', 'faces'], 'class 0 has only 80 training images'),
])
def test_bad_options_are_one_line_errors(run_chapter, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        run_chapter('how_much_data', *argv, '--image-size', '32')
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]


def test_hotdog_folder_is_decoded_once_and_runs(tmp_path, run_chapter, capsys):
    """The online path, from a hotdog.zip already in --data-dir (no network needed)."""
    import hashlib
    import io
    import zipfile
    import matplotlib.image
    rng = np.random.RandomState(0)
    archive = tmp_path / 'data' / 'hotdog.zip'
    archive.parent.mkdir()
    with zipfile.ZipFile(str(archive), 'w') as zf:
        for split, count in (('train', 3), ('test', 2)):
            for cls, shade in (('hotdog', 200), ('not-hotdog', 60)):
                for i in range(count):
                    buf = io.BytesIO()
                    matplotlib.image.imsave(buf, np.clip(rng.normal(shade, 30, (30, 45, 3)), 0,
                                                         255).astype('uint8'), format='png')
                    zf.writestr('hotdog/%s/%s/%d.png' % (split, cls, i), buf.getvalue())
    sha1 = hashlib.sha1(archive.read_bytes()).hexdigest()
    _, result = run_chapter('how_much_data', '--dataset', 'hotdog', '--data-dir',
                            str(tmp_path / 'data'), '--data-sha1', sha1, '--model',
                            'mobilenetv2_1.0', '--per-class', '2', 'all', '--seeds', '2',
                            '--updates', '1', '--image-size', '32')
    assert result['dataset'] == 'hotdog' and result['pool_per_class'] == 3
    assert 'hotdog: a pool of 6 training images (3 per class), 4 test images' in (
        capsys.readouterr().out)
