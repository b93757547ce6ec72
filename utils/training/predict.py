"""A network's outputs over many inputs, in inference mode, as numpy arrays.

Inference mode: BatchNorm uses its running statistics, Dropout is off, nothing is recorded.
"""
import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd


def predict_batches(net, batches, ctx=None, total=None):
    """Outputs of `net` for an iterable of input NDArrays, concatenated into one array.

    total: the number of inputs, when known. Each batch's outputs are then written into one
    array made for all of them, instead of kept apart and concatenated at the end, which
    would hold every output twice for a moment.
    """
    ctx = ctx or mx.cpu()
    outs, filled = [], 0
    with autograd.predict_mode():
        for x in batches:
            out = net(x.as_in_context(ctx)).asnumpy()
            if total is None:
                outs.append(out)
                continue
            if not outs:
                outs.append(np.empty((total,) + out.shape[1:], out.dtype))
            outs[0][filled:filled + len(out)] = out
            filled += len(out)
    if total is not None:
        return outs[0][:filled] if outs else np.empty((0,))
    return np.concatenate(outs, axis=0)


def predict_arrays(net, x, batch_size=256, ctx=None):
    """Outputs of `net` for a numpy array of inputs, `batch_size` at a time."""
    return predict_batches(net, (nd.array(x[i:i + batch_size])
                                 for i in range(0, len(x), batch_size)), ctx, total=len(x))


def predict_loader(net, loader, ctx=None):
    """(outputs, labels) of `net` over a DataLoader of (input, label) batches, in order."""
    labels = []

    def inputs():
        for X, y in loader:
            labels.append(y.asnumpy())
            yield X
    outputs = predict_batches(net, inputs(), ctx)
    return outputs, np.concatenate(labels)


def predict_dataset(net, dataset, batch_size=64, ctx=None):
    """(outputs, labels) of `net` over a dataset of (input, label) pairs, in order."""
    return predict_loader(net, gluon.data.DataLoader(dataset, batch_size), ctx)


def evaluate_loss(net, loss_fn, data, batch_size=256, ctx=None):
    """Mean per-sample loss of `net` on (inputs, labels) numpy arrays, in inference mode."""
    x, y = data
    out = predict_arrays(net, x, batch_size, ctx)
    return float(loss_fn(nd.array(out), nd.array(y)).mean().asscalar())
