"""Tests of assignment 4: IoU and the scaled MSE loss.

The probes call the student's functions; the checks compare what came back with the grader's
own IoU (plain interval arithmetic, one pair at a time) and loss. The statement allows any
float type: IoU from float32 arithmetic on pixel coordinates up to 280 is good to a few 1e-5
relative (each coordinate rounded to 280 * 6e-8), so IoUs are compared to 1e-4 relative.
"""
import numpy as np
from mxnet import autograd, nd

from assignments.testing import assert_close, graded, probe

SUBMISSION_FILE = 'boxes.py'
IOU_TOLERANCE = {'rtol': 1e-4, 'atol': 1e-6}


def reference_iou(a, b):
    """The grader's own IoU of two single boxes."""
    def overlap(lo1, hi1, lo2, hi2):
        return max(0.0, min(hi1, hi2) - max(lo1, lo2))
    inter = overlap(a[0], a[1], b[0], b[1]) * overlap(a[2], a[3], b[2], b[3])
    area_a = max(0.0, a[1] - a[0]) * max(0.0, a[3] - a[2])
    area_b = max(0.0, b[1] - b[0]) * max(0.0, b[3] - b[2])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def loss_batch(seed, n):
    """Labels [is_rectangle, 4 pixel coordinates] and predictions for n scenes."""
    rng = np.random.RandomState(seed)
    label = np.concatenate([rng.randint(0, 2, (n, 1)), rng.uniform(0, 224, (n, 4))], 1)
    return rng.uniform(0, 224, (n, 5)), label


def loss_and_gradient(sub, pred, label):
    pred_nd = nd.array(pred)
    pred_nd.attach_grad()
    with autograd.record():
        loss = sub.scaled_mse(pred_nd, nd.array(label))
    loss.backward()
    return {'loss': loss, 'grad': pred_nd.grad}


def check_loss(seen, pred, label, what):
    target = label * np.array([224, 1, 1, 1, 1])
    assert_close(seen['loss'], ((pred - target) ** 2).mean(axis=1), what, rtol=1e-5)
    assert_close(seen['grad'], 2 * (pred - target) / 5, 'gradient of ' + what,
                 rtol=1e-4, atol=1e-3)


SAME_BOX = [[10, 50, 20, 60]]
HALF_OVERLAP = ([[0, 10, 0, 10]], [[5, 15, 0, 10]])  # a 5x10 strip: 50 / (100 + 100 - 50)
ONE_SCENE = ([[200, 10, 20, 30, 40]], [[1, 12, 20, 30, 38]])


@probe(timeout=30)
def iou_same_box(sub):
    return {'iou': sub.iou(SAME_BOX, SAME_BOX)}


@graded(1, probe=iou_same_box)
def test_iou_same_box(seen):
    assert_close(seen['iou'], [1.0], 'IoU of a box with itself', **IOU_TOLERANCE)


@probe(timeout=30)
def iou_half_overlap(sub):
    return {'iou': sub.iou(*HALF_OVERLAP)}


@graded(1, probe=iou_half_overlap)
def test_iou_partial_overlap(seen):
    assert_close(seen['iou'], [50 / 150], 'IoU of half-overlap', **IOU_TOLERANCE)


@probe(timeout=30)
def loss_one_scene(sub):
    pred, label = (np.array(v, dtype=float) for v in ONE_SCENE)
    return loss_and_gradient(sub, pred, label)


@graded(1, probe=loss_one_scene)
def test_loss_example(seen):
    # (200 - 224)^2 + 2^2 + 0 + 0 + 2^2 = 584, over 5 columns
    pred, label = (np.array(v, dtype=float) for v in ONE_SCENE)
    check_loss(seen, pred, label, 'scaled_mse of one sample')


### BEGIN HIDDEN TESTS
EDGE_CASES = [([0, 10, 0, 10], [20, 30, 20, 30], 'no overlap'),
              ([0, 10, 0, 10], [10, 20, 0, 10], 'touching along an edge'),
              ([0, 10, 0, 10], [10, 20, 10, 20], 'touching at a corner'),
              ([0, 100, 0, 100], [20, 30, 40, 60], 'one inside the other'),
              ([20, 30, 40, 60], [0, 100, 0, 100], 'the other inside the one'),
              ([5, 5, 0, 10], [0, 10, 0, 10], 'a box with no area')]


def unseen_boxes():
    """300 pairs: random, near-duplicates, and boxes inside others."""
    rng = np.random.RandomState(2024)

    def boxes(n):
        left, top = rng.uniform(0, 180, n), rng.uniform(0, 180, n)
        return np.stack([left, left + rng.uniform(1, 100, n), top,
                         top + rng.uniform(1, 100, n)], 1)
    a, b = boxes(300), boxes(300)
    b[:50] = a[:50] + rng.uniform(-5, 5, (50, 4))
    inner = a[50:100].copy()
    inner[:, 0] += 1
    inner[:, 2] += 1
    inner[:, 1] = np.maximum(inner[:, 0] + 0.5, inner[:, 1] - 1)
    inner[:, 3] = np.maximum(inner[:, 2] + 0.5, inner[:, 3] - 1)
    b[50:100] = inner
    return a, b


@probe(timeout=30)
def iou_edge_cases(sub):
    return {'iou%d' % i: sub.iou(np.array([a], float), np.array([b], float))
            for i, (a, b, _) in enumerate(EDGE_CASES)}


@graded(2, probe=iou_edge_cases)
def test_iou_edge_cases(seen):
    for i, (a, b, what) in enumerate(EDGE_CASES):
        assert_close(np.reshape(seen['iou%d' % i], -1), [reference_iou(a, b)], what,
                     **IOU_TOLERANCE)


@probe(timeout=30)
def iou_unseen(sub):
    a, b = unseen_boxes()
    return {'ab': sub.iou(a, b), 'ba': sub.iou(b, a)}


@graded(2, probe=iou_unseen)
def test_iou_unseen_boxes(seen):
    a, b = unseen_boxes()
    expected = [reference_iou(x, y) for x, y in zip(a, b)]
    assert_close(seen['ab'], expected, 'IoU of 300 boxes', **IOU_TOLERANCE)
    assert_close(seen['ba'], expected, 'IoU with the arguments swapped', **IOU_TOLERANCE)


@probe(timeout=30)
def loss_unseen(sub):
    return loss_and_gradient(sub, *loss_batch(7, 16))


@graded(2, probe=loss_unseen)
def test_loss_unseen_batch_and_gradient(seen):
    check_loss(seen, *loss_batch(7, 16), what='scaled_mse of 16 samples')
### END HIDDEN TESTS
