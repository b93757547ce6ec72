"""The maths of the simple object-detection chapter: boxes, the text's loss, frozen layers.

Boxes are `[left, right, top, bottom]` in pixels, as in the labels of `utils.scenes`
(`[is_rectangle, left, right, top, bottom]`).

Freezing has two halves in Gluon. `grad_req = 'null'` stops the optimizer from changing the
weights; BatchNorm layers must also stop updating their running mean and variance, which they
do in every `autograd.record()` pass. `freeze_batchnorm` switches them to
`use_global_stats=True`: they normalise with their stored statistics and leave them alone,
in training as in inference. (The other obvious route, `autograd.record(train_mode=False)`,
hits an MXNet 1.9.1 oneDNN bug: the gradients through BatchNorm come out wrong, and
fine-tuning diverges. tests/test_detection.py checks the gradients of this route against a
finite difference.)
"""
import numpy as np
import mxnet as mx
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

# ImageNet preprocessing, shared by gluoncv's MobileNet and torchvision's MobileNetV2
from .pretrained import IMAGENET_MEAN, IMAGENET_STD

CANVAS_SIZE = 224


# ---------------------------------------------------------------------------------------------
# Boxes

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


# ---------------------------------------------------------------------------------------------
# Losses and decoding

class ScaledMSELoss(gluon.loss.Loss):
    """The text's `customLossFunction`: mean squared error against `label * [224, 1, 1, 1, 1]`.

    Per sample, the mean over the 5 columns of (prediction - scaled label)^2, with no factor
    1/2 (Gluon's L2Loss halves); averaged over a batch it is `tf.metrics.meanSquaredError`.
    `scale=1` is the unscaled variant of exercise 5.
    """

    def __init__(self, scale=CANVAS_SIZE, **kwargs):
        super().__init__(weight=None, batch_axis=0, **kwargs)
        self._scale = float(scale)

    def hybrid_forward(self, F, pred, label):
        shape = F.slice_axis(label, axis=1, begin=0, end=1) * self._scale
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


# ---------------------------------------------------------------------------------------------
# Heads

def text_head(outputs=5):
    """The text's head (listing 5.9): Flatten -> Dense(200, relu) -> Dense(5)."""
    head = nn.HybridSequential(prefix='head_')
    with head.name_scope():
        head.add(nn.Flatten(), nn.Dense(200, activation='relu'), nn.Dense(outputs))
    return head


def conv_head(channels=16, outputs=5):
    """A 1x1 convolution to `channels` before the text's head: 16x fewer Dense weights.

    The 1x1 convolution keeps where things are (the box needs it, a global pooling would
    lose it) and shrinks what the first Dense layer sees from 96-128 channels to 16.
    """
    head = nn.HybridSequential(prefix='head_')
    with head.name_scope():
        head.add(nn.Conv2D(channels, 1, activation='relu'), nn.Flatten(),
                 nn.Dense(200, activation='relu'), nn.Dense(outputs))
    return head


# ---------------------------------------------------------------------------------------------
# Freezing

def batchnorms(block):
    """All BatchNorm layers inside `block` (itself included)."""
    found = []

    def visit(b):
        if isinstance(b, nn.BatchNorm):
            found.append(b)
        for child in b._children.values():
            visit(child)
    visit(block)
    return found


def freeze_batchnorm(block):
    """Make every BatchNorm in `block` use and keep its running statistics, even in training.

    Call before `hybridize()` (or hybridize again afterwards): the flag is read when the
    graph is built. The BatchNorm's gamma and beta can still be trained.
    """
    for bn in batchnorms(block):
        bn._kwargs['use_global_stats'] = True
    return block


def set_trainable(block, trainable):
    """grad_req 'write' or 'null' for the weights of `block`; running statistics stay 'null'."""
    for name, param in block.collect_params().items():
        if name.endswith('running_mean') or name.endswith('running_var'):
            param.grad_req = 'null'
        else:
            param.grad_req = 'write' if trainable else 'null'
    return block


def freeze(block):
    """Freeze `block`: no weight gradients, and BatchNorm statistics used as they are."""
    return set_trainable(freeze_batchnorm(block), False)


def trainable_params(block):
    """The parameters of `block` an optimizer should update (grad_req != 'null')."""
    return {name: p for name, p in block.collect_params().items() if p.grad_req != 'null'}


# ---------------------------------------------------------------------------------------------
# Inputs and cached features

def to_input(images, size=CANVAS_SIZE, mean=IMAGENET_MEAN, std=IMAGENET_STD, ctx=None):
    """uint8 images (N, H, W, 3) -> normalised float32 NDArray (N, 3, size, size).

    Resized (bilinear) while still uint8, then scaled to [0, 1] and normalised: 4x less
    float work than normalising at 224 px and resizing after.
    """
    ctx = ctx or mx.cpu()
    images = np.asarray(images)
    if images.shape[1] != size or images.shape[2] != size:
        images = nd.image.resize(nd.array(images, dtype='uint8'), size=(size, size)).asnumpy()
    x = images.astype(np.float32) / 255
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return nd.array(x.transpose(0, 3, 1, 2), ctx=ctx)


def extract_features(net, batches, ctx=None):
    """Run a frozen `net` over an iterable of input NDArrays; one float32 numpy array.

    Inference mode: BatchNorm uses its running statistics, nothing is recorded.
    """
    ctx = ctx or mx.cpu()
    outs = []
    with autograd.predict_mode():
        for x in batches:
            outs.append(net(x.as_in_context(ctx)).asnumpy())
    return np.concatenate(outs, axis=0)


def fit_arrays(net, loss_fn, trainer, train, val, batch_size, epochs, ctx=None, seed=0,
               lr_drop=None, print_fn=print, label='Epoch'):
    """Train `net` on in-memory arrays (cached features, labels); return the history.

    train, val: (inputs, labels) numpy arrays (val may be None). Every epoch shuffles with
    a generator seeded by (seed, epoch). lr_drop: a fraction of the epochs after which the
    learning rate is divided by 5. Prints one line per epoch, Keras-like:
    `Epoch 3/20 - loss: 812.345 - val_loss: 905.123 - 1.2 sec`.
    """
    from .training import split_batch
    import time
    ctx = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx or mx.cpu()]
    x_train, y_train = train
    history = {'loss': [], 'val_loss': [], 'seconds': []}
    base_lr = trainer.learning_rate
    for epoch in range(epochs):
        if lr_drop is not None and epoch == int(round(lr_drop * epochs)) and epoch > 0:
            trainer.set_learning_rate(base_lr / 5)
        start = time.time()
        order = np.random.default_rng([seed, epoch]).permutation(len(x_train))
        total = []
        for i in range(0, len(order), batch_size):
            idx = np.sort(order[i:i + batch_size])
            xs, ys = split_batch(nd.array(x_train[idx]), nd.array(y_train[idx]), ctx)
            with autograd.record():
                losses = [loss_fn(net(x), y) for x, y in zip(xs, ys)]
            for lo in losses:
                lo.backward()
            trainer.step(len(idx))
            total.append(nd.add_n(*[lo.sum().as_in_context(ctx[0]) for lo in losses]))
        loss = float(nd.add_n(*total).asscalar()) / len(order)
        if not np.isfinite(loss):
            from .training import TrainingDiverged
            raise TrainingDiverged('the loss became %s at epoch %d: lower the learning rate'
                                   % (loss, epoch))
        history['loss'].append(loss)
        line = '%s %d/%d - loss: %.3f' % (label, epoch + 1, epochs, loss)
        if val is not None:
            val_loss = evaluate_loss(net, loss_fn, val, batch_size, ctx[0])
            history['val_loss'].append(val_loss)
            line += ' - val_loss: %.3f' % val_loss
        history['seconds'].append(time.time() - start)
        print_fn(line + ' - %.1f sec' % history['seconds'][-1])
    return history


def predict_arrays(net, x, batch_size=256, ctx=None):
    """Outputs of `net` on a numpy array, in inference mode, as one numpy array."""
    ctx = ctx or mx.cpu()
    outs = []
    with autograd.predict_mode():
        for i in range(0, len(x), batch_size):
            outs.append(net(nd.array(x[i:i + batch_size], ctx=ctx)).asnumpy())
    return np.concatenate(outs, axis=0)


def evaluate_loss(net, loss_fn, data, batch_size=256, ctx=None):
    """Mean per-sample loss of `net` on (inputs, labels) numpy arrays, in inference mode."""
    x, y = data
    out = predict_arrays(net, x, batch_size, ctx)
    return float(loss_fn(nd.array(out), nd.array(y)).mean().asscalar())
