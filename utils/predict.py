"""A network's outputs over many inputs, in inference mode, as numpy arrays.

Inference mode: BatchNorm uses its running statistics, Dropout is off, nothing is recorded.
"""
import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd


def predict_batches(net, batches, ctx=None):
    """Outputs of `net` for an iterable of input NDArrays, concatenated into one array."""
    ctx = ctx or mx.cpu()
    outs = []
    with autograd.predict_mode():
        for x in batches:
            outs.append(net(x.as_in_context(ctx)).asnumpy())
    return np.concatenate(outs, axis=0)


def predict_arrays(net, x, batch_size=256, ctx=None):
    """Outputs of `net` for a numpy array of inputs, `batch_size` at a time."""
    return predict_batches(net, (nd.array(x[i:i + batch_size])
                                 for i in range(0, len(x), batch_size)), ctx)


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
