"""Pictures from a camera or a video file (OpenCV), and the class folders collected from them.

    frames = Frames(source)                    # a camera index (0) or a video file's path
    for seconds, frame in frames: ...          # BGR uint8 frames; a file ends at its end
    chosen = collect_by_time(frames, ranges, per_class)   # frames of each class's seconds
    write_class_folders('pics', {'rock': [...], 'paper': [...]})  # pics/rock/0000.png ...

A frame's time is its index divided by the frame rate for a file (so a run gives the same
frames every time, and a file's frames are chosen by number, in integers), and the seconds
since the first frame for a camera. The folder written is
the layout `utils.image_folder` reads: one sub-folder per class.
"""
import argparse
import math
import os
import re
import shutil
import sys
import tempfile
import time

from ..cli import readable_file
from ..errors import UserError, one_line

KEYS_HELP = "press a class's number to add the picture shown, q when done"


# %% Command-line types: argparse turns their ArgumentTypeError into one line.

def video_source(text):
    """A camera index (0, 1, ...) or a video file that exists."""
    if re.fullmatch(r'-?\d+', text.strip()):
        index = int(text)
        if index < 0:
            raise argparse.ArgumentTypeError('%d: a camera index is 0 or more (or give a video '
                                             'file)' % index)
        return index
    return readable_file(text)


def class_names(text):
    """Two or more distinct class names, comma-separated, each usable as a folder name."""
    names = [name.strip() for name in text.split(',')]
    for name in names:
        if not name or name.startswith('.') or os.sep in name or '/' in name:
            raise argparse.ArgumentTypeError(
                '%r: give class names separated by commas, like rock,paper,scissors (a name '
                'becomes a folder: no slash, not empty, not starting with a dot)' % text)
    if len(names) < 2:
        raise argparse.ArgumentTypeError('%r: give at least two classes' % text)
    if len(set(names)) < len(names):
        raise argparse.ArgumentTypeError('%r names a class twice' % text)
    return names


_RANGE = re.compile(r'\s*(\d+(?:\.\d*)?)\s*-\s*(\d+(?:\.\d*)?)\s*')


def time_ranges(text):
    """Ranges of seconds, comma-separated ('0-2,2-4,4-6'), each start before its end, none
    overlapping another (a frame would belong to two classes)."""
    ranges = []
    for piece in text.split(','):
        match = _RANGE.fullmatch(piece)
        if not match:
            raise argparse.ArgumentTypeError('%r is not a range of seconds like 0-2 (in %r)'
                                             % (piece, text))
        start, end = float(match.group(1)), float(match.group(2))
        if not end > start:
            raise argparse.ArgumentTypeError('%r: a range ends after it starts' % piece.strip())
        ranges.append((start, end))
    ordered = sorted(ranges)
    for (a, b), (c, d) in zip(ordered, ordered[1:]):
        if c < b:
            raise argparse.ArgumentTypeError('the ranges %g-%g and %g-%g overlap: a frame would '
                                             'go to two classes' % (a, b, c, d))
    return ranges


# %% Frames

def describe(source):
    return 'camera %d' % source if isinstance(source, int) else source


class Frames:
    """The (seconds, BGR frame) of a camera or a video file, opened at once (one line when it
    cannot be). A camera that stops sending is an error; a file just ends."""

    def __init__(self, source):
        import cv2
        os.environ.setdefault('OPENCV_FFMPEG_LOGLEVEL', '-8')  # quiet: damage is told below
        if hasattr(cv2, 'setLogLevel'):
            cv2.setLogLevel(0)
        self.source, self.is_file = source, not isinstance(source, int)
        self._capture = cv2.VideoCapture(source)
        if not self._capture.isOpened():
            self._capture.release()
            if self.is_file:
                raise UserError('%s cannot be read as a video: give a video file OpenCV '
                                'reads (.avi, .mp4, ...) or a camera index' % source)
            raise UserError('no camera: OpenCV cannot open camera %d on this machine; give '
                            'another index, or a video file' % source)
        self.fps = self._capture.get(cv2.CAP_PROP_FPS) if self.is_file else None
        count = self._capture.get(cv2.CAP_PROP_FRAME_COUNT) if self.is_file else 0
        if self.is_file and not (self.fps and self.fps > 0):
            self.close()
            raise UserError('%s: OpenCV cannot tell its frame rate, so not the time of each '
                            'frame: convert it to .mp4 or .avi' % source)
        # None when unknown (some containers do not say): reading then goes to the end
        self.duration = count / self.fps if self.is_file and count > 0 else None
        self.frames_read = 0

    def __iter__(self):
        start = None
        while True:
            ok, frame = self._capture.read()
            if not ok:
                if self.is_file:
                    return
                raise UserError('%s stopped sending pictures' % describe(self.source))
            if self.is_file:
                seconds = self.frames_read / self.fps
            else:
                start = time.monotonic() if start is None else start
                seconds = time.monotonic() - start
            self.frames_read += 1
            yield seconds, frame

    def close(self):
        self._capture.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def has_display():
    """Whether an OpenCV window can open. Without one, the Qt of opencv-python aborts the
    whole process in `imshow` (no exception to catch), so this is asked first."""
    if sys.platform.startswith('linux'):
        return bool(os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY'))
    return True


# %% Choosing the frames of each class

def even_ranges(duration, count):
    """`count` ranges of equal length covering [0, duration)."""
    step = duration / count
    return [(i * step, (i + 1) * step) for i in range(count)]


def sample_times(start, end, count):
    """`count` instants evenly spread over [start, end): the starts of equal slices."""
    step = (end - start) / count
    return [start + k * step for k in range(count)]


def first_frame_at(seconds, fps):
    """The number of a video's first frame at or after `seconds` (frame n shows at n / fps).
    Rounded to a millionth of a frame first: 0.3 * 10 is 3.0000000000000004, not 3."""
    return math.ceil(round(seconds * fps, 6))


def frame_numbers(start, end, fps, count):
    """Up to `count` frame numbers spread evenly over the frames of [start, end) seconds of
    a video at `fps`, in integers: a range of n frames gives min(count, n) distinct frames."""
    first = first_frame_at(start, fps)
    frames = first_frame_at(end, fps) - first
    return sorted({first + k * frames // count for k in range(count)}) if frames > 0 else []


def collect_by_time(frames, ranges, per_class, on_new_range=None):
    """Up to `per_class` frames inside each range. A video file (`frames.fps` known) gives
    the frames numbered by `frame_numbers`; a camera, whose frames come when they come, the
    first frame at or after each of `per_class` evenly spread instants (a frame once, so a
    slow camera gives fewer). Returns one list of (seconds, frame) per range; reading stops
    after the last range. `on_new_range(i)` is called when the frames enter range i (a
    camera's user then shows class i)."""
    fps = getattr(frames, 'fps', None)
    if fps:  # in frame numbers: a file's seconds are number / fps, and round() undoes that
        spans = [(first_frame_at(start, fps), first_frame_at(end, fps)) for start, end in ranges]
        wanted = [set(frame_numbers(start, end, fps, per_class)) for start, end in ranges]
    else:
        spans = ranges
        wanted = [sample_times(start, end, per_class) for start, end in ranges]
    chosen = [[] for _ in ranges]
    last_end, current = max(end for _, end in spans), None
    for seconds, frame in frames:
        at = round(seconds * fps) if fps else seconds
        if at >= last_end:
            break
        for i, (start, end) in enumerate(spans):
            if not start <= at < end:
                continue
            if i != current and on_new_range:
                on_new_range(i)
            current = i
            if fps:
                if at in wanted[i]:
                    chosen[i].append((seconds, frame))
                continue
            times = wanted[i]
            if times and times[0] <= seconds:
                chosen[i].append((seconds, frame))
                while times and times[0] <= seconds:
                    times.pop(0)
    return chosen


def key_to_class(key, count):
    """The class index a key code picks ('1' is the first class), 'quit', or None."""
    key &= 0xFF
    if key in (ord('q'), 27):  # q or Esc
        return 'quit'
    if ord('1') <= key <= ord('9') and key - ord('1') < count:
        return key - ord('1')
    return None


def collect_by_keys(frames, classes, window='collect (q when done)'):
    """Show each frame; a class's number key adds the frame shown (held down, a burst), q ends.
    Returns one list of (seconds, frame) per class."""
    import cv2
    chosen = [[] for _ in classes]
    print(KEYS_HELP + ': ' + ', '.join('%d %s' % (i + 1, name)
                                       for i, name in enumerate(classes)))
    try:
        for seconds, frame in frames:
            shown = frame.copy()
            text = '  '.join('%d %s: %d' % (i + 1, name, len(chosen[i]))
                             for i, name in enumerate(classes))
            cv2.putText(shown, text, (10, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 0), 2)
            cv2.imshow(window, shown)
            picked = key_to_class(cv2.waitKey(1), len(classes))
            if picked == 'quit':
                break
            if picked is not None:
                chosen[picked].append((seconds, frame))
    finally:
        cv2.destroyAllWindows()
    return chosen


# %% Writing the class folders

_NUMBERED = re.compile(r'(\d+)\.png')


def next_number(folder):
    """One more than the highest NNNN.png in `folder` (0 for a new folder): new pictures are
    added after those already there, never over them."""
    if not os.path.isdir(folder):
        return 0
    numbers = [int(m.group(1)) for m in map(_NUMBERED.fullmatch, os.listdir(folder)) if m]
    return max(numbers) + 1 if numbers else 0


def write_class_folders(root, frames_by_class):
    """Write each class's BGR frames as root/<class>/NNNN.png, after what is there; return
    {class: [paths written]}.

    Every picture is first encoded into a scratch folder beside `root`; only when all are
    written do they take their places (a new class folder by one rename, others file by
    file), so a full disk or an interruption leaves `root` as it was.
    """
    import cv2
    root = os.path.abspath(root)
    os.makedirs(root, exist_ok=True)
    for name in frames_by_class:
        target = os.path.join(root, name)
        if os.path.exists(target) and not os.path.isdir(target):
            raise UserError('%s is a file: the pictures of class %r go in a folder of that name;'
                            ' move the file away' % (target, name))
    staging = tempfile.mkdtemp(dir=os.path.dirname(root),
                               prefix='.%s.collect-' % os.path.basename(root))
    try:
        names = {}
        for name, frames in frames_by_class.items():
            folder = os.path.join(staging, name)
            os.makedirs(folder)
            first = next_number(os.path.join(root, name))
            names[name] = ['%04d.png' % (first + i) for i in range(len(frames))]
            for frame, file_name in zip(frames, names[name]):
                ok, png = cv2.imencode('.png', frame)
                if not ok:
                    raise UserError('OpenCV could not encode a frame of class %r as PNG' % name)
                with open(os.path.join(folder, file_name), 'wb') as f:
                    f.write(png.tobytes())
        for name in frames_by_class:
            folder, target = os.path.join(staging, name), os.path.join(root, name)
            if not os.path.exists(target):
                os.replace(folder, target)
            else:
                for file_name in names[name]:
                    os.replace(os.path.join(folder, file_name), os.path.join(target, file_name))
    except OSError as err:
        raise UserError('cannot write the pictures into %s (%s): free some space or give '
                        'another folder' % (root, one_line(err))) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {name: [os.path.join(root, name, f) for f in names[name]] for name in names}
