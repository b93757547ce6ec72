"""Tests of assignment 4: IoU and the scaled MSE loss."""
import numpy as np
from mxnet import autograd, nd

from assignments.testing import as_numpy, assert_close, graded

SUBMISSION_FILE = 'boxes.py'


@graded(1, timeout=30)
def test_iou_same_box(sub):
    assert_close(sub.iou([[10, 50, 20, 60]], [[10, 50, 20, 60]]), [1.0], 'IoU of a box with itself')


@graded(1, timeout=30)
def test_iou_partial_overlap(sub):
    # 10x10 boxes sharing a 5x10 strip: 50 / (100 + 100 - 50)
    assert_close(sub.iou([[0, 10, 0, 10]], [[5, 15, 0, 10]]), [50 / 150], 'IoU of half-overlap')


@graded(1, timeout=30)
def test_loss_example(sub):
    pred = nd.array([[200, 10, 20, 30, 40]])
    label = nd.array([[1, 12, 20, 30, 38]])
    # (200 - 224)^2 + 2^2 + 0 + 0 + 2^2 = 584, over 5 columns
    assert_close(sub.scaled_mse(pred, label), [584 / 5], 'scaled_mse of one sample')


### BEGIN HIDDEN TESTS
def _iou(a, b):
    """The grader's own IoU of two single boxes, by plain interval arithmetic."""
    def overlap(lo1, hi1, lo2, hi2):
        return max(0.0, min(hi1, hi2) - max(lo1, lo2))
    inter = overlap(a[0], a[1], b[0], b[1]) * overlap(a[2], a[3], b[2], b[3])
    area_a = max(0.0, a[1] - a[0]) * max(0.0, a[3] - a[2])
    area_b = max(0.0, b[1] - b[0]) * max(0.0, b[3] - b[2])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def _random_boxes(rng, n):
    left, top = rng.uniform(0, 180, n), rng.uniform(0, 180, n)
    return np.stack([left, left + rng.uniform(1, 100, n), top, top + rng.uniform(1, 100, n)], 1)


@graded(2, timeout=30)
def test_iou_edge_cases(sub):
    cases = [([0, 10, 0, 10], [20, 30, 20, 30], 0.0, 'no overlap'),
             ([0, 10, 0, 10], [10, 20, 0, 10], 0.0, 'touching along an edge'),
             ([0, 10, 0, 10], [10, 20, 10, 20], 0.0, 'touching at a corner'),
             ([0, 100, 0, 100], [20, 30, 40, 60], 200 / 10000, 'one inside the other'),
             ([20, 30, 40, 60], [0, 100, 0, 100], 200 / 10000, 'the other inside the one'),
             ([5, 5, 0, 10], [0, 10, 0, 10], 0.0, 'a box with no area')]
    for a, b, expected, what in cases:
        got = as_numpy(sub.iou(np.array([a], float), np.array([b], float))).reshape(-1)
        assert got.shape == (1,), 'IoU of one pair should have shape (1,)'
        assert abs(got[0] - expected) < 1e-6, what


@graded(2, timeout=30)
def test_iou_unseen_boxes(sub):
    rng = np.random.RandomState(2024)
    a, b = _random_boxes(rng, 300), _random_boxes(rng, 300)
    b[:50] = a[:50] + rng.uniform(-5, 5, (50, 4))  # near-duplicates
    inner = a[50:100].copy()  # boxes inside a[50:100]
    inner[:, 0] += 1
    inner[:, 2] += 1
    inner[:, 1] = np.maximum(inner[:, 0] + 0.5, inner[:, 1] - 1)
    inner[:, 3] = np.maximum(inner[:, 2] + 0.5, inner[:, 3] - 1)
    b[50:100] = inner
    expected = [_iou(x, y) for x, y in zip(a, b)]
    assert_close(sub.iou(a, b), expected, 'IoU of 300 boxes', rtol=1e-6, atol=1e-9)
    assert_close(sub.iou(b, a), expected, 'IoU with the arguments swapped', rtol=1e-6,
                 atol=1e-9)


@graded(2, timeout=30)
def test_loss_unseen_batch_and_gradient(sub):
    rng = np.random.RandomState(7)
    label = np.concatenate([rng.randint(0, 2, (16, 1)), rng.uniform(0, 224, (16, 4))], 1)
    pred = rng.uniform(0, 224, (16, 5))
    target = label * np.array([224, 1, 1, 1, 1])
    pred_nd = nd.array(pred)
    pred_nd.attach_grad()
    with autograd.record():
        loss = sub.scaled_mse(pred_nd, nd.array(label))
    assert_close(loss, ((pred - target) ** 2).mean(axis=1), 'scaled_mse of 16 samples',
                 rtol=1e-5)
    loss.backward()
    assert_close(pred_nd.grad, 2 * (pred - target) / 5, 'gradient of scaled_mse',
                 rtol=1e-4, atol=1e-3)
### END HIDDEN TESTS
