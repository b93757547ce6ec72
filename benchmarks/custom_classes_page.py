"""The custom-classes page driven end to end in headless Chromium with a camera made from a
video file: the time of every step, and optionally a screenshot.

    python -m benchmarks.custom_classes_page [--camera colours|photos] [--epochs 20]
        [--image-size 224] [--screenshot docs/images/custom_classes_page.png]

The camera plays a generated video of three segments in a loop: `colours`, a red, a green and
a blue field with a white disc and a dark bar at new places in every frame (2 s each at
10 fps); `photos`, scikit-image's photos of a cat, a cup and a rocket as a hand-held camera
would see them (3 s each). The script starts `python -m chapters.custom_classes --serve 0`,
opens the page with Chromium's fake camera playing the video (a .y4m file), names the
classes, holds each class's button while its segment plays, trains, and reads the live
predictions against the segment shown (the nearest of the segments' mean 4x3 thumbnails).
It prints the seconds of each step and how many predictions matched.
tests/test_custom_classes_page.py drives the page with the same functions.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from bookgen.cdp import Browser  # noqa: E402

FPS, SEGMENT_SECONDS = 10, 2
COLOURS = ('red', 'green', 'blue')  # the segments, in order; class i is segment i


# %% The camera: a YUV4MPEG2 file (Chromium's --use-file-for-fake-video-capture plays it)

def write_y4m(path, frames, fps):
    """RGB uint8 frames (all H x W x 3, H and W even) as a 4:2:0 .y4m video, full-range BT.601
    (the C420jpeg the header names): numpy only, no video library."""
    height, width = frames[0].shape[:2]
    with open(path, 'wb') as f:
        f.write(b'YUV4MPEG2 W%d H%d F%d:1 Ip A1:1 C420jpeg\n' % (width, height, fps))
        for frame in frames:
            r, g, b = (frame[:, :, c].astype(np.float32) for c in range(3))
            y = 0.299 * r + 0.587 * g + 0.114 * b
            u = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
            v = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
            halves = [p.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3)) for p in (u, v)]
            f.write(b'FRAME\n')
            for plane in [y] + halves:
                f.write(np.clip(np.round(plane), 0, 255).astype(np.uint8).tobytes())
    return path


def segment_frames(seconds=SEGMENT_SECONDS, fps=FPS, width=160, height=120, seed=0):
    """Three segments: a red, a green, a blue field, each frame with a white disc and a dark
    bar at random places (the pictures of a class differ, as a hand moves)."""
    rng = np.random.RandomState(seed)
    rgb = {'red': (220, 30, 30), 'green': (30, 170, 40), 'blue': (40, 60, 220)}
    yy, xx = np.mgrid[:height, :width]
    frames = []
    for name in COLOURS:
        for _ in range(seconds * fps):
            frame = np.empty((height, width, 3), np.uint8)
            frame[:] = rgb[name]
            cx, cy = rng.randint(30, width - 30), rng.randint(30, height - 30)
            frame[(xx - cx) ** 2 + (yy - cy) ** 2 < rng.randint(8, 18) ** 2] = 255
            bx, by = rng.randint(20, width - 40), rng.randint(20, height - 20)
            frame[by:by + 6, bx:bx + 24] = 40
            frames.append(frame)
    return frames


PHOTOS = ('chelsea', 'coffee', 'rocket')  # scikit-image's sample photos: a cat, a cup, a rocket


def photo_frames(seconds=3, fps=FPS, width=320, height=240, seed=0):
    """A camera-like video of three photos, one segment each: the view drifts and zooms a
    little, the light changes, the sensor adds noise."""
    import cv2
    import skimage.data
    rng = np.random.RandomState(seed)
    frames = []
    for name in PHOTOS:
        photo = getattr(skimage.data, name)()[:, :, :3]
        h, w = photo.shape[:2]
        x, y, zoom = 0.5, 0.5, 0.85
        for _ in range(seconds * fps):
            x, y = np.clip([x + rng.normal(0, 0.03), y + rng.normal(0, 0.03)], 0.3, 0.7)
            zoom = float(np.clip(zoom + rng.normal(0, 0.02), 0.7, 0.95))
            ch = int(min(h, w * height / width) * zoom)
            cw = int(ch * width / height)
            top, left = int((h - ch) * y), int((w - cw) * x)
            view = cv2.resize(photo[top:top + ch, left:left + cw], (width, height),
                              interpolation=cv2.INTER_AREA).astype(np.float32)
            view = view * rng.uniform(0.85, 1.15) + rng.normal(0, 4, view.shape)
            frames.append(np.clip(view, 0, 255).astype(np.uint8))
    return frames


def thumbnails(frames, segments=3):
    """The mean 4x3 thumbnail of each segment: what segment_shown compares the camera with."""
    import cv2
    small = np.array([cv2.resize(f, (4, 3), interpolation=cv2.INTER_AREA) for f in frames],
                     np.float32)
    return small.reshape(segments, -1, 3, 4, 3).mean(axis=1)


# %% The server

def start_server(out, *extra, timeout=120):
    """`python -m chapters.custom_classes --serve 0 ...` in its own process, its output in
    OUT.log (a file, not a pipe nobody reads): (process, url)."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    log_path = str(out) + '.log'
    with open(log_path, 'w') as log:
        proc = subprocess.Popen([sys.executable, '-m', 'chapters.custom_classes', '--serve',
                                 '0', '--out', str(out), '--no-progress'] + list(extra),
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(log_path) as log:
            found = re.search(r'(http://127\.0\.0\.1:\d+/)', log.read())
        if found:
            return proc, found.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    with open(log_path) as log:
        raise RuntimeError('the server did not start:\n' + log.read())


def api(url, path, body=None):
    """(status, JSON reply) of one request to the page's server."""
    request = urllib.request.Request(url + path.lstrip('/'), data=body,
                                     method='GET' if body is None else 'POST')
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.loads(reply.read().decode())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read().decode())


# %% The page in Chromium

def camera_flags(video):
    return ['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
            '--use-file-for-fake-video-capture=' + str(video), '--autoplay-policy='
            'no-user-gesture-required']


THUMBNAIL_JS = '''(() => {
  const v = document.getElementById('video');
  if (!v.videoWidth) return null;
  const c = document.createElement('canvas');
  c.width = 4;
  c.height = 3;
  const g = c.getContext('2d');
  g.drawImage(v, 0, 0, 4, 3);
  return Array.from(g.getImageData(0, 0, 4, 3).data).filter((_, i) => i % 4 < 3);
})()'''


def segment_shown(page, references):
    """The index of the segment the camera shows: the nearest of the segments' mean 4x3
    thumbnails (`thumbnails`), or None before the camera plays."""
    small = page.evaluate(THUMBNAIL_JS)
    if small is None:
        return None
    small = np.array(small, np.float32).reshape(3, 4, 3)
    return int(np.argmin([np.abs(small - ref).mean() for ref in references]))


def wait_until(page, expression, timeout=30, every=0.05):
    deadline = time.time() + timeout
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.time() > deadline:
            raise TimeoutError('waited %d s for %s' % (timeout, expression))
        time.sleep(every)


def centre(page, selector):
    box = page.evaluate('(() => { const r = document.querySelector(%s).getBoundingClientRect();'
                        ' return [r.x + r.width / 2, r.y + r.height / 2]; })()'
                        % json.dumps(selector))
    return box


def mouse(page, kind, x, y):
    page.send('Input.dispatchMouseEvent', {'type': kind, 'x': x, 'y': y, 'button': 'left',
                                           'buttons': 1 if kind == 'mousePressed' else 0,
                                           'clickCount': 1})


def click(page, selector):
    x, y = centre(page, selector)
    mouse(page, 'mouseMoved', x, y)
    mouse(page, 'mousePressed', x, y)
    mouse(page, 'mouseReleased', x, y)


def add_button(i):
    return '#classes .class:nth-child(%d) button' % (i + 1)


def hold_during_segments(page, references, start_after=0.3, hold=1.2, timeout=30):
    """Hold class i's button inside segment i for `hold` seconds, from `start_after` seconds
    after the segment begins, for the three segments as they come. Returns the segments
    seen at each release (all the same as the one held, or the video moved on meanwhile)."""
    deadline = time.time() + timeout
    last, held = segment_shown(page, references), {}
    while len(held) < len(COLOURS):
        shown = segment_shown(page, references)
        if time.time() > deadline:
            raise TimeoutError('the camera showed no new segment for %d s' % timeout)
        if shown is None or shown == last or shown in held:
            last = shown
            time.sleep(0.03)
            continue
        last = shown
        time.sleep(start_after)  # well inside the segment
        x, y = centre(page, add_button(shown))
        mouse(page, 'mouseMoved', x, y)
        mouse(page, 'mousePressed', x, y)
        time.sleep(hold)
        after = segment_shown(page, references)
        mouse(page, 'mouseReleased', x, y)
        held[shown] = after
    return held


WATCH_TRAINING_JS = '''(() => {
  window.seenTraining = {disabled: false, losses: []};
  new MutationObserver(() => {
    if (document.getElementById('train').disabled) window.seenTraining.disabled = true;
    const loss = document.getElementById('loss').textContent;
    const seen = window.seenTraining.losses;
    if (loss.startsWith('Loss') && seen[seen.length - 1] !== loss) seen.push(loss);
  }).observe(document.body, {subtree: true, childList: true, characterData: true,
                             attributes: true});
  return true;
})()'''

PREDICTION_JS = '''(() => {
  const rows = Array.from(document.querySelectorAll('#classes .class'));
  return {count: Number(document.getElementById('predictions').dataset.count || 0),
          marked: rows.map((r, i) => r.classList.contains('predicted') ? i : -1)
                      .filter(i => i >= 0)};
})()'''


def predictions_against_segments(page, references, seconds):
    """For `seconds`: (segment shown, class marked) for predictions whose frame was taken
    while one segment was shown from before to after (the segment read, two predictions
    awaited so the second's frame comes after the read, the segment read again)."""
    pairs, deadline = [], time.time() + seconds
    while time.time() < deadline:
        before = segment_shown(page, references)
        count = page.evaluate(PREDICTION_JS)['count']
        wait_until(page, 'Number(document.getElementById("predictions").dataset.count || 0)'
                   ' >= %d' % (count + 2), timeout=30, every=0.02)
        now = page.evaluate(PREDICTION_JS)
        after = segment_shown(page, references)
        if before == after and len(now['marked']) == 1:
            pairs.append((before, now['marked'][0]))
    return pairs


def rename(page, names):
    """Type new class names into the page's boxes (each box's change event)."""
    page.evaluate('''(() => { const names = %s;
        document.querySelectorAll("#classes input").forEach((box, i) => {
            box.value = names[i]; box.dispatchEvent(new Event("change")); }); })()'''
                  % json.dumps(names))


def run(frames, names, out, epochs, image_size, hold, screenshot=None, say=print):
    """The whole flow on a camera playing `frames`; returns the seconds of each step and
    what was seen."""
    times, start = {}, time.time()

    def step(name, since):
        times[name] = round(time.time() - since, 2)
        say('%-40s %6.2f s' % (name, times[name]))
        return time.time()

    video = write_y4m(str(out) + '-camera.y4m', frames, FPS)
    references = thumbnails(frames)
    proc, url = start_server(out, '--image-size', str(image_size), '--epochs', str(epochs))
    try:
        t = step('server up', start)
        with Browser(flags=camera_flags(video), timeout=60) as browser:
            page = browser.page(width=1000, height=580)
            page.goto(url)
            wait_until(page, 'document.getElementById("video").videoWidth > 0')
            rename(page, names)
            for _ in range(200):
                if api(url, 'api/state')[1]['classes'] == names:
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError('the page did not rename the classes to %s' % names)
            t = step('browser up, camera on, classes named', t)
            held = hold_during_segments(page, references, hold=hold)
            time.sleep(0.3)  # the last uploads
            counts = api(url, 'api/state')[1]['counts']
            t = step('pictures added %s' % counts, t)
            page.evaluate(WATCH_TRAINING_JS)
            click(page, '#train')
            wait_until(page, 'document.getElementById("predictions").dataset.count >= 1',
                       timeout=300)
            t = step('trained %d epochs, first prediction' % epochs, t)
            pairs = predictions_against_segments(page, references,
                                                 len(frames) / FPS + 1)
            agree = sum(shown == marked for shown, marked in pairs)
            t = step('%d of %d predictions agree' % (agree, len(pairs)), t)
            if screenshot:
                with open(screenshot, 'wb') as f:
                    f.write(page.screenshot())
            result = {'times': times, 'counts': counts, 'held': held, 'pairs': pairs,
                      'errors': page.errors(), 'url': url}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    times['total'] = round(time.time() - start, 2)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--camera', choices=('colours', 'photos'), default='colours',
                        help='colours: red, green, blue fields, 2 s each; photos: three '
                             'photos seen by a moving camera, 3 s each')
    parser.add_argument('--epochs', type=int, default=20)
    parser.add_argument('--image-size', type=int, default=224)
    parser.add_argument('--hold', type=float, default=1.2,
                        help='seconds each class button is held')
    parser.add_argument('--screenshot', help='save the page, after training, as this PNG')
    args = parser.parse_args(argv)
    if args.camera == 'photos':
        frames, names = photo_frames(), ['cat', 'cup', 'rocket']
    else:
        frames, names = segment_frames(), list(COLOURS)
    print('load average %.2f %.2f %.2f; OMP_NUM_THREADS=%s' % (
        os.getloadavg() + (os.environ.get('OMP_NUM_THREADS'),)))
    with tempfile.TemporaryDirectory(prefix='page-') as tmp:
        result = run(frames, names, os.path.join(tmp, 'out'), args.epochs, args.image_size,
                     args.hold, args.screenshot)
    load = os.getloadavg()
    print('total %.2f s; load average %.2f %.2f %.2f' % ((result['times']['total'],) + load))
    if result['errors']:
        print('page errors: %s' % result['errors'])
    if args.screenshot:
        print('screenshot: %s' % args.screenshot)


if __name__ == '__main__':
    main()
