"""The how-much-data chapter: per-class subsets, fixed updates, intervals, a toy-size run."""
import argparse

import numpy as np
import pytest

from utils.errors import UserError
from utils.training.few_shot import (ALL, FixedUpdates, load_pool, mean_interval,
                                     parse_per_class, per_class_subset, summarise)
from utils.training.transfer_methods import RISE, FineTune, Outcome, run_experiment

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
        return Outcome(len(indices) / 100, np.linspace(0.7, 0.1, updates))


def test_every_method_trains_on_the_same_subsets_and_each_seed_on_others():
    methods = {'a': Recorder(), 'b': Recorder()}
    accuracies, _, rises = run_experiment(methods, None, LABELS, [2, 8, ALL], range(3), 5, None,
                                          batch_size=16, log=lambda *a: None)
    assert methods['a'].seen == methods['b'].seen
    subsets = [set(s) for s, _, _ in methods['a'].seen]
    assert len(subsets) == 9
    assert subsets[0] != subsets[3]  # seed 0 against seed 1, 2 per class
    assert [b for _, b, _ in methods['a'].seen[:3]] == [4, 16, 16]
    assert {u for _, _, u in methods['a'].seen} == {5}
    assert accuracies['a'][8] == [0.16] * 3
    assert rises == []


def test_loss_rose_only_past_rise_times_the_first_loss():
    assert Outcome(1.0, np.array([0.7, 0.5, 0.7 * RISE])).loss_rose() is None
    assert Outcome(1.0, np.array([0.3, 1.2, 0.3, 1.1])).loss_rose() == (1, pytest.approx(1.2))
    assert Outcome(1.0, np.array([0.7])).loss_rose() is None


class Scripted:
    """A stand-in method whose runs have the given training losses, one curve per call."""

    def __init__(self, curves):
        self.curves = iter(curves)

    def run(self, data, indices, batch_size, updates, ctx, seed):
        losses = np.array(next(self.curves))
        return Outcome(0.5 if losses[-1] > 0.6 else 1.0, losses)


def test_every_run_whose_loss_rose_gets_a_warning_line_and_no_other():
    curves = {'steady': [[0.7, 0.4, 0.1], [0.9, 1.2, 0.2], [0.6, 0.3, 0.1], [0.7, 0.5, 0.3]],
              'wild': [[0.7, 0.3, 0.1], [0.7, 40.0, 0.69], [0.8, 2.5, 0.1], [0.5, 1.4, 0.5]]}
    lines = []
    _, _, rises = run_experiment({name: Scripted(c) for name, c in curves.items()}, None,
                                 LABELS, [2, ALL], range(2), 3, None, batch_size=16,
                                 log=lines.append)
    runs = [(name, i) for i in range(4) for name in curves]
    rose = [(name, i) for name, i in runs if max(curves[name][i][1:]) > RISE * curves[name][i][0]]
    assert rose == [('wild', 1), ('wild', 2)]
    assert [(r['method'], r['seed'], r['size']) for r in rises] == [
        ('wild', 0, 'all'), ('wild', 1, '2')]
    assert rises[0]['highest_loss'] == 40.0 and rises[0]['at_update'] == 2
    warnings = [line for line in lines if line.startswith('  warning:')]
    assert warnings == [
        '  warning: the training loss of wild rose from 0.700 at update 1 to 40.000 at update 2, '
        'more than 3 times: its steps were too large for its weights (test accuracy 0.500)',
        '  warning: the training loss of wild rose from 0.800 at update 1 to 2.500 at update 2, '
        'more than 3 times: its steps were too large for its weights (test accuracy 1.000)']
    # each warning follows the line of its run
    assert lines[lines.index(warnings[0]) - 1].startswith('seed 0, all per class')
    assert lines[lines.index(warnings[1]) - 1].startswith('seed 1, 2 per class')


@pytest.fixture(scope='module')
def small_finetune():
    """The chapter's fine-tuning on the faces at 32 px: (method, data, pool labels, ctx)."""
    from mxnet import cpu
    from utils.training.few_shot import pool_datasets
    train, test, synsets, _ = load_pool(argparse.Namespace(dataset='faces'), 32 * 256 // 224)
    ctx = [cpu()]
    method = FineTune('mobilenetv2_1.0', dict(learning_rate=0.001, output_lr_mult=10,
                                              batchnorm='inference', wd=0.001), ctx)
    return method, pool_datasets(train, test, synsets, 32), train[1], ctx


def test_a_too_large_step_kills_the_features_and_the_run_is_flagged(small_finetune):
    """The collapse the chapter explains, on 4 faces per class: at 10 times the chapter's
    learning rate the loss climbs, the features stop depending on the photo (ImageNet's fixed
    BatchNorm statistics no longer fit their inputs), the test accuracy falls to chance, and a
    warning line says so; at the chapter's rate the loss falls and no line appears."""
    from mxnet import autograd, nd
    method, data, labels, ctx = small_finetune
    photos = nd.stack(*[data['test'][i][0] for i in range(len(data['test']))])
    results = {}
    for lr in (0.01, 0.001):
        method.settings['learning_rate'] = lr
        lines = []
        accuracies, _, rises = run_experiment({'fine-tune': method}, data, labels, [4], [0], 8,
                                              ctx, 16, log=lines.append)
        with autograd.predict_mode():
            features = method.net.features(photos).asnumpy().reshape(len(photos), -1)
        results[lr] = (accuracies['fine-tune'][4][0], rises, lines, features.std(axis=0).mean())
    accuracy, rises, lines, spread = results[0.01]
    assert accuracy == 0.5 and spread < 1e-3
    assert len(rises) == 1 and rises[0]['highest_loss'] > 10 * rises[0]['first_loss']
    assert lines[1].startswith('  warning: the training loss of fine-tune rose from')
    accuracy, rises, lines, spread = results[0.001]
    assert accuracy >= 0.9 and spread > 0.05 and rises == [] and len(lines) == 1


def test_a_run_alone_starts_where_it_starts_in_a_longer_run(small_finetune):
    """The new output layer's weights are drawn after the run's seed even in a method's
    first run (its shape is known before: no deferred initialisation inside training)."""
    _, data, labels, ctx = small_finetune
    fresh = FineTune('mobilenetv2_1.0', dict(learning_rate=0.001, output_lr_mult=10,
                                             batchnorm='inference', wd=0.001), ctx)
    indices = per_class_subset(labels, 2, 1)
    alone = fresh.run(data, indices, 4, 3, ctx, 1002)
    fresh.run(data, per_class_subset(labels, 2, 0), 4, 3, ctx, 2)
    again = fresh.run(data, indices, 4, 3, ctx, 1002)
    np.testing.assert_allclose(alone.losses, again.losses, rtol=1e-5)


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
    # The zip is already there under the mirror's name and checksum: nothing is fetched
    # (a closed loopback port stands for the mirror).
    _, result = run_chapter('how_much_data', '--dataset', 'hotdog', '--data-dir',
                            str(tmp_path / 'data'), '--data-url',
                            'http://127.0.0.1:9/hotdog.zip', '--data-sha1', sha1, '--model',
                            'mobilenetv2_1.0', '--per-class', '2', 'all', '--seeds', '2',
                            '--updates', '1', '--image-size', '32')
    assert result['dataset'] == 'hotdog' and result['pool_per_class'] == 3
    assert 'hotdog: a pool of 6 training images (3 per class), 4 test images' in (
        capsys.readouterr().out)
