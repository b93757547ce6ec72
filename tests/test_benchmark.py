"""benchmarks.train_throughput: the generated folder, the variants at toy size, the table."""
import pytest
from mxnet import gluon

from benchmarks import train_throughput as tt


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    return tt.make_image_folder(str(tmp_path_factory.mktemp('bench') / 'images'), 12)


def test_image_folder_has_two_balanced_decodable_classes(folder):
    dataset = gluon.data.vision.ImageFolderDataset(folder)
    assert dataset.synsets == ['circles', 'stripes']
    assert len(dataset) == 12 and sum(label for _, label in dataset) == 6
    img, _ = dataset[0]
    assert img.shape[2] == 3 and min(img.shape[:2]) >= 256


@pytest.mark.parametrize('variant, decode, augment', [
    ('limit', 'once', 'gluon'), ('utils.train', 'once', 'numpy'),
    ('utils.train', 'once', 'gluon'), ('utils.train', 'every-epoch', 'numpy')])
def test_variants_run_at_toy_size(folder, variant, decode, augment):
    cfg = {'folder': folder, 'model': 'mobilenet0.25', 'image_size': 32, 'batch_size': 4,
           'devices': 'cpu:2', 'epochs': 1, 'warmup': 1, 'seed': 0, 'num_workers': 0,
           'decode': decode, 'augment': augment}
    result = tt.RUNNERS[variant](cfg)
    assert result['images'] == 12 and result['seconds'] > 0


def test_table_medians_and_ratios():
    runs = [{'variant': v, 'images_per_sec': ips, 'peak_rss_mib': 100.0 + ips}
            for v, ips in [('limit', 20.0), ('limit', 18.0), ('limit', 10.0),
                           ('utils.train', 17.0), ('utils.train', 16.0), ('utils.train', 1.0),
                           ('d2l', 10.0), ('d2l', 12.0), ('d2l', 14.0)]]
    table, ratios = tt.summarize(runs)
    assert table['limit']['images_per_sec'] == 18.0
    assert table['utils.train']['peak_rss_mib'] == 117.0
    assert ratios == {'utils.train/limit': pytest.approx(16 / 18),
                      'utils.train/d2l': pytest.approx(16 / 12)}
    text = tt.format_table(table, ratios)
    assert 'utils.train/limit        0.89' in text and 'utils.train/d2l          1.33' in text


@pytest.mark.parametrize('argv, message', [
    (['--variants', 'tf'], 'unknown variant tf'),
    (['--images', '40', '--batch-size', '32'], 'at least 5 batches'),
    (['--batch-size', '0'], 'at least 1'),
])
def test_bad_options(argv, message, capsys):
    with pytest.raises(SystemExit):
        tt.parse_args(argv)
    assert message in capsys.readouterr().err


def test_detection_heads_table_at_toy_size(capsys):
    from benchmarks import detection_heads
    rows = detection_heads.main(['--random-base', '--scenes', '40', '--epochs', '2,1',
                                 '--heads', 'conv,conv3x3', '--test-scenes', '8',
                                 '--size', '64'])
    expected = [('conv', 2), ('conv3x3', 2), ('conv', 1), ('conv3x3', 1)]
    assert [(r[0], r[1]) for r in rows] == expected
    for row in rows:
        assert all(0 <= v <= 1 for v in row[4:8]) and row[2] > 0 and row[3] > 0
    assert '| conv3x3 | 2 |' in capsys.readouterr().out


def test_detection_heads_refuses_an_unknown_head(capsys):
    from benchmarks import detection_heads
    with pytest.raises(SystemExit) as exit_info:
        detection_heads.main(['--heads', 'conv,big'])
    assert exit_info.value.code == 2
    assert 'unknown head big' in capsys.readouterr().err
