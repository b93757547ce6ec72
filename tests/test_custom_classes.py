"""The custom-classes chapter: demo folder, saved model, --predict, --webcam, bad folders."""
import json

import numpy as np
import pytest
from mxnet import nd

import utils

TINY = ['--image-size', '32', '--epochs', '2', '--no-progress']


def run(tmp_path, *extra):
    metrics = tmp_path / 'metrics.json'
    namespace = utils.run_chapter('chapters.custom_classes', TINY + [
        '--out', str(tmp_path / 'out'), '--metrics-json', str(metrics)] + list(extra))
    return dict(json.loads(metrics.read_text()), namespace=namespace)


def png_folder(root, counts, size=40):
    import cv2
    rng = np.random.RandomState(0)
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(root / name / ('%d.png' % i)),
                        rng.randint(0, 255, size=(size, size, 3)).astype('uint8'))
    return root


def one_error_line(capsys, exit_info):
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ')
    return err[0]


def test_demo_folder_trains_saves_and_predicts(tmp_path, capsys):
    result = run(tmp_path, '--per-class', '8')
    assert result['classes'] == ['crowded', 'rectangle', 'triangle']
    assert result['counts'] == {'crowded': 8, 'rectangle': 8, 'triangle': 8}
    assert result['feature_shape'] == [1280, 1, 1]
    assert len(result['history']['loss']) == 2 and result['held_out'] == 6
    model = tmp_path / 'out' / 'model.zip'
    assert model.exists() and (tmp_path / 'out' / 'pictures.png').exists()
    capsys.readouterr()
    predicted = run(tmp_path, '--predict', str(tmp_path / 'out' / 'demo_images' / 'triangle'))
    lines = [line for line in capsys.readouterr().out.splitlines() if '(probability' in line]
    assert len(lines) == 8 == len(predicted['predictions'])
    for p in predicted['predictions']:
        assert p['class'] in result['classes'] and 0 < p['probability'] <= 1


def test_saved_model_round_trips(tmp_path):
    cc = run(tmp_path, '--per-class', '4', '--epochs', '1')['namespace']
    head = cc['build_new_head'](3)
    head.initialize()
    x = nd.random.normal(shape=(2, 1280, 1, 1))
    expected = head(x).asnumpy()
    cc['save_model'](str(tmp_path / 'm.zip'), head, ['a', 'b', 'c'], 32)
    _, loaded, classes, size = cc['load_model'](str(tmp_path / 'm.zip'))
    assert classes == ['a', 'b', 'c'] and size == 32
    np.testing.assert_array_equal(loaded(x).asnumpy(), expected)


@pytest.mark.parametrize('counts, message', [
    ({'rock': 3}, 'holds 1 class folder(s): at least two are needed'),
    ({'rock': 3, 'paper': 0}, 'paper holds no .jpg or .png image'),
])
def test_bad_folders_give_one_line(tmp_path, capsys, counts, message):
    images = png_folder(tmp_path / 'pics', counts)
    with pytest.raises(SystemExit) as exit_info:
        run(tmp_path, '--images', str(images))
    assert message in one_error_line(capsys, exit_info)


def test_unreadable_picture_is_named(tmp_path, capsys):
    images = png_folder(tmp_path / 'pics', {'rock': 3, 'paper': 3})
    (images / 'paper' / 'broken.png').write_bytes(b'not a png')
    with pytest.raises(SystemExit) as exit_info:
        run(tmp_path, '--images', str(images))
    assert 'broken.png cannot be decoded' in one_error_line(capsys, exit_info)


def test_small_class_warns_and_still_trains(tmp_path, capsys):
    images = png_folder(tmp_path / 'pics', {'rock': 10, 'paper': 10, 'scissors': 2})
    result = run(tmp_path, '--images', str(images), '--epochs', '1')
    assert result['counts']['scissors'] == 2
    err = capsys.readouterr().err.splitlines()
    warnings = [line for line in err if line.startswith('warning:')]
    assert len(warnings) == 1 and "'scissors' has 2 pictures" in warnings[0]


def test_webcam_without_camera_says_so_in_one_line(tmp_path, capfd):
    # capfd: OpenCV's own warnings go to file descriptor 2, and must stay silent
    with pytest.raises(SystemExit) as exit_info:
        run(tmp_path, '--webcam', '--camera', '9')
    assert 'no camera' in one_error_line(capfd, exit_info)


def test_predict_without_model_says_train_first(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(tmp_path, '--predict', str(tmp_path))
    assert 'no model at' in one_error_line(capsys, exit_info)
