"""utils.numpy_compat, and the MXNet API the chapters use, under the numpy in this environment.

On numpy 1.23 (Python 3.8 to 3.11) the compat module must change nothing; on numpy 1.26 and 2.x
it must give back what MXNet 1.9.1 reads, with numpy's documented meaning.
"""
import io
import json
import math
import os
import subprocess
import sys
import warnings

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon, image, nd, recordio
from mxnet.gluon.data.vision import transforms

from utils import numpy_compat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUMPY = tuple(int(part) for part in np.__version__.split('.')[:2])

# In a fresh interpreter, warnings as errors: the module alone (not through utils/__init__,
# which imports MXNet), restore twice, then MXNet must import.
FRESH = """
import importlib.util, json, warnings
warnings.simplefilter('error')
spec = importlib.util.spec_from_file_location('numpy_compat', 'utils/numpy_compat.py')
compat = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compat)
first, second = compat.restore_numpy_names(), compat.restore_numpy_names()
warnings.resetwarnings()
warnings.simplefilter('ignore')  # MXNet's own DeprecationWarnings are not the module's
import mxnet
print(json.dumps({'first': first, 'second': second}))
"""


def fresh_restore():
    out = subprocess.run([sys.executable, '-c', FRESH], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def test_restores_only_what_this_numpy_lacks_silently_and_once():
    result = fresh_restore()
    assert result['second'] == []
    restored = set(result['first'])
    if NUMPY < (1, 24):
        assert restored == set()
    elif NUMPY < (2, 0):
        assert {'bool', 'int'} <= restored and 'PZERO' not in restored
    else:
        assert {'PZERO', 'NZERO', 'PINF', 'NINF', 'NAN', 'NaN', 'Inf'} <= restored
        assert 'bool' not in restored  # numpy 2 has np.bool again (np.bool_)


def numpy_name(name):
    with warnings.catch_warnings():  # numpy 1.23 serves some of these with a DeprecationWarning
        warnings.simplefilter('ignore')
        return getattr(np, name)


@pytest.mark.filterwarnings('ignore::DeprecationWarning')  # numpy 1.26's own msort, trapz, ...
def test_every_name_is_there_with_numpys_meaning():
    for name in numpy_compat.NAMES:
        numpy_name(name)
    assert np.dtype(numpy_name('bool')) == np.bool_ and np.dtype(numpy_name('int')) == np.int_
    assert numpy_name('PZERO') == 0 and not math.copysign(1, numpy_name('PZERO')) < 0
    assert numpy_name('NZERO') == 0 and math.copysign(1, numpy_name('NZERO')) < 0
    assert numpy_name('PINF') == numpy_name('Inf') == math.inf
    assert numpy_name('NINF') == -math.inf
    assert math.isnan(numpy_name('NAN')) and math.isnan(numpy_name('NaN'))
    a = np.array([[3, 1], [1, 2]])
    np.testing.assert_array_equal(numpy_name('in1d')(a, [1, 2]), [False, True, True, True])
    np.testing.assert_array_equal(numpy_name('in1d')(a, [1], invert=True),
                                  [True, False, False, True])
    np.testing.assert_array_equal(numpy_name('msort')(a), [[1, 1], [3, 2]])
    assert numpy_name('trapz')([1, 2, 3]) == 4.0 and numpy_name('trapz')([1, 2], dx=2) == 3.0
    assert numpy_name('alltrue')(a > 0) and not numpy_name('alltrue')(a > 1)
    assert numpy_name('sometrue')(a > 2) and not numpy_name('sometrue')(a > 3)
    assert numpy_name('product')(a) == 6
    np.testing.assert_array_equal(numpy_name('cumproduct')(a), [3, 3, 3, 6])
    assert numpy_name('round_')(1.26, 1) == 1.3
    assert numpy_name('asfarray')([1, 2]).dtype == np.float64
    assert numpy_name('compat').basestring is str
    for name in ('npv', 'pmt', 'mirr'):
        with pytest.raises(RuntimeError, match='numpy_financial'):
            numpy_name(name)(0.1, [1, 2])


@pytest.mark.parametrize('label', [3.0, [1.0, 2.5, -4.0]])
def test_recordio_records_round_trip(label):
    header = recordio.IRHeader(0, label, 7, 0)
    got, payload = recordio.unpack(recordio.pack(header, b'payload'))
    assert payload == b'payload' and got.id == 7
    np.testing.assert_array_equal(got.label, label)
    rgb = np.random.RandomState(0).randint(0, 256, size=(9, 13, 3)).astype('uint8')
    _, img = recordio.unpack_img(recordio.pack_img(header, rgb, quality=3, img_fmt='.png'))
    np.testing.assert_array_equal(img, rgb)


@pytest.mark.skipif(not hasattr(np.ndarray, 'tostring'), reason='numpy 2: no MXNet original')
@pytest.mark.parametrize('label', [3.0, [1.0, 2.5, -4.0]])
def test_replacement_packers_write_mxnets_bytes(label):
    # With numpy < 2 MXNet's own packers still run: the replacements must match them byte for byte.
    header = recordio.IRHeader(0, label, 7, 0)
    assert numpy_compat._recordio_pack(header, b'xy') == recordio.pack(header, b'xy')
    rgb = np.random.RandomState(1).randint(0, 256, size=(9, 13, 3)).astype('uint8')
    for fmt, quality in (('.png', 3), ('.jpg', 90)):
        with warnings.catch_warnings():  # numpy 1.26: ndarray.tostring is deprecated
            warnings.simplefilter('ignore', DeprecationWarning)
            original = recordio.pack_img(header, rgb, quality=quality, img_fmt=fmt)
        assert numpy_compat._recordio_pack_img(header, rgb, quality, fmt) == original


def test_parameters_holding_numpy_scalars_are_written_as_numpy_1_did():
    text = numpy_compat._numpy1_text
    assert text([0, np.int64(2)]) == '[0, 2]' and text((np.int32(3),)) == '(3,)'
    assert text([(1, np.int64(2)), 'a']) == "[(1, 2), 'a']"
    assert text([np.float32(0.5), 1.5]) == '[0.5, 1.5]'
    assert text([1, 2]) is None and text(np.int64(2)) is None and text('ab') is None


def test_operators_take_shapes_and_indices_made_of_numpy_integers():
    # MXNet hands operator parameters to its library as str(): numpy 2 writes np.int64(2)
    parts = mx.np.split(mx.np.arange(6), [np.int64(2), np.int64(5)])
    assert [p.shape for p in parts] == [(2,), (3,), (1,)]
    assert nd.zeros((np.int64(2), np.int32(3))).shape == (2, 3)
    assert nd.arange(6).reshape((np.int64(3), -1)).shape == (3, 2)

    class Pairs(gluon.HybridBlock):
        def hybrid_forward(self, F, x):
            return F.reshape(x, shape=(np.int64(-1), np.int64(2)))

    block = Pairs()
    block.hybridize()  # the Symbol path
    assert block(nd.arange(6)).shape == (3, 2)


# %% What the chapters call from mx.nd, mx.np, gluon.data and mx.image

def test_nd_round_trips_and_numpy_scalars():
    for dtype in ('uint8', 'int32', 'int64', 'float32', 'float64'):
        x = np.arange(6, dtype=dtype).reshape(2, 3)
        y = nd.array(x, dtype=dtype)
        assert y.dtype == np.dtype(dtype) and y.asnumpy().dtype == np.dtype(dtype)
        np.testing.assert_array_equal(y.asnumpy(), x)
    assert nd.array(np.arange(3.0)).dtype == np.float32  # nd.array's default, as on numpy 1
    x = nd.array([1.0, 2.0, 3.0])
    for scalar in (np.float32(2), np.float64(2), np.int64(2), 2):
        z = x * scalar + scalar
        assert z.dtype == np.float32
        np.testing.assert_array_equal(z.asnumpy(), [4, 6, 8])
    total = x.sum()
    assert total.asscalar() == 6.0 and total.asscalar().dtype == np.float32
    assert nd.argmax(x, axis=0).asscalar() == 2.0
    np.testing.assert_array_equal(nd.add_n(x, x).asnumpy(), [2, 4, 6])
    np.testing.assert_array_equal(nd.concat(x, x, dim=0).asnumpy(), [1, 2, 3] * 2)
    np.testing.assert_allclose(nd.softmax(nd.zeros((1, 4))).asnumpy(), [[0.25] * 4])
    buffer = io.BytesIO()
    np.save(buffer, x.asnumpy())
    np.testing.assert_array_equal(np.load(io.BytesIO(buffer.getvalue())), x.asnumpy())


def test_nd_save_and_load(tmp_path):
    path = str(tmp_path / 'arrays.params')
    nd.save(path, {'w': nd.array([[1, 2]]), 'b': nd.array([3], dtype='int64')})
    loaded = nd.load(path)
    assert loaded['b'].dtype == np.int64
    np.testing.assert_array_equal(loaded['w'].asnumpy(), [[1, 2]])


def test_mx_np_and_numpy_dispatch():
    a = mx.np.array([[1.0, 2.0], [3.0, 4.0]])
    assert float(a.sum()) == 10.0 and a.asnumpy().dtype == np.float32
    mean = np.mean(a)  # numpy's function dispatches to mxnet.numpy
    assert isinstance(mean, mx.np.ndarray) and float(mean) == 2.5
    padded = mx.np.pad(a, ((1, 1), (1, 1)), mode='constant')
    assert padded.shape == (4, 4) and float(padded.sum()) == 10.0
    np.testing.assert_array_equal(mx.np.array(np.arange(4)).asnumpy(), np.arange(4))


def png_bytes(rgb):
    from PIL import Image
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format='PNG')
    return out.getvalue()


def test_image_decode_resize_crop_and_augmenters():
    rgb = np.random.RandomState(0).randint(0, 256, size=(40, 60, 3)).astype('uint8')
    img = image.imdecode(png_bytes(rgb))
    assert img.dtype == np.uint8
    np.testing.assert_array_equal(img.asnumpy(), rgb)
    assert image.imresize(img, 30, 20).shape == (20, 30, 3)
    crop, (x0, y0, w, h) = image.center_crop(img, (20, 20))
    assert crop.shape == (20, 20, 3) and (x0, y0, w, h) == (20, 10, 20, 20)
    augs = [image.ResizeAug(32), image.RandomCropAug((24, 24)), image.HorizontalFlipAug(1.0),
            image.CenterCropAug((16, 16))]
    out = img
    for aug in augs:
        out = aug(out)
    assert out.shape == (16, 16, 3)


def test_gluon_data_transforms_and_loaders(tmp_path):
    rng = np.random.RandomState(0)
    for label in ('a', 'b'):
        (tmp_path / label).mkdir()
        for i in range(3):
            rgb = rng.randint(0, 256, size=(20 + i, 30, 3)).astype('uint8')
            (tmp_path / label / ('%d.png' % i)).write_bytes(png_bytes(rgb))
    folder = gluon.data.vision.ImageFolderDataset(str(tmp_path))
    assert folder.synsets == ['a', 'b'] and [label for _, label in folder] == [0] * 3 + [1] * 3
    augment = transforms.Compose([transforms.RandomResizedCrop(16),
                                  transforms.RandomFlipLeftRight(), transforms.ToTensor(),
                                  transforms.Normalize([0.485, 0.456, 0.406],
                                                       [0.229, 0.224, 0.225])])
    plain = transforms.Compose([transforms.Resize(20), transforms.CenterCrop(16),
                                transforms.ToTensor()])
    for transform in (augment, plain):
        loader = gluon.data.DataLoader(folder.transform_first(transform), batch_size=4,
                                       last_batch='keep')
        shapes = [(x.shape, x.dtype, y.dtype) for x, y in loader]
        assert shapes[0] == ((4, 3, 16, 16), np.float32, np.int64) and len(shapes) == 2
    pairs = gluon.data.ArrayDataset(np.arange(10, dtype='float32').reshape(5, 2),
                                    np.arange(5))
    batches = list(gluon.data.DataLoader(pairs, batch_size=2, shuffle=True, last_batch='discard'))
    assert len(batches) == 2 and batches[0][0].shape == (2, 2)
    seen = sorted(float(v) for x, _ in batches for v in x[:, 0].asnumpy())
    assert len(set(seen)) == 4 and all(v in (0, 2, 4, 6, 8) for v in seen)
