"""Boxes `[left, right, top, bottom]` in pixels: overlap, and boxes read from network outputs.

The labels of `utils.detection.scenes` are `[is_rectangle, left, right, top, bottom]`.
"""
import numpy as np

from .scenes import CANVAS_SIZE


def iou(boxes_a, boxes_b):
    """Intersection over union of boxes `[left, right, top, bottom]`, row by row.

    Arrays of shape (..., 4); boxes with no area (or inverted ones) have IoU 0 with anything.
    Touching boxes (a shared edge) have IoU 0.
    """
    a = np.asarray(boxes_a, dtype=np.float64)
    b = np.asarray(boxes_b, dtype=np.float64)
    width = np.minimum(a[..., 1], b[..., 1]) - np.maximum(a[..., 0], b[..., 0])
    height = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 2], b[..., 2])
    inter = np.clip(width, 0, None) * np.clip(height, 0, None)
    area_a = np.clip(a[..., 1] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 2], 0, None)
    area_b = np.clip(b[..., 1] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 2], 0, None)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def decode(output, mode='scaled'):
    """(is_rectangle bool array, boxes (N, 4)) from network outputs (numpy or NDArray).

    mode 'scaled': the text's rule, rectangle iff output[0] > 112 (= 224 / 2);
    'unscaled': output[0] > 0.5 (trained without the label scaling);
    'two_output': the larger of two logits, the box in columns 2-5.
    """
    out = output.asnumpy() if hasattr(output, 'asnumpy') else np.asarray(output)
    if mode == 'two_output':
        return out[:, 1] > out[:, 0], out[:, 2:6]
    threshold = {'scaled': CANVAS_SIZE / 2, 'unscaled': 0.5}[mode]
    return out[:, 0] > threshold, out[:, 1:5]


def detection_metrics(output, labels, mode='scaled'):
    """Shape accuracy and mean IoU of network outputs against labels (N, 5)."""
    is_rect, boxes = decode(output, mode)
    labels = np.asarray(labels)
    return {'shape_acc': float(np.mean(is_rect == (labels[:, 0] > 0.5))),
            'mean_iou': float(np.mean(iou(boxes, labels[:, 1:5])))}
