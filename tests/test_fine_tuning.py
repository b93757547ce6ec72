"""The fine-tuning chapter: the hotdog path against a local mirror, the offline path, bad data."""
import hashlib
import http.server
import io
import json
import socket
import threading
import zipfile

import numpy as np
import pytest
from mxnet import nd

from chapters import fine_tuning
from utils.datasets import image_folder
from utils.errors import UserError

TINY = ['--epochs', '1', '--image-size', '32', '--batch-size', '8', '--no-progress',
        '--model', 'mobilenetv2_1.0']


def _png_via_matplotlib(pixels):
    import matplotlib.image
    buf = io.BytesIO()
    matplotlib.image.imsave(buf, pixels, format='png')
    return buf.getvalue()


def hotdog_zip(path, per_class=(6, 2), extra=None):
    """A small hotdog.zip in the real layout; one image per split smaller than the crop."""
    rng = np.random.RandomState(0)
    with zipfile.ZipFile(path, 'w') as zf:
        for split, count in zip(('train', 'test'), per_class):
            for cls, shade in (('hotdog', 200), ('not-hotdog', 60)):
                for i in range(count):
                    size = (20, 30) if i == 0 else (48, 40)
                    zf.writestr('hotdog/%s/%s/%d.png' % (split, cls, i),
                                _png_via_matplotlib(np.clip(rng.normal(
                                    shade, 30, size=size + (3,)), 0, 255).astype('uint8')))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    with open(path, 'rb') as f:
        return hashlib.sha1(f.read()).hexdigest()


@pytest.fixture
def mirror(tmp_path):
    """Serve tmp_path/www on 127.0.0.1; yields the base URL."""
    root = tmp_path / 'www'
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, 'http://127.0.0.1:%d' % httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def run_chapter(tmp_path, *extra):
    metrics = tmp_path / 'metrics.json'
    fine_tuning.main(list(TINY) + ['--out', str(tmp_path / 'out'), '--metrics-json',
                                   str(metrics)] + list(extra))
    return json.loads(metrics.read_text())


def test_hotdog_path_downloads_verifies_extracts_and_trains(tmp_path, mirror, capsys):
    root, url = mirror
    sha1 = hotdog_zip(str(root / 'hotdog.zip'))
    data_dir = tmp_path / 'data'
    result = run_chapter(tmp_path, '--dataset', 'hotdog', '--data-dir', str(data_dir),
                         '--data-url', url + '/hotdog.zip', '--data-sha1', sha1)
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


def test_offline_faces_path(tmp_path, capsys):
    result = run_chapter(tmp_path, '--dataset', 'faces')
    assert result['dataset'] == 'faces' and result['model'] == 'mobilenetv2_1.0'
    assert result['devices'] == ['cpu(0)']
    out = capsys.readouterr().out
    assert 'faces: 160 training and 40 test images' in out
    # two held-out photos of each class with their true class, then astronaut.png and coffee.png
    assert out.count('With prob=') == 6
    assert out.count('(true class: face)') == 2 and out.count('(true class: not-face)') == 2
    assert 'coffee.png (not from the data set): With prob=' in out
    assert (tmp_path / 'out' / 'held_out_0_face.png').exists()
    assert result['wall_seconds'] > 0


def test_quick_on_the_faces_is_data_scarce_unless_told_otherwise():
    args = fine_tuning.parse_args(['--quick', '--dataset', 'faces'])
    train_imgs, test_imgs, _, _ = fine_tuning.get_data(args, 32, quick_faces=True)
    assert (len(train_imgs), len(test_imgs)) == (8, 40)
    assert (args.epochs, args.batch_size, args.per_class) == (40, 8, 4)
    assert (args.learning_rate, args.finetune_batchnorm) == (0.001, 'inference')
    assert sorted(train_imgs[i][1] for i in range(8)) == [0.0] * 4 + [1.0] * 4
    args = fine_tuning.parse_args(['--quick', '--dataset', 'faces', '--epochs', '3',
                                   '--per-class', 'all'])
    train_imgs, _, _, _ = fine_tuning.get_data(args, 32, quick_faces=True)
    assert len(train_imgs) == 160 and (args.epochs, args.batch_size) == (3, 8)
    # the exercises share the options but keep the whole training set
    args = fine_tuning.parse_args(['--quick', '--dataset', 'faces'])
    train_imgs, _, _, _ = fine_tuning.get_data(args, 32)
    assert len(train_imgs) == 160 and (args.epochs, args.batch_size) == (10, 32)
    assert (args.learning_rate, args.finetune_batchnorm) == (0.01, 'update')


def test_per_class_subset_of_the_hotdog_folder(tmp_path, mirror, capsys):
    root, url = mirror
    sha1 = hotdog_zip(str(root / 'hotdog.zip'))
    run_chapter(tmp_path, '--dataset', 'hotdog', '--data-dir', str(tmp_path / 'data'),
                '--data-url', url + '/hotdog.zip', '--data-sha1', sha1, '--per-class', '2')
    assert 'hotdog: 4 training and 4 test images' in capsys.readouterr().out


def test_hotdog_asked_explicitly_without_network_is_an_error(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        dead = 'http://127.0.0.1:%d/hotdog.zip' % s.getsockname()[1]
    with pytest.raises(SystemExit) as exit_info:
        fine_tuning.main(TINY + ['--dataset', 'hotdog', '--data-dir', str(tmp_path),
                                 '--data-url', dead, '--out', str(tmp_path / 'out')])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: could not download hotdog.zip')
    assert str(tmp_path / 'hotdog.zip') in err[0]


def test_undecodable_image_named_in_one_line(tmp_path, mirror, capsys):
    root, url = mirror
    sha1 = hotdog_zip(str(root / 'hotdog.zip'),
                      extra={'hotdog/train/hotdog/broken.png': b'not a png'})
    with pytest.raises(SystemExit) as exit_info:
        fine_tuning.main(TINY + ['--dataset', 'hotdog', '--data-dir', str(tmp_path / 'd'),
                                 '--data-url', url + '/hotdog.zip', '--data-sha1', sha1,
                                 '--out', str(tmp_path / 'out')])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'broken.png cannot be decoded' in err[0]


def test_empty_class_and_single_class_folders(tmp_path):
    (tmp_path / 'one' / 'hotdog').mkdir(parents=True)
    (tmp_path / 'one' / 'hotdog' / 'a.png').write_bytes(b'x')
    with pytest.raises(UserError, match=r'one.*holds 1 class folder'):
        image_folder(str(tmp_path / 'one'))
    (tmp_path / 'one' / 'not-hotdog').mkdir()
    with pytest.raises(UserError, match=r'not-hotdog holds no \.jpg or \.png'):
        image_folder(str(tmp_path / 'one'))


@pytest.mark.parametrize('size', [224, 96])
def test_images_smaller_than_the_crop_are_upsampled(size):
    train_augs, test_augs = fine_tuning.augmentations(size)
    small = nd.array(np.random.RandomState(0).randint(0, 255, size=(20, 30, 3)))
    for augs in (train_augs, test_augs):
        data, label = fine_tuning.transform(small, 1, augs)
        assert data.shape == (3, size, size)
        assert label == 1.0


def test_bn_momentum_sets_how_fast_running_averages_forget():
    from mxnet import autograd, gluon
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.BatchNorm(in_channels=2))
    net.initialize()
    fine_tuning.set_bn_momentum(net, 0.5)
    net.hybridize(static_alloc=True, static_shape=True)
    x = nd.array(np.random.RandomState(0).normal(3.0, 2.0, size=(64, 2, 4, 4)))
    with autograd.record():
        out = net(x)
    out.backward()  # MXNet updates the running averages in BatchNorm's backward pass
    batch_mean = x.asnumpy().mean(axis=(0, 2, 3))
    np.testing.assert_allclose(net[0].running_mean.data().asnumpy(), 0.5 * batch_mean,
                               rtol=1e-5)
