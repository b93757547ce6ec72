"""The fine-tuning chapter: the hotdog path against a local mirror, the offline path, bad data."""
import argparse

import numpy as np
import pytest
from mxnet import nd

import utils
from utils.errors import UserError

TINY = ['--epochs', '1', '--image-size', '32', '--batch-size', '8', '--model', 'mobilenetv2_1.0']


def test_hotdog_path_downloads_verifies_extracts_and_trains(tmp_path, hotdog_mirror,
                                                            run_chapter, capsys):
    url, sha1 = hotdog_mirror()
    data_dir = tmp_path / 'data'
    _, result = run_chapter('fine_tuning', *TINY, '--dataset', 'hotdog', '--data-dir',
                            str(data_dir), '--data-url', url, '--data-sha1', sha1)
    assert (data_dir / 'hotdog' / 'train' / 'not-hotdog' / '5.png').exists()
    assert result['dataset'] == 'hotdog'
    assert set(result['histories']) == {'finetune_net', 'scratch_net'}
    for history in result['histories'].values():
        assert len(history['test_acc']) == 1 and 0 <= history['test_acc'][0] <= 1
    out = capsys.readouterr().out
    assert 'hotdog: 12 training and 4 test images' in out
    assert '1.png (true class: hotdog): With prob=' in out
    assert '1.png (true class: not-hotdog): With prob=' in out
    for png in ('train_images.png', 'finetune_vs_scratch.png'):
        assert (tmp_path / 'out' / png).stat().st_size > 1000


def test_offline_faces_path(tmp_path, run_chapter, capsys):
    _, result = run_chapter('fine_tuning', *TINY, '--dataset', 'faces')
    assert result['dataset'] == 'faces' and result['model'] == 'mobilenetv2_1.0'
    assert result['devices'] == ['cpu(0)']
    out = capsys.readouterr().out
    assert 'faces: 160 training and 40 test images' in out
    # two held-out photos of each class with their true class, then astronaut.png and coffee.png
    assert out.count('With prob=') == 6
    assert out.count('(true class: face)') == 2 and out.count('(true class: not-face)') == 2
    assert 'coffee.png (not from the data set): With prob=' in out
    assert (tmp_path / 'out' / 'held_out_0_face.png').exists()
    assert 'finetune_net' in out and 'mean last 3' in out  # the table
    assert result['wall_seconds'] > 0


def test_quick_on_the_faces_is_data_scarce_unless_told_otherwise(run_chapter, capsys):
    namespace, _ = run_chapter('fine_tuning', '--quick', '--dataset', 'faces', '--epochs', '1',
                               '--image-size', '32')
    args = namespace['args']
    assert 'faces: 8 training and 40 test images' in capsys.readouterr().out
    assert (args.epochs, args.batch_size, args.per_class) == (1, 8, 4)  # --epochs given wins
    assert (args.learning_rate, args.finetune_batchnorm) == (0.001, 'inference')
    assert all(bn._kwargs['use_global_stats'] for bn in utils.batchnorms(
        namespace['finetune_net'].features))
    assert sorted(namespace['train_imgs'][i][1] for i in range(8)) == [0.0] * 4 + [1.0] * 4


def test_quick_faces_settings_given_on_the_command_line_win(run_chapter, capsys):
    namespace, _ = run_chapter('fine_tuning', '--quick', '--dataset', 'faces', '--epochs', '1',
                               '--image-size', '32', '--per-class', 'all',
                               '--finetune-batchnorm', 'update', '--learning-rate', '0.01')
    args = namespace['args']
    assert 'faces: 160 training and 40 test images' in capsys.readouterr().out
    assert (args.batch_size, args.learning_rate, args.finetune_batchnorm) == (8, 0.01, 'update')


def test_the_exercises_data_keeps_every_face_photo():
    """hotdog_or_faces as the exercises and feature extraction call it: all 160 photos."""
    args = argparse.Namespace(dataset='faces', seed=0, quick=True)
    train_imgs, test_imgs, dataset, examples = utils.hotdog_or_faces(args, 32)
    assert (dataset, len(train_imgs), len(test_imgs)) == ('faces', 160, 40)
    assert [truth for _, truth in examples] == ['face', 'face', 'not-face', 'not-face', None, None]


def test_per_class_subset_of_the_hotdog_folder(tmp_path, hotdog_mirror, run_chapter, capsys):
    url, sha1 = hotdog_mirror()
    run_chapter('fine_tuning', *TINY, '--dataset', 'hotdog', '--data-dir', str(tmp_path / 'd'),
                '--data-url', url, '--data-sha1', sha1, '--per-class', '2')
    assert 'hotdog: 4 training and 4 test images' in capsys.readouterr().out


def test_quick_on_hotdog_keeps_the_texts_epochs(tmp_path, hotdog_mirror, run_chapter):
    url, sha1 = hotdog_mirror()
    namespace, _ = run_chapter('fine_tuning', '--quick', '--image-size', '32', '--model',
                               'mobilenetv2_1.0', '--dataset', 'hotdog', '--epochs', '1',
                               '--data-dir', str(tmp_path / 'd'), '--data-url', url,
                               '--data-sha1', sha1)
    args = namespace['args']
    # the faces' data-scarce settings are not applied to hotdog
    assert args.per_class is None or args.per_class != namespace['QUICK_FACES']['per_class']
    assert (args.batch_size, args.learning_rate, args.finetune_batchnorm) == (32, 0.01, 'update')


def test_hotdog_asked_explicitly_without_network_is_an_error(tmp_path, dead_url, run_chapter,
                                                             capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_chapter('fine_tuning', *TINY, '--dataset', 'hotdog', '--data-dir', str(tmp_path),
                    '--data-url', dead_url)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: could not download hotdog.zip')
    assert str(tmp_path / 'hotdog.zip') in err[0]


def test_undecodable_image_named_in_one_line(tmp_path, hotdog_mirror, run_chapter, capsys):
    url, sha1 = hotdog_mirror(extra={'hotdog/train/hotdog/broken.png': b'not a png'})
    with pytest.raises(SystemExit) as exit_info:
        run_chapter('fine_tuning', *TINY, '--dataset', 'hotdog', '--data-dir',
                    str(tmp_path / 'd'), '--data-url', url, '--data-sha1', sha1)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'broken.png cannot be decoded' in err[0]


def test_empty_class_and_single_class_folders(tmp_path):
    (tmp_path / 'one' / 'hotdog').mkdir(parents=True)
    (tmp_path / 'one' / 'hotdog' / 'a.png').write_bytes(b'x')
    with pytest.raises(UserError, match=r'one.*holds 1 class folder'):
        utils.image_folder(str(tmp_path / 'one'))
    (tmp_path / 'one' / 'not-hotdog').mkdir()
    with pytest.raises(UserError, match=r'not-hotdog holds no \.jpg or \.png'):
        utils.image_folder(str(tmp_path / 'one'))


@pytest.mark.parametrize('size', [224, 96])
def test_images_smaller_than_the_crop_are_upsampled(size):
    train_augs, test_augs = utils.augmentations(size)
    small = nd.array(np.random.RandomState(0).randint(0, 255, size=(20, 30, 3)))
    for augs in (train_augs, test_augs):
        data, label = utils.transform(small, 1, augs)
        assert data.shape == (3, size, size)
        assert label == 1.0


def test_hotdog_url_environment_variable_is_tried_after_the_mirrors(monkeypatch):
    monkeypatch.setenv('HOTDOG_URL', 'http://mirror.example/hotdog.zip')
    urls = utils.data.datasets.hotdog_urls(['http://first.example/hotdog.zip'])
    assert urls[:2] == ['http://first.example/hotdog.zip', 'http://mirror.example/hotdog.zip']
    assert urls[2:] == list(utils.data.datasets.HOTDOG_URLS)


def test_bn_momentum_sets_how_fast_running_averages_forget():
    from mxnet import autograd, gluon
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.BatchNorm(in_channels=2))
    net.initialize()
    utils.set_bn_momentum(net, 0.5)
    net.hybridize(static_alloc=True, static_shape=True)
    x = nd.array(np.random.RandomState(0).normal(3.0, 2.0, size=(64, 2, 4, 4)))
    with autograd.record():
        out = net(x)
    out.backward()  # MXNet updates the running averages in BatchNorm's backward pass
    batch_mean = x.asnumpy().mean(axis=(0, 2, 3))
    np.testing.assert_allclose(net[0].running_mean.data().asnumpy(), 0.5 * batch_mean,
                               rtol=1e-5)
