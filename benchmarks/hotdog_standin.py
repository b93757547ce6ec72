"""A stand-in for hotdog.zip with the real layout and size, to time the online path offline.

    python -m benchmarks.hotdog_standin OUT_DIR [--train 1000] [--test 400] [--seed 0]

writes OUT_DIR/hotdog.zip (stored, not compressed, like the real archive's PNGs) holding
hotdog/{train,test}/{hotdog,not-hotdog}/*.png: 1000 + 1000 training and 400 + 400 test
pictures of 250 to 500 pixels a side, and prints its sha1. Serve it and run a chapter on it:

    (cd OUT_DIR && python -m http.server 8765 --bind 127.0.0.1) &
    python -m chapters.fine_tuning --quick --dataset hotdog --model mobilenetv2_1.0 \\
        --data-dir /tmp/hotdog-data --data-url http://127.0.0.1:8765/hotdog.zip \\
        --data-sha1 <printed sha1>

The pictures are synthetic (a sausage-like shape in a bun for `hotdog`, round plates of other
colours for `not-hotdog`, over smooth backgrounds with mild noise): what is measured is
the time of decoding, resizing and training at the real size, not what the net learns.
"""
import argparse
import io
import os
import sys
import zipfile

import numpy as np

from utils.files import atomic_path, file_digest

CLASSES = ('hotdog', 'not-hotdog')


def picture(rng, cls):
    """One HxWx3 uint8 picture, 250-500 pixels a side."""
    h, w = rng.randint(250, 501, size=2)
    yy, xx = np.mgrid[0:h, 0:w].astype('float32')
    base = rng.uniform(60, 200, size=3)
    slope = rng.uniform(-0.2, 0.2, size=(2, 3))
    img = base + yy[..., None] * slope[0] + xx[..., None] * slope[1]
    cy, cx = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w
    if cls == 0:  # an elongated bun with a darker sausage, at a random angle
        angle = rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        length = rng.uniform(0.3, 0.45) * min(h, w)
        img[(u / length) ** 2 + (v / (0.3 * length)) ** 2 < 1] = rng.uniform(
            [190, 140, 70], [240, 190, 110])
        img[(u / (1.1 * length)) ** 2 + (v / (0.12 * length)) ** 2 < 1] = rng.uniform(
            [140, 40, 20], [190, 80, 50])
    else:  # a round plate with blobs of food of any colour
        r = rng.uniform(0.25, 0.4) * min(h, w)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(200, 255, size=3)
        for _ in range(rng.randint(2, 6)):
            by, bx = cy + rng.uniform(-0.6, 0.6) * r, cx + rng.uniform(-0.6, 0.6) * r
            br = rng.uniform(0.1, 0.3) * r
            img[(yy - by) ** 2 + (xx - bx) ** 2 < br * br] = rng.uniform(0, 255, size=3)
    img += rng.normal(scale=1.5, size=(h, w, 3))
    return np.clip(img, 0, 255).astype('uint8')


def png_bytes(array):
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format='PNG')
    return buf.getvalue()


def make_standin(out_dir, train=1000, test=400, seed=0):
    """Write out_dir/hotdog.zip (temp file, then renamed); return (path, sha1)."""
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.RandomState(seed)
    path = os.path.join(out_dir, 'hotdog.zip')
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, 'w', compression=zipfile.ZIP_STORED) as zf:
            for split, count in (('train', train), ('test', test)):
                for cls, name in enumerate(CLASSES):
                    for i in range(count):
                        zf.writestr('hotdog/%s/%s/%d.png' % (split, name, i),
                                    png_bytes(picture(rng, cls)))
    return path, file_digest(path, 'sha1')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('out_dir')
    p.add_argument('--train', type=int, default=1000, help='training pictures per class')
    p.add_argument('--test', type=int, default=400, help='test pictures per class')
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    if args.train < 1 or args.test < 1:
        p.error('--train and --test must be at least 1')
    path, sha1 = make_standin(args.out_dir, args.train, args.test, args.seed)
    print('%s: %.0f MB, sha1 %s' % (path, os.path.getsize(path) / 1e6, sha1))
    return path, sha1


if __name__ == '__main__':
    sys.exit(main() and 0)
