"""Assignment 1: split a batch over devices, and one data-parallel training step."""
from mxnet import autograd, gluon, nd


def split_batch(X, y, ctx_list):
    """Slices of X and of y, slice i on ctx_list[i]; at most len(X) devices are used."""
    ### BEGIN SOLUTION
    used = ctx_list[:max(1, min(len(ctx_list), X.shape[0]))]
    return (gluon.utils.split_and_load(X, used, even_split=False),
            gluon.utils.split_and_load(y, used, even_split=False))
    ### END SOLUTION


def train_step(net, loss, trainer, X, y, ctx_list):
    """One step on the batch (X, y) over the devices; the summed loss as a float."""
    ### BEGIN SOLUTION
    xs, ys = split_batch(X, y, ctx_list)
    with autograd.record():
        losses = [loss(net(x), t) for x, t in zip(xs, ys)]
    for lo in losses:
        lo.backward()
    # A device that got no slice still holds last step's gradient, and the Trainer adds up
    # every device's: backpropagating a zero through its parameters makes that a fresh zero.
    params = [p for p in net.collect_params().values() if p.grad_req != 'null']
    for ctx in ctx_list[len(xs):]:
        with autograd.record():
            zero = nd.add_n(*[(p.data(ctx) * 0).sum() for p in params])
        zero.backward()
    trainer.step(X.shape[0])
    return sum(float(lo.sum().asscalar()) for lo in losses)
    ### END SOLUTION
