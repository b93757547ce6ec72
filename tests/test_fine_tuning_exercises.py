import math

import numpy as np
import pytest
from mxnet import nd

import utils
from tests.test_class_rows import write_fake_fashion
from utils.data import fashion_mnist as fm

TINY = ['--dataset', 'faces', '--epochs', '1', '--image-size', '32', '--batch-size', '16']


def no_fashion_mnist(monkeypatch, tmp_path):
    monkeypatch.delenv(fm.ENV_VAR, raising=False)
    monkeypatch.setattr(fm, 'EXTRACTED_FOLDER', str(tmp_path / 'none'))
    monkeypatch.setattr(fm, 'DEBIAN_FOLDER', str(tmp_path / 'none-either'))


def same_parameters(net_a, net_b):
    """Whether two blocks hold equal values in every parameter, running statistics included."""
    pairs = zip(net_a.collect_params().values(), net_b.collect_params().values())
    return all(np.array_equal(a.data().asnumpy(), b.data().asnumpy()) for a, b in pairs)


@pytest.fixture(scope='module')
def pretrained():
    return utils.get_pretrained('mobilenetv2_1.0')


@pytest.fixture
def exercise_3(run_chapter, capsys, monkeypatch, tmp_path):
    """The chapter run with exercise 3 only, offline without Fashion-MNIST (the faces
    analogue, output layer only): its namespace, metrics and printed lines."""
    no_fashion_mnist(monkeypatch, tmp_path)
    namespace, metrics = run_chapter('fine_tuning_exercises', *TINY, '--quick',
                                     '--exercise', '3')
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


def test_exercise_3_offline_without_fashion_mnist_ranks_rows_on_the_faces(exercise_3):
    _, metrics, out = exercise_3
    assert 'class 713: photocopier' in out and 'class 934: hotdog' in out
    assert 'hotdog_w.shape (1, 1280)' in out
    assert 'Fashion-MNIST not found' in out and 'apt-get install dataset-fashion-mnist' in out
    assert 'Top 5 rows by training AUC' in out and 'output init' in out
    result = metrics['exercises']['3']
    assert result['names']['934'] == 'hotdog'
    assert result['data'] == 'faces' and result['named_rows'] is None
    runs = result['results']['4']
    assert 'ImageNet rows' not in runs and len(runs['best AUC rows']) == 3  # seeds 0 1 2
    # one row for both classes gives equal logits: every photo goes to class 0, half the test
    assert [r['before'] for r in runs['row 713 for all']] == [0.5, 0.5, 0.5]


def test_exercise_3_on_fashion_mnist_starts_each_shoe_from_its_imagenet_row(
        tmp_path, monkeypatch, run_chapter, capsys):
    write_fake_fashion(tmp_path)
    monkeypatch.setenv(fm.ENV_VAR, str(tmp_path))
    _, metrics = run_chapter('fine_tuning_exercises', *TINY, '--quick', '--exercise', '3')
    out = capsys.readouterr().out
    assert 'Sandal -> 774 sandal, Sneaker -> 770 running shoe, Ankle boot -> 514 cowboy boot' \
        in out
    result = metrics['exercises']['3']
    assert result['data'] == 'Fashion-MNIST' and result['named_rows'] == [774, 770, 514]
    runs = result['results']['4']
    assert [r['rows'] for r in runs['ImageNet rows']] == [[774, 770, 514]] * 3
    assert all(0 <= r[k] <= 1 for r in runs['fresh layer'] for k in ('before', 'one_epoch',
                                                                     'end'))


def test_exercise_1_trains_both_nets_with_the_drop(run_chapter, capsys, tmp_path):
    _, metrics = run_chapter('fine_tuning_exercises', *TINY, '--exercise', '1',
                             '--long-epochs', '2', '--decay-epoch', '1')
    histories = metrics['exercises']['1']['histories']
    assert set(histories) == {'finetune_net', 'scratch_net'}
    assert all(len(h['test_acc']) == 2 for h in histories.values())
    assert (tmp_path / 'out' / 'exercise1_longer.png').exists()
    assert 'final train acc' in capsys.readouterr().out
    assert set(metrics['seconds']) == {'1'}


def test_exercise_1_continues_the_shared_run_as_one_long_run_would(run_chapter):
    ns, metrics = run_chapter('fine_tuning_exercises', *TINY, '--exercise', '1',
                              '--long-epochs', '3', '--decay-epoch', '2')
    continued = metrics['exercises']['1']['histories']['finetune_net']
    shared_net, shared_history = ns['finetune_run']()
    assert len(ns['shared_runs']) == 1 and len(shared_history['test_acc']) == 1
    assert continued['test_acc'][:1] == shared_history['test_acc']
    assert len(continued['test_acc']) == 3 and ns['longer_finetune_net'] is not shared_net
    # the mechanism: one epoch, then a copy trained on, against one call from the same start
    start = ns['finetune_from']('mobilenetv2_1.0')
    one_call = ns['train_with_decay'](ns['copy_of'](start), 3)
    first = ns['copy_of'](start)
    first_epoch = ns['train'](first, epochs=1)
    in_two = ns['train_with_decay'](ns['copy_of'](first), 3, done=first_epoch)
    np.testing.assert_allclose(in_two['loss'], one_call['loss'], rtol=1e-5)
    assert in_two['test_acc'] == one_call['test_acc']


def test_exercise_2_copies_fewer_stages_and_shares_the_full_run(run_chapter, tmp_path):
    namespace, metrics = run_chapter('fine_tuning_exercises', *TINY, '--exercise', '2')
    histories = metrics['exercises']['2']['histories']
    assert set(histories) == {'k=all', 'k=3', 'k=2', 'k=1', 'k=0'}  # JSON sorts the keys
    assert (tmp_path / 'out' / 'exercise2_reuse_fewer.png').exists()
    # k=all is the chapter's finetune_net: asking for it again gives the same trained run
    assert len(namespace['shared_runs']) == 1
    net, history = namespace['finetune_run']()
    assert history['test_acc'] == histories['k=all']['test_acc']
    assert namespace['finetune_run']()[0] is net


def test_exercise_4_leaves_the_frozen_weights_as_imagenet_left_them(
        tmp_path, run_chapter, capsys):
    namespace, metrics = run_chapter('fine_tuning_exercises', *TINY, '--exercise', '4')
    result = metrics['exercises']['4']['histories']
    assert set(result) == {'fine-tune all', 'features frozen'}
    assert (tmp_path / 'out' / 'exercise4_frozen.png').exists()
    assert 'caching the features once' in capsys.readouterr().out
    pretrained = namespace['pretrained_net'].features
    assert same_parameters(namespace['frozen_net'].features, pretrained)
    # the check can fail: fine-tuning everything did change the features
    (finetuned, _), = namespace['shared_runs'].values()
    assert not same_parameters(finetuned.features, pretrained)


def test_exercise_5_few_shot_mistakes_of_both_nets_over_seeds(tmp_path, run_chapter, capsys):
    namespace, metrics = run_chapter('fine_tuning_exercises', *TINY, '--exercise', '5')
    out = capsys.readouterr().out
    assert '8 training photos per class, 40 test photos, seeds 0 1 2' in out
    rows = metrics['exercises']['5']['rows']
    assert [r[0] for r in rows] == ['fine-tune', 'fine-tune, output lr x10', 'scratch']
    for name, final, per_seed, _, wrong in rows:
        accuracies = [float(a) for a in per_seed.split()]
        assert final == pytest.approx(np.mean(accuracies), abs=0.005)  # printed to 2 places
        # the photos shown as wrong are exactly those the final accuracy counts
        assert [int(w) for w in wrong.split()] == [round((1 - a) * 40) for a in accuracies]
    assert len(metrics['exercises']['5']['histories']['scratch, seed 2']['test_acc']) == 4
    assert (tmp_path / 'out' / 'exercise5_mistakes.png').exists()


def test_digits_are_two_halves_with_the_same_labels():
    from utils.data import digits
    images, labels = digits.load_digits()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == np.float32
    assert images.min() == 0 and images.max() == 1 and sorted(set(labels)) == list(range(10))
    (x04, y04), (x59, y59) = digits.halves(images, labels)
    assert (len(y04), len(y59)) == (901, 896) and set(y04) == set(y59) == set(range(5))
    np.testing.assert_array_equal(x59[y59 == 0], images[labels == 5])


def test_digits_without_scikit_learn_say_how_to_get_it(monkeypatch):
    import sys
    from utils.data import digits
    monkeypatch.setitem(sys.modules, 'sklearn.datasets', None)  # import fails
    with pytest.raises(utils.UserError, match='scikit-learn is not installed'):
        digits.load_digits()


def test_digits_exercise_freezes_the_features_and_prints_its_table(run_chapter, capsys):
    ns, metrics = run_chapter('fine_tuning_exercises', *TINY, '--exercise', 'digits',
                              '--digit-shots', '2', '--digit-seeds', '1', '--digit-steps', '4')
    out = capsys.readouterr().out
    assert 'examples per class  frozen features  all trained  scratch' in out
    result = metrics['exercises']['digits']
    assert len(result['rows']) == 1 and result['rows'][0][0] == 2
    assert all(0 <= a <= 1 for a in result['rows'][0][1:]) and result['test_images'] == 448
    # the text's exercise 1a: 2 conv2d (1->32, 32->32, 3x3) frozen, dense 128->128 and 128->5
    assert result['parameters'] == {'frozen': 320 + 9248, 'trainable': 16512 + 645}
    assert 'frozen features: 17157 trainable parameters (the new head), 9568 frozen' in out
    nets = ns['digit_nets']
    assert nets['scratch'](nd.zeros((3, 1, 8, 8))).shape == (3, 5)
    # exercise 2: training left the frozen convolutions exactly as pretrained; it did change
    # them when nothing was frozen (so the comparison can fail)
    assert same_parameters(nets['frozen features'][0], nets['pretrained'][0])
    assert not same_parameters(nets['all trained'][0], nets['pretrained'][0])
    assert result['conv_changed'] == {'frozen features': [False], 'all trained': [True]}
    assert result['trainer_order'] == {'frozen after the Trainer was built': False,
                                       'unfrozen, the same Trainer (head only)': False,
                                       'unfrozen, a new Trainer': True}
    assert set(metrics['seconds']) == {'digits'}
