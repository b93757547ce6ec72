"""The losses of the detection chapter: the text's scaled mean squared error (saved from the
chapter, see bookgen.saved), and two outputs."""
from mxnet import gluon

from .scenes import CANVAS_SIZE


# @saved from chapters/simple_object_detection.py: edit it there, then `python -m bookgen.saved`
class ScaledMSELoss(gluon.loss.Loss):
    """The text's customLossFunction: mean squared error against `label * [scale, 1, 1, 1, 1]`
    (labelMultiplier), per sample the mean over the 5 columns."""

    def __init__(self, scale=CANVAS_SIZE, **kwargs):
        super().__init__(weight=None, batch_axis=0, **kwargs)
        self.scale = float(scale)

    def hybrid_forward(self, F, pred, label):
        shape = F.slice_axis(label, axis=1, begin=0, end=1) * self.scale
        target = F.concat(shape, F.slice_axis(label, axis=1, begin=1, end=None), dim=1)
        return F.mean(F.square(pred - target), axis=1)


class TwoOutputLoss(gluon.loss.Loss):
    """Softmax cross-entropy on 2 shape logits + `box_weight` * MSE on the 4 box numbers.

    The prediction has 6 columns: logits (triangle, rectangle), then left, right, top, bottom.
    """

    def __init__(self, box_weight=1e-3, **kwargs):
        super().__init__(weight=None, batch_axis=0, **kwargs)
        self._box_weight = float(box_weight)
        self._ce = gluon.loss.SoftmaxCrossEntropyLoss()

    def hybrid_forward(self, F, pred, label):
        logits = F.slice_axis(pred, axis=1, begin=0, end=2)
        shape = F.reshape(F.slice_axis(label, axis=1, begin=0, end=1), (-1,))
        box_err = F.slice_axis(pred, axis=1, begin=2, end=None) - \
            F.slice_axis(label, axis=1, begin=1, end=None)
        return self._ce(logits, shape) + self._box_weight * F.mean(F.square(box_err), axis=1)
