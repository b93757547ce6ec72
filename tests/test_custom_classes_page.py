"""The custom-classes chapter's page (`--serve`): the real thing in headless Chromium with a
camera made from a generated video (pictures added while each segment plays, Train, live
predictions following the segments, Save for --predict, the camera refused, the server
stopped); the server's refusals through its HTTP API without a browser; and --collect from a
video of equal segments giving equal counts."""
import json
import math
import os
import time
import zipfile

import numpy as np
import pytest

import utils
from benchmarks import custom_classes_page as driver
from bookgen.cdp import Browser
from tests.conftest import chromium_or_skip
from utils.data import capture

TINY = ['--image-size', '32', '--epochs', '1', '--no-progress']


def jpeg(rgb=(200, 30, 30), size=32):
    import cv2
    ok, data = cv2.imencode('.jpg', np.full((size, size, 3), rgb[::-1], np.uint8))
    return data.tobytes()


# %% --collect: equal segments, equal counts

@pytest.fixture(scope='module')
def four_second_segments(tmp_path_factory):
    path = tmp_path_factory.mktemp('video') / 'segments.y4m'
    return str(driver.write_y4m(path, driver.segment_frames(seconds=4), driver.FPS))


def test_collect_gives_equal_segments_equal_counts(tmp_path, capsys, four_second_segments):
    # 12 s at 10 fps cut in three: 40 frames each, and --per-class 40 takes every one. Instants
    # k * 0.1 s used to give 30, 36 and 40 (3 * 0.1 > 0.3 skipped a frame, took the next twice)
    metrics = tmp_path / 'metrics.json'
    utils.run_chapter('chapters.custom_classes', TINY + [
        '--out', str(tmp_path / 'out'), '--metrics-json', str(metrics), '--collect',
        str(tmp_path / 'pics'), '--classes', 'red,green,blue', '--source', four_second_segments,
        '--per-class', '40', '--val-fraction', '0'])
    assert json.loads(metrics.read_text())['collected'] == {'red': 40, 'green': 40, 'blue': 40}
    out = capsys.readouterr().out
    for name in ('red', 'green', 'blue'):
        assert '%s: 40 pictures added (0000.png ... 0039.png)' % name in out
        assert len(os.listdir(tmp_path / 'pics' / name)) == 40


@pytest.mark.parametrize('per_class, expected', [(7, 7), (30, 30), (39, 39), (50, 40)])
def test_a_video_gives_each_segment_the_same_count(four_second_segments, per_class, expected):
    with capture.Frames(four_second_segments) as frames:
        chosen = capture.collect_by_time(frames, capture.even_ranges(frames.duration, 3),
                                         per_class)
    assert [len(picked) for picked in chosen] == [expected] * 3
    for i, picked in enumerate(chosen):  # each from its own segment, each frame once
        seconds = [s for s, _ in picked]
        assert len(set(seconds)) == len(seconds)
        assert all(4 * i <= s < 4 * (i + 1) for s in seconds)
        assert all(int(np.argmax(frame[2, 2, ::-1])) == i for _, frame in picked)


def test_frame_numbers_are_integer_arithmetic():
    assert capture.first_frame_at(0.3, 10) == 3  # 0.3 * 10 == 3.0000000000000004
    assert capture.frame_numbers(0, 4, 10, 40) == list(range(40))
    assert capture.frame_numbers(0.3, 0.7, 10, 4) == [3, 4, 5, 6]
    assert capture.frame_numbers(0, 1, 10, 4) == [0, 2, 5, 7]
    assert capture.frame_numbers(1, 1.05, 10, 3) == [10]
    assert capture.frame_numbers(1.01, 1.05, 10, 3) == []  # no frame shows in it


# %% The server's API without a browser

@pytest.fixture(scope='module')
def three_class_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('model')
    utils.run_chapter('chapters.custom_classes', TINY + [
        '--out', str(tmp / 'out'), '--per-class', '3', '--model-file', str(tmp / 'three.zip')])
    return tmp / 'three.zip'


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    """A page server of two classes whose --model-file the tests may change."""
    tmp = tmp_path_factory.mktemp('server')
    proc, url = driver.start_server(tmp / 'out', '--image-size', '32', '--classes',
                                    'rock,paper', '--model-file', str(tmp / 'model.zip'))
    yield url, tmp / 'model.zip'
    proc.terminate()
    proc.wait(timeout=30)


def refused(url, path, body, status, words):
    got, reply = driver.api(url, path, body)
    assert got == status and words in reply['error'], (got, reply)
    assert len(reply['error'].splitlines()) == 1 and list(reply) == ['error']


def test_bad_requests_get_a_4xx_and_one_line(server):
    url, _ = server
    refused(url, 'api/pictures/0', b'GIF89a not a picture', 415,
            'the body is not a JPEG or PNG picture (20 bytes)')
    refused(url, 'api/pictures/0', b'', 415, 'not a JPEG or PNG picture (0 bytes)')
    refused(url, 'api/pictures/2', jpeg(), 404, 'no class 2: the classes are numbered 0 to 1')
    refused(url, 'api/pictures/-1', jpeg(), 404, 'no POST /api/pictures/-1 here')
    refused(url, 'api/pictures/0/0', None, 404, 'class 0 has 0 pictures: no picture 0')
    refused(url, 'api/classes', b'{"names": ["a", "a"]}', 400, 'two classes have the same')
    refused(url, 'api/classes', b'{"names": ["a"]}', 400, 'a list of 2 class names')
    refused(url, 'api/classes', b'{"names": ["a", " "]}', 400, 'a class name is empty')
    refused(url, 'api/classes', b'names=a,b', 400, 'the body is not JSON')
    refused(url, 'api/train', b'{"epochs": 0}', 400, '"epochs" is 0: give a whole number')
    refused(url, 'api/train', b'{"epochs": "5"}', 400, "\"epochs\" is '5'")
    refused(url, 'api/training?since=x', None, 400, 'since=x: give the number of losses')
    refused(url, 'api/predict', jpeg(), 409, 'no model yet: train it (or load a saved one)')
    refused(url, 'api/save', b'', 409, 'no model yet')
    refused(url, 'api/nothing', None, 404, 'no GET /api/nothing here')
    refused(url, 'index.php', None, 404, 'no GET /index.php here')
    assert driver.api(url, 'api/state')[1]['counts'] == [0, 0]  # nothing was added


def test_train_names_the_classes_without_pictures(server):
    url, _ = server
    refused(url, 'api/train', b'{}', 400, 'no pictures of rock, paper: hold its button while '
                                          'the camera shows it, then train')
    assert driver.api(url, 'api/pictures/0', jpeg())[1] == {'count': 1}
    refused(url, 'api/train', b'{}', 400, 'no pictures of paper: hold its button')
    assert driver.api(url, 'api/training?since=0')[1]['state'] == 'idle'
    import urllib.request
    with urllib.request.urlopen(url + 'api/pictures/0/0') as reply:  # a thumbnail
        assert reply.read() == jpeg()


def test_load_says_what_is_wrong_with_the_model_file(server, three_class_model):
    url, model_file = server
    refused(url, 'api/load', b'', 409, 'no model at %s: train one first' % model_file)
    model_file.write_bytes(b'not a zip')
    refused(url, 'api/load', b'', 409, '%s cannot be read' % model_file)
    model_file.write_bytes(three_class_model.read_bytes())
    refused(url, 'api/load', b'', 409, '%s was trained for 3 classes (crowded, rectangle, '
                                       'triangle); this page has 2: start it with --classes '
                                       'crowded,rectangle,triangle' % model_file)
    assert driver.api(url, 'api/state')[1]['trained'] is False


def test_serve_with_another_mode_gives_one_line(tmp_path, capsys):
    for argv, words in [(['--serve', '0', '--webcam', '0'], '--serve opens the page'),
                        (['--classes', 'a,b'], '--classes names the classes of --collect')]:
        with pytest.raises(SystemExit) as exit_info:
            utils.run_chapter('chapters.custom_classes', argv + ['--out', str(tmp_path)])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(err) == 1 and words in err[0], err


def test_a_port_in_use_is_one_line():
    from utils.display import webcam_page
    first = webcam_page.start(webcam_page.WebcamPage(['a', 'b'], None, 'm.zip', 32, 1))
    try:
        with pytest.raises(utils.UserError, match='port %d is in use: give another port'
                           % first.server_address[1]):
            webcam_page.start(None, first.server_address[1])
    finally:
        first.shutdown()
        first.server_close()


# %% The page in headless Chromium, its camera a generated video

@pytest.fixture(scope='module')
def two_second_segments(tmp_path_factory):
    """The camera's video (red, green, blue, 2 s each) and the segments' mean thumbnails."""
    path = tmp_path_factory.mktemp('camera') / 'segments.y4m'
    frames = driver.segment_frames(seconds=2)
    return str(driver.write_y4m(path, frames, driver.FPS)), driver.thumbnails(frames)


REFUSE_CAMERA = ("navigator.mediaDevices.getUserMedia = () => Promise.reject("
                 "new DOMException('Permission denied', 'NotAllowedError'));")


def test_the_page_in_chromium(tmp_path, capsys, two_second_segments):
    chromium_or_skip()
    video, references = two_second_segments
    epochs, model_file = 20, tmp_path / 'model.zip'  # the text's 20 epochs take ~1 s here
    proc, url = driver.start_server(tmp_path / 'out', '--image-size', '64', '--epochs', '3',
                                    '--model-file', str(model_file))
    try:
        with Browser(flags=driver.camera_flags(video), timeout=60) as browser:
            page = browser.page(width=1000, height=720)
            page.goto(url)
            driver.wait_until(page, 'document.getElementById("video").videoWidth > 0')
            assert page.evaluate('document.getElementById("camera-state").textContent') == \
                'Camera on, 160×120'

            # Train before any picture: the page says which classes have none
            driver.click(page, '#train')
            driver.wait_until(page, 'document.getElementById("message").textContent'
                                    '.includes("no pictures of rock, paper, scissors")')
            assert page.evaluate('document.getElementById("train").disabled') is False
            page.mark = len(browser.events)  # the 400 above is logged as a failed resource

            # a class renamed in its box
            page.evaluate('(() => { const i = document.querySelector("#classes input");'
                          ' i.value = "red"; i.dispatchEvent(new Event("change")); })()')
            for _ in range(100):
                classes = driver.api(url, 'api/state')[1]['classes']
                if classes[0] != 'rock':
                    break
                time.sleep(0.05)
            assert classes == ['red', 'paper', 'scissors']

            # each button held while its segment plays
            held = driver.hold_during_segments(page, references, start_after=0.2, hold=1)
            assert held == {0: 0, 1: 1, 2: 2}  # released before the segment ended
            counts = driver.api(url, 'api/state')[1]['counts']
            assert min(counts) >= 3, counts
            thumbnails = page.evaluate(
                'Array.from(document.querySelectorAll("#classes .thumbs")).map(t => '
                'Array.from(t.children).filter(i => i.complete && i.naturalWidth).length)')
            assert thumbnails == [min(n, 5) for n in counts]

            # Train (the epochs of the page's box): disabled while it runs, the loss of every
            # batch, then predictions
            assert page.evaluate('document.getElementById("epochs").value') == '3'
            page.evaluate('document.getElementById("epochs").value = "%d"' % epochs)
            page.evaluate(driver.WATCH_TRAINING_JS)
            driver.click(page, '#train')
            driver.wait_until(page, 'document.getElementById("predictions").dataset.count >= 1',
                              timeout=120)
            seen = page.evaluate('window.seenTraining')
            assert seen['disabled'] and seen['losses'], seen
            batches = math.ceil(sum(counts) / 24)
            assert seen['losses'][-1].endswith('(epoch %d of %d, batch %d)'
                                               % (epochs, epochs, batches))
            assert page.evaluate('document.getElementById("train").disabled') is False
            training = driver.api(url, 'api/training?since=0')[1]
            assert training['state'] == 'trained' and training['batches'] == epochs * batches

            # the live prediction follows the segments
            pairs = driver.predictions_against_segments(page, references, 7)
            assert {shown for shown, _ in pairs} == {0, 1, 2}, pairs
            assert [p for p in pairs if p[0] != p[1]] == [], pairs
            assert page.errors() == []
            assert all(r.startswith(url) or r.startswith('data:') for r in page.requests())

            # Save: the file --predict reads
            driver.click(page, '#save')
            driver.wait_until(page, 'document.getElementById("message").textContent'
                                    '.startsWith("Saved to %s")' % model_file)
            with zipfile.ZipFile(str(model_file)) as zf:
                assert json.loads(zf.read('meta.json'))['classes'] == [
                    'red', 'paper', 'scissors']
            blue = tmp_path / 'blue.png'
            blue.write_bytes(png(driver.segment_frames(seconds=1)[-1]))
            utils.run_chapter('chapters.custom_classes', [
                '--predict', str(blue), '--model-file', str(model_file), '--out',
                str(tmp_path / 'predict'), '--no-progress'])
            assert '%s: scissors (probability' % blue in capsys.readouterr().out
            driver.click(page, '#load')
            driver.wait_until(page, 'document.getElementById("message").textContent'
                                    '.startsWith("Loaded %s: red, paper, scissors")'
                                    % model_file)

            # a page whose camera permission is refused says so (a second tab: the first one,
            # in the background, gets no animation frames until it is brought back)
            refused = browser.page(width=1000, height=720)
            refused.send('Page.addScriptToEvaluateOnNewDocument', {'source': REFUSE_CAMERA})
            refused.goto(url)
            driver.wait_until(refused, 'document.getElementById("message").textContent'
                                       '.includes("permission to use the camera was refused")')
            assert refused.evaluate('Array.from(document.querySelectorAll("#classes button"))'
                                    '.every(b => b.disabled)')
            page.send('Page.bringToFront')
            count = page.evaluate(driver.PREDICTION_JS)['count']
            driver.wait_until(page, 'document.getElementById("predictions").dataset.count > %d'
                              % count)

            # the server stops: the predicting page says so
            proc.terminate()
            proc.wait(timeout=30)
            driver.wait_until(page, 'document.getElementById("message").textContent'
                                    '.includes("does not answer")', timeout=20)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def png(rgb):
    import cv2
    return cv2.imencode('.png', np.ascontiguousarray(rgb[:, :, ::-1]))[1].tobytes()
