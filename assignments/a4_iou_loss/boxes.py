"""Assignment 4: IoU of boxes and the detection chapter's scaled mean squared error."""
import numpy as np
from mxnet import nd

CANVAS_SIZE = 224


def iou(boxes_a, boxes_b):
    """Intersection over union of boxes [left, right, top, bottom], row by row."""
    ### BEGIN SOLUTION
    a = np.asarray(boxes_a, dtype=np.float64)
    b = np.asarray(boxes_b, dtype=np.float64)
    width = np.minimum(a[..., 1], b[..., 1]) - np.maximum(a[..., 0], b[..., 0])
    height = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 2], b[..., 2])
    inter = np.clip(width, 0, None) * np.clip(height, 0, None)

    def area(box):
        return np.clip(box[..., 1] - box[..., 0], 0, None) * \
            np.clip(box[..., 3] - box[..., 2], 0, None)
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    ### END SOLUTION


def scaled_mse(pred, label):
    """Per-sample mean of (pred - label * [224, 1, 1, 1, 1])^2 over the 5 columns."""
    ### BEGIN SOLUTION
    scale = nd.array([CANVAS_SIZE, 1, 1, 1, 1], ctx=label.context)
    return nd.mean(nd.square(pred - label * scale), axis=1)
    ### END SOLUTION
