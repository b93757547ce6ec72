import gzip
import struct

import numpy as np
import pytest

from utils.data import fashion_mnist as fm
from utils.errors import UserError


def idx_bytes(array, type_code=0x08):
    header = struct.pack('>BBBB', 0, 0, type_code, array.ndim)
    header += struct.pack('>%dI' % array.ndim, *array.shape)
    return header + array.astype(fm.IDX_TYPES[type_code]).tobytes()


IMAGES = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10
LABELS = np.array([5, 9], dtype=np.uint8)


def write_split(folder, split, images=IMAGES, labels=LABELS, compress=True):
    for name, array in zip(fm.FILES[split], (images, labels)):
        data = idx_bytes(array)
        if compress:
            (folder / (name + '.gz')).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


def test_reads_plain_and_gzipped_idx(tmp_path):
    plain, packed = tmp_path / 'a-idx3-ubyte', tmp_path / 'b-idx3-ubyte.gz'
    plain.write_bytes(idx_bytes(IMAGES))
    packed.write_bytes(gzip.compress(idx_bytes(IMAGES)))
    for path in (plain, packed):
        out = fm.read_idx(str(path))
        assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
        np.testing.assert_array_equal(out, IMAGES)


def test_gzip_is_told_by_content_not_by_name(tmp_path):
    path = tmp_path / 'labels-idx1-ubyte'  # no .gz suffix, gzipped content
    path.write_bytes(gzip.compress(idx_bytes(LABELS)))
    np.testing.assert_array_equal(fm.read_idx(str(path)), LABELS)


def test_big_endian_types_come_out_native(tmp_path):
    values = np.array([[1.5, -2.25], [1e6, 0]], dtype=np.float32)
    path = tmp_path / 'f.idx'
    path.write_bytes(idx_bytes(values, type_code=0x0D))
    out = fm.read_idx(str(path))
    assert out.dtype == np.float32 and out.dtype.byteorder in '=|<'
    np.testing.assert_array_equal(out, values)


@pytest.mark.parametrize('damage, reason', [
    (lambda b: b[:-1], 'need 24 data bytes, the file has 23'),
    (lambda b: b + b'\x00', 'need 24 data bytes, the file has 25'),
    (lambda b: b'\x08\x03' + b[2:], 'bad magic number 0x0803'),
    (lambda b: b[:2] + b'\x07' + b[3:], 'bad magic number 0x000007'),
    (lambda b: b[:9], 'header cut short: 9 of 16 bytes'),
    (lambda b: b[:3], 'shorter than the 4-byte magic number'),
])
def test_damaged_files_are_named_in_one_line(tmp_path, damage, reason):
    path = tmp_path / 'train-images-idx3-ubyte'
    path.write_bytes(damage(idx_bytes(IMAGES)))
    with pytest.raises(UserError) as err:
        fm.read_idx(str(path))
    message = str(err.value)
    assert str(path) in message and reason in message and '\n' not in message
    assert 'apt-get' in message  # says how to get good files


def test_truncated_gzip_is_named(tmp_path):
    path = tmp_path / 'train-images-idx3-ubyte.gz'
    path.write_bytes(gzip.compress(idx_bytes(IMAGES))[:-6])
    with pytest.raises(UserError, match='broken gzip data') as err:
        fm.read_idx(str(path))
    assert str(path) in str(err.value)


def test_loads_a_split_from_a_folder_with_mixed_compression(tmp_path):
    write_split(tmp_path, 'train')
    write_split(tmp_path, 'test', compress=False)
    for split in ('train', 'test'):
        images, labels = fm.load_fashion_mnist(split, folder=str(tmp_path))
        np.testing.assert_array_equal(images, IMAGES)
        np.testing.assert_array_equal(labels, LABELS)
    assert [fm.CLASSES[k] for k in labels] == ['Sandal', 'Ankle boot']


def test_mismatched_label_file_is_refused(tmp_path):
    write_split(tmp_path, 'train', labels=np.array([1, 2, 3], dtype=np.uint8))
    write_split(tmp_path, 'test')
    with pytest.raises(UserError, match='do not match'):
        fm.load_fashion_mnist('train', folder=str(tmp_path))


def test_label_out_of_range_is_refused(tmp_path):
    write_split(tmp_path, 'train', labels=np.array([1, 10], dtype=np.uint8))
    write_split(tmp_path, 'test')
    with pytest.raises(UserError, match='label 10'):
        fm.load_fashion_mnist('train', folder=str(tmp_path))


def test_environment_variable_and_extracted_deb_layout(tmp_path, monkeypatch):
    flat = tmp_path / 'flat'
    flat.mkdir()
    write_split(flat, 'train')
    write_split(flat, 'test')
    monkeypatch.setenv(fm.ENV_VAR, str(flat))
    assert fm.find_fashion_mnist() == str(flat)
    # the layout `dpkg-deb -x` leaves under data/fashion-mnist
    monkeypatch.delenv(fm.ENV_VAR)
    extracted = tmp_path / 'data' / 'fashion-mnist'
    inner = extracted / fm.PACKAGE_PATH
    inner.mkdir(parents=True)
    write_split(inner, 'train')
    write_split(inner, 'test')
    monkeypatch.setattr(fm, 'EXTRACTED_FOLDER', str(extracted))
    monkeypatch.setattr(fm, 'DEBIAN_FOLDER', str(tmp_path / 'not-installed'))
    assert fm.find_fashion_mnist() == str(inner)


def test_absent_data_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv(fm.ENV_VAR, raising=False)
    monkeypatch.setattr(fm, 'EXTRACTED_FOLDER', str(tmp_path / 'none'))
    monkeypatch.setattr(fm, 'DEBIAN_FOLDER', str(tmp_path / 'none-either'))
    assert fm.find_fashion_mnist() is None
    with pytest.raises(UserError) as err:
        fm.load_fashion_mnist('test')
    message = str(err.value)
    assert 'apt-get install dataset-fashion-mnist' in message
    assert 'make fashion-mnist' in message and '\n' not in message
    # an incomplete folder (one file missing) is not taken either
    write_split(tmp_path, 'train')
    with pytest.raises(UserError, match='not found'):
        fm.locate_fashion_mnist(str(tmp_path))


def test_classes_map_onto_imagenet_rows_by_name():
    rows = fm.imagenet_rows()
    assert rows == {'Sandal': 774, 'Sneaker': 770, 'Ankle boot': 514, 'Bag': 748,
                    'T-shirt/top': 610, 'Pullover': 841, 'Coat': 869}
    assert fm.imagenet_rows(['Sneaker']) == {'Sneaker': 770}
    with pytest.raises(UserError, match="'Trouser' has no ImageNet counterpart"):
        fm.imagenet_rows(['Trouser'])
    assert len(fm.CLASSES) == 10 and set(fm.IMAGENET_NAMES) <= set(fm.CLASSES)
