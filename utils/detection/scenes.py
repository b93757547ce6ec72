"""Synthetic detection scenes: one target shape among noise circles and lines, on white.

The port of tfjs-examples' simple-object-detection `synthetic_images.js`:

- a 224x224 RGB scene on a white background;
- one target: an equilateral triangle (side 50-100 px, rotated 0-120 degrees) or a rectangle
  (width and height 40-100 px, independent);
- noise: 10 circles (radius 5-20 px, filled) and 10 line segments (1-3 px wide); half of them
  are drawn before the target and half after, so noise can cover part of the target;
- every colour channel of every object is uniform over 0-255.

The label of a scene is `[is_rectangle, left, right, top, bottom]` in pixels, as floats: the
target's exact box in continuous coordinates, where pixel (row i, column j) covers
[j, j + 1) x [i, i + 1). A pixel is painted when its centre lies inside the shape, so the
painted pixels of a target span columns round(left) .. round(right) - 1.

Two choices differ from the JavaScript original, on purpose:

- Targets are kept inside the canvas: the size and rotation are drawn first, then the
  position uniformly among those that fit. (The original lets about half the targets reach
  past the edge and labels them with boxes outside the canvas.) So every label lies in
  [0, 224] and describes what is visible.
- Rectangles are drawn with the width and height they are labelled with (the original swaps
  them when drawing).

Scenes are deterministic: scene number `i` of seed `s` depends only on (s, i), so
`make_scenes(1000, seed=s)` is the same as `make_scenes(500, seed=s)` followed by
`make_scenes(500, seed=s, start=500)`. That lets a caller generate large sets in chunks.

    images, labels = make_scenes(2000, seed=0)              # uint8 (2000, 224, 224, 3), (2000, 5)
    images, labels = make_scenes(100, kinds=('rectangle',))  # only rectangles
"""
import math

import numpy as np

CANVAS_SIZE = 224
KINDS = ('triangle', 'rectangle')
NUM_CIRCLES = 10
NUM_LINES = 10

RECT_SIDE = (40, 100)
TRIANGLE_SIDE = (50, 100)
CIRCLE_RADIUS = (5, 20)
LINE_WIDTH = (1, 3)


class _Uniforms:
    """All the random numbers of one scene drawn in a single call, handed out in order."""

    def __init__(self, rng, count=256):
        self._u = rng.random(count)
        self._i = 0

    def uniform(self, low=0.0, high=1.0, size=None):
        k = 1 if size is None else size
        if self._i + k > len(self._u):
            raise RuntimeError('scene needs more random numbers than reserved')
        u = low + (high - low) * self._u[self._i:self._i + k]
        self._i += k
        return float(u[0]) if size is None else u

    def colour(self):
        return np.minimum(self.uniform(0, 256, size=3), 255).astype(np.uint8)


def _span(low, high, limit):
    """Pixel indices whose centre j + 0.5 lies in [low, high), clipped to [0, limit)."""
    return max(0, math.ceil(low - 0.5)), min(limit, max(0, math.ceil(high - 0.5)))


def _draw_circle(img, u):
    size = img.shape[0]
    cx, cy = u.uniform(0, size, size=2)
    radius = u.uniform(*CIRCLE_RADIUS)
    colour = u.colour()
    c0, c1 = _span(cx - radius, cx + radius + 1, size)
    r0, r1 = _span(cy - radius, cy + radius + 1, size)
    ys = np.arange(r0, r1)[:, None] + 0.5 - cy
    xs = np.arange(c0, c1)[None, :] + 0.5 - cx
    img[r0:r1, c0:c1][xs * xs + ys * ys < radius * radius] = colour


_STEPS = np.arange(4 * CANVAS_SIZE, dtype=np.float64)[:, None]
_ACROSS = np.linspace(-0.5, 0.5, 2 * LINE_WIDTH[1] + 1)[None, :]


def _draw_line(img, u):
    """A segment between two uniform points, painted every half pixel along and across it."""
    size = img.shape[0]
    x0, y0, x1, y1 = u.uniform(0, size, size=4)
    width = u.uniform(*LINE_WIDTH)
    colour = u.colour()
    length = math.hypot(x1 - x0, y1 - y0)
    steps = int(2 * length) + 2
    nx, ny = (-(y1 - y0) / length * width, (x1 - x0) / length * width) if length else (0, 0)
    along = (_STEPS[:steps] if steps <= len(_STEPS) else np.arange(steps)[:, None]) / (steps - 1)
    xs = np.floor(x0 + along * (x1 - x0) + _ACROSS * nx).astype(np.intp)
    ys = np.floor(y0 + along * (y1 - y0) + _ACROSS * ny).astype(np.intp)
    keep = (xs >= 0) & (xs < size) & (ys >= 0) & (ys < size)
    img.reshape(-1, 3)[(ys * size + xs)[keep]] = colour


def _draw_target(img, u, kind):
    """Draw the target; return its box (left, right, top, bottom), inside the canvas."""
    size = img.shape[0]
    if kind == 'rectangle':
        width, height = u.uniform(*RECT_SIDE, size=2)
        left = u.uniform(0, size - width)
        top = u.uniform(0, size - height)
        colour = u.colour()
        box = (left, left + width, top, top + height)
        c0, c1 = _span(box[0], box[1], size)
        r0, r1 = _span(box[2], box[3], size)
        img[r0:r1, c0:c1] = colour
    elif kind == 'triangle':
        side = u.uniform(*TRIANGLE_SIDE)
        angle = math.radians(u.uniform(0, 120))
        radius = side / math.sqrt(3)   # circumradius of an equilateral triangle
        angles = angle + np.array([0, 2, 4]) * math.pi / 3
        dx, dy = radius * np.cos(angles), radius * np.sin(angles)
        cx = u.uniform(-dx.min(), size - dx.max())
        cy = u.uniform(-dy.min(), size - dy.max())
        colour = u.colour()
        xs, ys = cx + dx, cy + dy
        box = (xs.min(), xs.max(), ys.min(), ys.max())
        c0, c1 = _span(box[0], box[1] + 1, size)
        r0, r1 = _span(box[2], box[3] + 1, size)
        px = np.arange(c0, c1)[None, :] + 0.5
        py = np.arange(r0, r1)[:, None] + 0.5
        inside = np.ones((r1 - r0, c1 - c0), dtype=bool)
        for k in range(3):   # counter-clockwise in (x, y-down): inside is left of every edge
            ax, ay, bx, by = xs[k], ys[k], xs[(k + 1) % 3], ys[(k + 1) % 3]
            inside &= (bx - ax) * (py - ay) - (by - ay) * (px - ax) >= 0
        img[r0:r1, c0:c1][inside] = colour
    else:
        raise ValueError('unknown target kind %r: expected one of %s' % (kind, KINDS))
    return box


def draw_scene(rng, kinds=KINDS, size=CANVAS_SIZE, num_circles=NUM_CIRCLES,
               num_lines=NUM_LINES):
    """One scene from the generator `rng`: (uint8 image HxWx3, float32 label of 5)."""
    u = _Uniforms(rng, 16 + 6 * num_circles + 8 * num_lines)
    img = np.full((size, size, 3), 255, dtype=np.uint8)
    kind = kinds[min(int(u.uniform() * len(kinds)), len(kinds) - 1)]
    for _ in range(num_circles // 2):
        _draw_circle(img, u)
    for _ in range(num_lines // 2):
        _draw_line(img, u)
    box = _draw_target(img, u, kind)
    for _ in range(num_circles - num_circles // 2):
        _draw_circle(img, u)
    for _ in range(num_lines - num_lines // 2):
        _draw_line(img, u)
    label = np.array((float(kind == 'rectangle'),) + tuple(box), dtype=np.float32)
    return img, label


def make_scenes(n, seed=0, start=0, kinds=KINDS, size=CANVAS_SIZE, num_circles=NUM_CIRCLES,
                num_lines=NUM_LINES):
    """Scenes number start .. start + n - 1 of `seed`: uint8 (n, size, size, 3), float32 (n, 5).

    kinds: the target shapes to pick from, uniformly: ('triangle', 'rectangle') as in the
        text, or one of them alone. The label's first column is 1 for a rectangle, else 0.
    size: the canvas side in pixels (the text's 224; shape sizes stay in pixels).
    """
    kinds = tuple(kinds)
    if not kinds or any(k not in KINDS for k in kinds):
        raise ValueError('kinds must be a non-empty subset of %s, got %r' % (KINDS, kinds))
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    labels = np.empty((n, 5), dtype=np.float32)
    for i in range(n):
        rng = np.random.default_rng([seed, start + i])
        images[i], labels[i] = draw_scene(rng, kinds, size, num_circles, num_lines)
    return images, labels
