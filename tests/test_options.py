"""Every chapter's options are checked when parsed: a bad value ends the run with one line
naming it and status 2, before any data is read or any net trained (parsing only here)."""
import os
import subprocess
import sys

import pytest
import skimage

from utils.cli import parse_chapter

CHAPTERS = ['custom_classes', 'data_pipeline', 'feature_extraction', 'fine_tuning',
            'fine_tuning_exercises', 'pretrained_predict', 'simple_object_detection',
            'train_basics']
COFFEE = os.path.join(os.path.dirname(skimage.__file__), 'data', 'coffee.png')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def not_an_image(tmp_path):
    path = tmp_path / 'README.md'
    path.write_text('# not a picture\n')
    return str(path)


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / 'plain.txt'
    path.write_text('x')
    return str(path)


# (chapter, arguments, what the one line must name); NOT_AN_IMAGE and A_FILE are filled in
BAD = [
    # the cases
    ('fine_tuning', ['--image-size', '0'], '--image-size: 0'),
    ('fine_tuning', ['--epochs', '0'], '--epochs: 0'),
    ('data_pipeline', ['--batch-size', '0'], '--batch-size: 0'),
    ('fine_tuning', ['--batch-size', '-3'], '--batch-size: -3'),
    ('simple_object_detection', ['--quick', '--num-examples', '3'], '--num-examples: 3'),
    ('simple_object_detection', ['--quick', '--input-size', '7'], '--input-size: 7'),
    ('fine_tuning', ['--out', '/proc/forbidden'], '/proc/forbidden'),
    ('fine_tuning', ['--predict', 'NOT_AN_IMAGE'], 'README.md cannot be read as an image'),
    ('fine_tuning', ['--predict', '/nonexistent.png'], '/nonexistent.png: no such file'),
    # more of the same kinds, one or two per chapter and per shared option
    ('fine_tuning', ['--epochs', 'ten'], "'ten' is not an integer"),
    ('fine_tuning', ['--learning-rate', '0'], '--learning-rate: 0'),
    ('fine_tuning', ['--learning-rate', 'nan'], '--learning-rate: nan'),
    ('fine_tuning', ['--wd', '-1'], '--wd: -1'),
    ('fine_tuning', ['--bn-momentum', '1.5'], '--bn-momentum: 1.5'),
    ('fine_tuning', ['--image-size', '5000'], '--image-size: 5000'),
    ('fine_tuning', ['--model', 'resnet999'], "unknown model 'resnet999'"),
    ('fine_tuning', ['--data-sha1', 'abc'], "'abc' is not a sha1"),
    ('fine_tuning', ['--data-dir', '/proc/forbidden'], '/proc/forbidden'),
    ('fine_tuning', ['--seed', '-1'], '--seed: -1'),
    ('fine_tuning', ['--metrics-json', '/proc/forbidden/m.json'], '/proc/forbidden'),
    ('fine_tuning', ['--out', 'A_FILE/figures'], 'plain.txt is a file, not a folder'),
    ('fine_tuning_exercises', ['--long-epochs', '0'], '--long-epochs: 0'),
    ('fine_tuning_exercises', ['--decay-epoch', '-2'], '--decay-epoch: -2'),
    ('fine_tuning_exercises', ['--quick', '--epochs', '0'], '--epochs: 0'),
    ('feature_extraction', ['--initial-epochs', '0'], '--initial-epochs: 0'),
    ('feature_extraction', ['--quick', '--image-size', '8'], '--image-size: 8'),
    ('feature_extraction', ['--fine-tune-epochs', '0'], '--fine-tune-epochs: 0'),
    ('custom_classes', ['--images', '/nonexistent'], '/nonexistent: no such folder'),
    ('custom_classes', ['--predict', 'NOT_AN_IMAGE'], 'README.md cannot be read as an image'),
    ('custom_classes', ['--val-fraction', '1'], '--val-fraction: 1'),
    ('custom_classes', ['--per-class', '0'], '--per-class: 0'),
    ('custom_classes', ['--webcam', '-1'], '--webcam: -1'),
    ('custom_classes', ['--serve', '65536'], "--serve: '65536': give a port from 1 to 65535"),
    ('custom_classes', ['--model-file', '/proc/forbidden/model.zip'], '/proc/forbidden'),
    ('data_pipeline', ['--workers', '0', '-1'], '--workers: -1'),
    ('data_pipeline', ['--workers', '0', '5000'], '--workers: 5000: at most'),
    ('train_basics', ['--devices', 'cpu:1000'], "--devices: 'cpu:1000': at most cpu:8"),
    ('fine_tuning', ['--devices', 'gpu:0,0'], "--devices: 'gpu:0,0' names a GPU twice"),
    ('data_pipeline', ['--num-images', '0'], '--num-images: 0'),
    ('data_pipeline', ['--quick', '--repeats', '0'], '--repeats: 0'),
    ('data_pipeline', ['--images', 'A_FILE'], 'plain.txt: no such folder'),
    ('pretrained_predict', ['NOT_AN_IMAGE'], 'README.md cannot be read as an image'),
    ('pretrained_predict', ['/nonexistent.png'], '/nonexistent.png: no such file'),
    ('pretrained_predict', ['--top', '0'], '--top: 0'),
    ('pretrained_predict', ['--top', '1001'], '--top: 1001'),
    ('pretrained_predict', ['--model', 'vgg1'], "unknown model 'vgg1'"),
    ('simple_object_detection', ['--validation-split', '0'], '--validation-split: 0'),
    ('simple_object_detection', ['--lr-drop', '1'], '--lr-drop: 1'),
    ('simple_object_detection', ['--predict', '0'], '--predict: 0'),
    ('simple_object_detection', ['--unfreeze', '-1'], '--unfreeze: -1'),
    ('simple_object_detection', ['--lr1', '-0.1'], '--lr1: -0.1'),
    ('simple_object_detection', ['--batch-size', '0'], '--batch-size: 0'),
    ('train_basics', ['--epochs', '0'], '--epochs: 0'),
    ('train_basics', ['--batch-size', '-1'], '--batch-size: -1'),
]


@pytest.mark.parametrize('chapter, argv, names', BAD,
                         ids=['%s %s' % (c, ' '.join(a)) for c, a, _ in BAD])
def test_bad_value_is_refused_in_one_line(chapter, argv, names, not_an_image, a_file, capsys):
    argv = [a.replace('NOT_AN_IMAGE', not_an_image).replace('A_FILE', a_file) for a in argv]
    with pytest.raises(SystemExit) as stop:
        parse_chapter('chapters.' + chapter, argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('%s: error: ' % chapter), err
    assert names in err, err


@pytest.mark.parametrize('chapter', CHAPTERS)
def test_dist_kvstore_refused_unless_the_chapter_trains_across_processes(chapter, capsys):
    # the one chapter that shards its data (utils.training.distributed)
    if chapter == 'train_basics':
        assert parse_chapter('chapters.' + chapter, ['--kvstore', 'dist_sync']).kvstore \
            == 'dist_sync'
        return
    for kvstore in ('device', 'local'):
        assert parse_chapter('chapters.' + chapter, ['--kvstore', kvstore]).kvstore == kvstore
    for kvstore in ('dist_sync', 'dist_device_sync', 'dist_async'):
        with pytest.raises(SystemExit) as stop:
            parse_chapter('chapters.' + chapter, ['--kvstore', kvstore])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert err.count('\n') == 1 and '--kvstore: %s: this chapter trains in one process' \
            % kvstore in err, err


def test_good_values_parse_as_given(tmp_path):
    args = parse_chapter('chapters.fine_tuning', [
        '--quick', '--epochs', '1', '--image-size', '32', '--predict', COFFEE,
        '--out', str(tmp_path / 'new' / 'folder'), '--wd', '0', '--seed', '0'])
    assert (args.epochs, args.image_size, args.batch_size, args.wd) == (1, 32, 32, 0.0)
    assert args.predict == [COFFEE]
    assert not (tmp_path / 'new').exists()  # checked, not created, at parse time
    assert os.listdir(tmp_path) == []  # and the write test left nothing behind
    args = parse_chapter('chapters.fine_tuning_exercises', ['--long-epochs', '3',
                                                            '--decay-epoch', '3'])
    assert (args.long_epochs, args.decay_epoch) == (3, 3)
    args = parse_chapter('chapters.custom_classes', ['--val-fraction', '0', '--predict',
                                                     COFFEE, str(tmp_path)])
    assert args.val_fraction == 0 and args.predict == [COFFEE, str(tmp_path)]
    assert parse_chapter('chapters.data_pipeline', ['--workers', '0', '2']).workers == [0, 2]


def test_command_line_refuses_before_any_work():
    """The real command: one line on stderr, status 2, and no training first."""
    done = subprocess.run([sys.executable, '-m', 'chapters.fine_tuning', '--quick',
                           '--predict', '/nonexistent.png'], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == ('fine_tuning: error: argument --predict: /nonexistent.png: no such '
                           'file (--help lists the settings)\n')
    assert done.stdout == ''


def test_detection_split_leaving_no_validation_scene_is_refused_before_work(tmp_path, capsys):
    from utils.cli import run_chapter
    with pytest.raises(SystemExit) as stop:
        run_chapter('chapters.simple_object_detection', [
            '--num-examples', '20', '--validation-split', '0.01', '--out', str(tmp_path / 'o')])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err == ('error: --num-examples 20 with --validation-split 0.01 leaves 0 validation '
                   'scenes: give more scenes or another split\n')
    assert not (tmp_path / 'o').exists()  # nothing started
