import numpy as np
import pytest

from utils.detection.scenes import CANVAS_SIZE, make_scenes


def painted_box(img):
    """(left, right, top, bottom) of the non-white pixels, as pixel edges."""
    rows, cols = np.nonzero((img != 255).any(axis=2))
    return cols.min(), cols.max() + 1, rows.min(), rows.max() + 1


def test_shapes_and_label_ranges():
    images, labels = make_scenes(200, seed=3)
    assert images.shape == (200, CANVAS_SIZE, CANVAS_SIZE, 3) and images.dtype == np.uint8
    assert labels.shape == (200, 5) and labels.dtype == np.float32
    assert set(np.unique(labels[:, 0])) == {0.0, 1.0}
    left, right, top, bottom = labels[:, 1:].T
    # targets are kept inside the canvas: every box is what is visible
    assert (left >= 0).all() and (top >= 0).all()
    assert (right <= CANVAS_SIZE).all() and (bottom <= CANVAS_SIZE).all()
    width, height = right - left, bottom - top
    rect = labels[:, 0] == 1
    assert ((width[rect] >= 40) & (width[rect] <= 100)).all()
    assert ((height[rect] >= 40) & (height[rect] <= 100)).all()
    # equilateral triangle of side 50-100: its box is between sqrt(3)/2 side and side wide
    tri = ~rect
    assert ((width[tri] >= 50 * np.sqrt(3) / 2 - 1e-3) & (width[tri] <= 100 + 1e-3)).all()
    assert ((height[tri] >= 50 * np.sqrt(3) / 2 - 1e-3) & (height[tri] <= 100 + 1e-3)).all()
    # noise and targets are coloured: scenes are not blank
    assert (images != 255).any(axis=(1, 2, 3)).all()


@pytest.mark.parametrize('kind', ['rectangle', 'triangle'])
def test_box_matches_drawn_target(kind):
    images, labels = make_scenes(60, seed=5, kinds=(kind,), num_circles=0, num_lines=0)
    assert (labels[:, 0] == (kind == 'rectangle')).all()
    for img, label in zip(images, labels):
        # a sharp triangle tip can hold no pixel centre: up to ~1.2 px short
        np.testing.assert_allclose(painted_box(img), label[1:], atol=1.5)
    if kind == 'rectangle':
        # drawn with the width and height it is labelled with (no swap), and non-square
        widths = labels[:, 2] - labels[:, 1]
        heights = labels[:, 4] - labels[:, 3]
        assert np.abs(widths - heights).max() > 20


def test_same_seed_same_scenes_and_chunks_agree():
    a_img, a_lab = make_scenes(20, seed=11)
    b_img, b_lab = make_scenes(20, seed=11)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    c_img, c_lab = make_scenes(8, seed=11, start=12)
    assert np.array_equal(a_img[12:], c_img) and np.array_equal(a_lab[12:], c_lab)
    d_img, d_lab = make_scenes(20, seed=12)
    assert not np.array_equal(a_lab, d_lab)


def test_noise_drawn_after_the_target_can_cover_it():
    images, labels = make_scenes(40, seed=2, kinds=('rectangle',))
    covered = 0
    for img, label in zip(images, labels):
        left, right, top, bottom = np.rint(label[1:]).astype(int)
        inside = img[top + 1:bottom - 1, left + 1:right - 1].reshape(-1, 3)
        colours, counts = np.unique(inside, axis=0, return_counts=True)
        target = colours[counts.argmax()]
        # most of the box is the rectangle's colour; anything else was painted over it
        assert counts.max() > 0.5 * len(inside)
        covered += (inside != target).any(axis=1).any()
    assert covered > 10


def test_bad_kind_is_rejected():
    with pytest.raises(ValueError, match='kinds'):
        make_scenes(1, kinds=('circle',))
    with pytest.raises(ValueError, match='kinds'):
        make_scenes(1, kinds=())
