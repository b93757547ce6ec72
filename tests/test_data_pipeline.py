"""The data-pipeline chapter: last_batch, interleave, RecordIO round trips, a tiny run."""
import json

import numpy as np
import pytest
from mxnet import gluon

import utils


@pytest.fixture(scope='module')
def dp(tmp_path_factory):
    """The namespace of a tiny run of the chapter (its functions, for the tests below)."""
    folder = tmp_path_factory.mktemp('dp')
    return utils.run_chapter('chapters.data_pipeline', [
        '--num-images', '4', '--workers', '0', '--batch-size', '4', '--out', str(folder)])


def png_folder(root, seed=0):
    """Pictures of several sizes in two classes; returns {relative path: (pixels RGB, label)}."""
    import cv2
    rng = np.random.RandomState(seed)
    originals = []
    for label, name in enumerate(('a', 'b')):
        (root / name).mkdir(parents=True)
        for i, size in enumerate([(5, 7), (16, 16), (9, 30)]):
            rgb = rng.randint(0, 256, size=size + (3,)).astype('uint8')
            cv2.imwrite(str(root / name / ('%d.png' % i)), rgb[:, :, ::-1])
            originals.append((rgb, label))
    return originals


@pytest.mark.parametrize('encoding', ['.png', 'raw'])
def test_record_file_round_trips_pixels_and_labels_exactly(dp, tmp_path, encoding):
    originals = png_folder(tmp_path / 'pics')
    rec, count, synsets = dp['pack_folder'](str(tmp_path / 'pics'), str(tmp_path / 'r'), encoding)
    assert count == 6 and synsets == ['a', 'b']
    assert (tmp_path / 'r.idx').exists()
    records = gluon.data.vision.ImageRecordDataset(rec)
    assert len(records) == 6
    for i, (rgb, label) in enumerate(originals):
        img, lab = records[i]
        assert lab == label
        np.testing.assert_array_equal(img.asnumpy(), rgb)


def test_jpeg_records_keep_labels_and_are_close(dp, tmp_path):
    originals = png_folder(tmp_path / 'pics')
    rec, _, _ = dp['pack_folder'](str(tmp_path / 'pics'), str(tmp_path / 'r'), '.jpg')
    records = gluon.data.vision.ImageRecordDataset(rec)
    for i, (rgb, label) in enumerate(originals):
        img, lab = records[i]
        assert lab == label and img.shape == rgb.shape


def test_interleave_reads_cycle_length_files_in_turn(dp, tmp_path):
    paths = []
    for name, n in (('a', 3), ('b', 1), ('c', 2)):
        path = tmp_path / (name + '.csv')
        path.write_text('header\n' + ''.join('%s%d\n' % (name, i) for i in range(n)))
        paths.append(str(path))
    lines = [line.strip() for line in dp['interleave'](paths, cycle_length=2)]
    assert lines == ['a0', 'b0', 'a1', 'a2', 'c0', 'c1']  # tf.data's order


def test_tiny_run(tmp_path, capsys):
    metrics = tmp_path / 'metrics.json'
    utils.run_chapter('chapters.data_pipeline', [
        '--num-images', '12', '--workers', '0', '1', '--batch-size', '4',
        '--out', str(tmp_path / 'out'), '--metrics-json', str(metrics)])
    result = json.loads(metrics.read_text())
    api = result['data_api']
    assert api['repeat_batch'] == ('[0, 1, 2, 3, 4, 5, 6] [7, 8, 9, 0, 1, 2, 3] '
                                   '[4, 5, 6, 7, 8, 9, 0] [1, 2, 3, 4, 5, 6, 7] [8, 9]')
    assert api['last_batch_discard'] == ['[0, 1, 2, 3, 4, 5, 6]'] * 3
    assert api['last_batch_rollover'][1] == '[7, 8, 9, 0, 1, 2, 3]'
    assert api['filter_take'] == [0, 2, 4]
    assert result['images'] == 12
    assert [(r['source'], r['workers']) for r in result['throughput']] == [
        ('image folder', 0), ('image folder', 1), ('record file', 0), ('record file', 1)]
    assert all(r['images_per_sec'] > 0 for r in result['throughput'])
    assert 'images/sec' in capsys.readouterr().out  # the table
    assert (tmp_path / 'out' / 'throughput.png').stat().st_size > 1000
