"""The custom-classes chapter: demo folder, saved model, --predict, --webcam, bad folders, and
the text's workflow on a generated video: --collect, training with the loss of every batch,
--webcam VIDEO."""
import json
import os

import numpy as np
import pytest
from mxnet import nd

import utils
from utils.data import capture

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
        run(tmp_path, '--webcam', '9')
    assert 'no camera' in one_error_line(capfd, exit_info)


def test_predict_without_model_says_train_first(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(tmp_path, '--predict', str(tmp_path))
    assert 'no model at' in one_error_line(capsys, exit_info)


# The text's workflow on a video: one class per 2 seconds, a coloured shape at a random place
# and size in every frame (red disc "rock", green square "paper", blue triangle "scissors").
FPS, SECONDS_PER_CLASS, VIDEO_CLASSES = 10, 2, ('rock', 'paper', 'scissors')


def write_video(path, size=96, seed=0):
    import cv2
    rng = np.random.RandomState(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), FPS, (size, size))
    assert writer.isOpened()
    for i in range(FPS * SECONDS_PER_CLASS * len(VIDEO_CLASSES)):
        kind = i // (FPS * SECONDS_PER_CLASS)
        frame = np.full((size, size, 3), 200, 'uint8')
        (x, y), r = rng.randint(30, size - 30, 2), int(rng.randint(12, 22))
        if kind == 0:
            cv2.circle(frame, (int(x), int(y)), r, (0, 0, 255), -1)
        elif kind == 1:
            cv2.rectangle(frame, (x - r, y - r), (x + r, y + r), (0, 200, 0), -1)
        else:
            corners = np.array([[x, y - r], [x - r, y + r], [x + r, y + r]], np.int32)
            cv2.fillPoly(frame, [corners], (255, 0, 0))
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope='module')
def video(tmp_path_factory):
    return str(write_video(tmp_path_factory.mktemp('video') / 'hands.avi'))


def true_class(seconds):
    return VIDEO_CLASSES[int(seconds // SECONDS_PER_CLASS)]


def test_collect_from_video_train_and_predict_held_out_frames_live(tmp_path, capsys, video):
    pics = tmp_path / 'pics'
    # the last half second of each class is held out: never collected, predicted live below
    result = run(tmp_path, '--collect', str(pics), '--classes', ','.join(VIDEO_CLASSES),
                 '--source', video, '--ranges', '0-1.5,2-3.5,4-5.5', '--per-class', '8',
                 '--image-size', '64', '--epochs', '12', '--batch-size', '8',
                 '--learning-rate', '0.001', '--val-fraction', '0')
    assert result['collected'] == {name: 8 for name in VIDEO_CLASSES}
    for name in VIDEO_CLASSES:
        assert sorted(os.listdir(pics / name)) == ['%04d.png' % i for i in range(8)]
    assert sorted(os.listdir(tmp_path)) == ['metrics.json', 'out', 'pics']  # no scratch left
    out = capsys.readouterr().out
    assert 'From %s: rock 0-1.5 s, paper 2-3.5 s, scissors 4-5.5 s' % video in out
    # the loss of every batch, 3 batches of 8 per epoch; their mean is the epoch's loss
    losses = [[float(line.split('Loss: ')[1]) for line in out.splitlines()
               if line.startswith('Epoch %d, batch ' % epoch)] for epoch in range(12)]
    assert [len(epoch) for epoch in losses] == [3] * 12
    np.testing.assert_allclose([np.mean(epoch) for epoch in losses],
                               result['history']['loss'], atol=1e-5)

    live = run(tmp_path, '--webcam', video, '--out', str(tmp_path / 'out'))['live']
    frames = live['per_frame']
    assert live['frames'] == len(frames) == FPS * SECONDS_PER_CLASS * len(VIDEO_CLASSES)
    assert [f['seconds'] for f in frames] == [round(i / FPS, 3) for i in range(len(frames))]
    held_out = [f for f in frames if f['seconds'] % SECONDS_PER_CLASS >= 1.5]
    assert len(held_out) == 15
    wrong = [f for f in held_out if f['class'] != true_class(f['seconds'])]
    assert wrong == []
    out = capsys.readouterr().out
    assert '   5.90 s: scissors ' in out  # headless: one printed line per frame
    assert '%s: 60 frames classified: paper ' % video in out


def test_a_video_without_ranges_is_split_evenly(video):
    with capture.Frames(video) as frames:
        assert frames.is_file and frames.fps == FPS and frames.duration == 6
        ranges = capture.even_ranges(frames.duration, 3)
        assert ranges == [(0, 2), (2, 4), (4, 6)]
        chosen = capture.collect_by_time(frames, ranges, 4)
    # instants 0, 0.5, 1, 1.5 of each part: the frames at those times exactly
    assert [[s for s, _ in picked] for picked in chosen] == [
        [t + k * 0.5 for k in range(4)] for t in (0, 2, 4)]
    assert all(frame.shape == (96, 96, 3) for picked in chosen for _, frame in picked)


def test_collect_by_time_takes_a_frame_once_when_frames_are_sparse():
    # instants 0, 0.4, 0.8, 1.2, 1.6 and 3, 3.2, ...: 0.9 serves 0.4 and 0.8 at once, 1.0
    # comes before 1.2, and nothing after 1.0 falls in the first range
    frames = [(t, t) for t in (0.0, 0.9, 1.0, 2.5, 3.1, 9.0)]
    chosen = capture.collect_by_time(iter(frames), [(0, 2), (3, 4)], 5)
    assert [[s for s, _ in picked] for picked in chosen] == [[0.0, 0.9], [3.1]]


def test_collect_adds_after_existing_pictures_and_leaves_no_scratch(tmp_path):
    frames = [np.full((8, 8, 3), v, 'uint8') for v in range(5)]
    capture.write_class_folders(tmp_path / 'pics', {'rock': frames[:3], 'paper': frames[3:]})
    written = capture.write_class_folders(tmp_path / 'pics', {'rock': frames[3:]})
    assert [os.path.basename(p) for p in written['rock']] == ['0003.png', '0004.png']
    assert sorted(os.listdir(tmp_path / 'pics' / 'rock')) == ['%04d.png' % i for i in range(5)]
    assert os.listdir(tmp_path) == ['pics']
    import cv2
    assert cv2.imread(written['rock'][1])[0, 0, 0] == 4  # PNG: the pixels exactly


def test_a_failed_collect_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    import cv2
    frames = [np.full((8, 8, 3), v, 'uint8') for v in range(4)]
    capture.write_class_folders(tmp_path / 'pics', {'rock': frames[:1]})
    real, calls = cv2.imencode, []

    def full_disk_on_third(ext, img):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, 'No space left on device')
        return real(ext, img)
    monkeypatch.setattr(cv2, 'imencode', full_disk_on_third)
    with pytest.raises(utils.UserError, match='No space left on device'):
        capture.write_class_folders(tmp_path / 'pics', {'rock': frames[1:3], 'paper': frames})
    assert os.listdir(tmp_path) == ['pics'] and os.listdir(tmp_path / 'pics') == ['rock']
    assert os.listdir(tmp_path / 'pics' / 'rock') == ['0000.png']


def test_keys_pick_classes():
    assert [capture.key_to_class(k, 3) for k in (ord('1'), ord('3'), ord('4'), ord('q'), 27,
                                                 255, -1)] == [0, 2, None, 'quit', 'quit',
                                                               None, None]


def test_key_presses_add_the_frame_shown_until_q(monkeypatch, capsys):
    import cv2
    keys = iter([-1, ord('2'), ord('1'), ord('2'), ord('7'), ord('q'), ord('1')])
    shown = []
    monkeypatch.setattr(cv2, 'imshow', lambda window, image: shown.append(image))
    monkeypatch.setattr(cv2, 'waitKey', lambda delay: next(keys))
    monkeypatch.setattr(cv2, 'destroyAllWindows', lambda: None)
    frames = [(i / 10, np.full((40, 60, 3), i, 'uint8')) for i in range(10)]
    chosen = capture.collect_by_keys(iter(frames), ['rock', 'paper'])
    assert [[s for s, _ in picked] for picked in chosen] == [[0.2], [0.1, 0.3]]
    assert len(shown) == 6  # the frame after q is never read
    assert not np.array_equal(shown[0], frames[0][1])  # the counts are drawn on what is shown
    assert np.array_equal(chosen[0][0][1], frames[2][1])  # and not on what is kept
    assert '1 rock, 2 paper' in capsys.readouterr().out


def test_no_display_means_no_window(monkeypatch):
    monkeypatch.setattr(capture.sys, 'platform', 'linux')
    monkeypatch.delenv('DISPLAY', raising=False)
    monkeypatch.delenv('WAYLAND_DISPLAY', raising=False)
    assert not capture.has_display()
    monkeypatch.setenv('DISPLAY', ':0')
    assert capture.has_display()


COLLECT = ['--collect', 'PICS', '--classes']


@pytest.mark.parametrize('argv, message', [
    (COLLECT + ['rock'], "'rock': give at least two classes"),
    (COLLECT + ['rock,rock'], "'rock,rock' names a class twice"),
    (COLLECT + ['rock,,paper'], 'give class names separated by commas'),
    (COLLECT + ['a,b', '--ranges', '0-2'], '--ranges gives 1 ranges for 2 classes'),
    (COLLECT + ['a,b', '--ranges', '2-1,3-4'], "'2-1': a range ends after it starts"),
    (COLLECT + ['a,b', '--ranges', '0-2,1-3'], 'the ranges 0-2 and 1-3 overlap'),
    (COLLECT + ['a,b', '--ranges', '0-2,x'], "'x' is not a range of seconds like 0-2"),
    (COLLECT + ['a,b', '--source', 'NOFILE'], 'missing.avi: no such file'),
    (COLLECT + ['a,b', '--source', 'README'], 'README.md cannot be read as a video'),
    (COLLECT + ['a,b', '--source', '-2'], '-2: a camera index is 0 or more'),
    (COLLECT + ['a,b', '--source', '9'], 'no camera: OpenCV cannot open camera 9'),
    (COLLECT + ['a,b', '--source', 'VIDEO', '--ranges', '0-1,7-9'],
     'hands.avi gave no frame for b (60 frames read): give --ranges within it'),
    (['--collect', 'PICS'], '--collect needs the class names'),
    (['--classes', 'a,b'], 'give --collect DIR too'),
    (['--collect', 'PICS', '--images', 'PICS', '--classes', 'a,b'], 'not both'),
    (['--webcam', '-1'], '-1: a camera index is 0 or more'),
    (['--webcam', 'NOFILE'], 'missing.avi: no such file'),
])
def test_bad_collect_and_webcam_values_give_one_line(tmp_path, capfd, video, argv, message):
    from tests.conftest import ROOT
    names = {'PICS': str(tmp_path / 'pics'), 'NOFILE': str(tmp_path / 'missing.avi'),
             'README': os.path.join(ROOT, 'README.md'), 'VIDEO': video}
    (tmp_path / 'pics').mkdir()
    with pytest.raises(SystemExit) as exit_info:
        run(tmp_path, *[names.get(a, a) for a in argv])
    assert exit_info.value.code == 2
    err = capfd.readouterr().err.strip().splitlines()
    # 'custom_classes: error: ...' when argparse refuses the value, 'error: ...' later
    assert len(err) == 1 and 'error: ' in err[0] and message in err[0], err
    assert os.listdir(tmp_path / 'pics') == []  # nothing written
