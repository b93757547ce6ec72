"""Freezing layers and BatchNorm's running statistics (GluonCV keeps the like in utils/block.py),
and giving back the memory a hybridized block's graph keeps (`release_graph`).

Freezing has two halves in Gluon. `grad_req = 'null'` stops the optimizer from changing the
weights; BatchNorm layers must also stop updating their running mean and variance, which they
do in every `autograd.record()` pass. `freeze_batchnorm` switches them to
`use_global_stats=True`: they normalise with their stored statistics and leave them alone,
in training as in inference. (The other obvious route, `autograd.record(train_mode=False)`,
hits an MXNet 1.9.1 oneDNN bug: the gradients through BatchNorm come out wrong, and
fine-tuning diverges. tests/test_block.py checks this route against a finite difference.)
"""
import ctypes
import gc

from mxnet import gluon, nd
from mxnet.gluon import nn


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


def set_bn_momentum(block, momentum):
    """How fast BatchNorm's running averages (used at test time) forget their past: each
    step keeps `momentum` of the old average. Set before hybridize: the value is read when
    the graph is built."""
    for bn in batchnorms(block):
        bn._kwargs['momentum'] = momentum
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


def running_stats(block):
    """Copies of every BatchNorm running mean and variance in `block`, by parameter name."""
    return {name: p.data().copy() for name, p in block.collect_params().items()
            if name.endswith(('running_mean', 'running_var'))}


def first_conv(net):
    """The first convolution of `net.features` (ResNet v2: features[1], after the input
    BatchNorm)."""
    for block in net.features:
        if isinstance(block, gluon.nn.Conv2D):
            return block
    raise ValueError('no convolution at the top of features')


def release_graph(block):
    """Drop the graphs MXNet built for the hybridized `block` and its children, and the
    memory they keep.

    With `static_alloc`, a hybridized block keeps the buffers of its last forward (and
    backward) pass for as long as the graph lives: about 1 GiB for MobileNetV2 trained at
    96 px in batches of 32. A network kept for later, or one whose part runs in another
    graph, gives that memory back here; its next call builds the graph again (a fraction of
    a second) with the same flags. Gluon 1.x has no public call for this (`hybridize()`
    drops the graph too, but also sets every child's flags again).
    """
    def visit(b):
        if isinstance(b, gluon.HybridBlock):
            b._clear_cached_op()
        for child in b._children.values():
            visit(child)
    visit(block)
    gc.collect()
    nd.waitall()   # the buffers are freed once the operations that use them have run
    _return_free_memory()
    return block


def _return_free_memory():
    """Hand the memory malloc holds free back to the system (glibc only; elsewhere nothing).

    MXNet allocates from its worker threads, and glibc keeps freed blocks in each thread's
    arena: without this, a graph built later in another arena cannot use them."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
