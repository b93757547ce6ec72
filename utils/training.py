"""The textbook's `train` and `evaluate_accuracy`, data-parallel over any list of contexts.

Each batch is split over the contexts, every replica computes its share, the Trainer sums the
gradients (kvstore 'device', 'local' or 'dist_sync') and divides by the true batch size (with
'dist_sync': the sum of all workers' batches). Loss
and accuracy stay on the devices during an epoch and are read back once at its end, so the
Python loop never waits for a number it does not need.
"""
import json
import os
import random
import sys
import time
import zipfile

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd
from tqdm import tqdm

from .errors import UserError
from .files import write_json, zip_bundle_reader, zip_bundle_writer

HISTORY_KEYS = ('loss', 'train_acc', 'test_acc', 'seconds', 'images_per_sec')


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


def _as_list(ctx):
    return list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]


def _unpack(batch):
    """(data, label) from a DataLoader tuple or an mx.io.DataBatch."""
    if isinstance(batch, mx.io.DataBatch):
        return batch.data[0], batch.label[0]
    return batch[0], batch[1]


def split_batch(data, label, ctx):
    """Split a batch over the contexts; a batch smaller than len(ctx) uses the first contexts.

    `split_and_load(even_split=False)` gives the last batch of an epoch, which rarely divides
    by the number of devices, slices of unequal size; it would give empty slices (which the
    operators reject) when there are fewer samples than devices.
    """
    used = ctx[:max(1, min(len(ctx), data.shape[0]))]
    return (gluon.utils.split_and_load(data, used, even_split=False),
            gluon.utils.split_and_load(label, used, even_split=False))


def _zero_idle_grads(params, idle_ctx):
    """Give contexts that saw no sample this step a zero gradient, so the sum stays right.

    The Trainer refuses a stale gradient (and skipping it would let the replicas drift apart).
    """
    idle = set(idle_ctx)
    for param in params.values():
        if param.grad_req == 'null':
            continue
        for data, grad in zip(param.list_data(), param.list_grad()):
            if data.context in idle:
                grad[:] = 0
                data._fresh_grad = True


def sync_workers(trainer):
    """How many worker processes add up their gradients at each step of `trainer`.

    W for a 'dist_sync' (or 'dist_device_sync') kvstore, else 1. utils.train then steps with
    W x the local batch size, so that W workers with batches of B samples take exactly the
    step that one process takes on their W x B samples together.
    """
    kv = getattr(trainer, '_kvstore_params', {}).get('kvstore')
    if isinstance(kv, mx.kv.KVStore):
        kind, workers = kv.type, kv.num_workers
    elif isinstance(kv, str):
        kind, workers = kv, int(os.environ.get('DMLC_NUM_WORKER', '1'))
    else:
        return 1
    return workers if kind.startswith('dist') and 'async' not in kind else 1


def _correct(output, label):
    return (output.argmax(axis=1) == label.astype(output.dtype)).sum()


def evaluate_accuracy(data_iter, net, ctx):
    """Fraction of correctly classified samples, computed on all contexts, read back once."""
    ctx = _as_list(ctx)
    correct = [nd.zeros((1,), ctx=c) for c in ctx]
    count = 0
    for batch in data_iter:
        data, label = _unpack(batch)
        xs, ys = split_batch(data, label, ctx)
        for i, (x, y) in enumerate(zip(xs, ys)):
            correct[i] += _correct(net(x), y)
        count += data.shape[0]
    if count == 0:
        raise UserError('evaluate_accuracy: the data iterator yielded no sample')
    return sum(float(c.asscalar()) for c in correct) / count  # float: numpy 2 keeps float32


def average_batchnorm_stats(net, ctx):
    """Give every replica the mean of all replicas' BatchNorm running statistics.

    With several devices each replica normalises its own shard and keeps its own running
    mean and variance, so what evaluation measures would depend on how batches were split.
    (Averaging the variances ignores the spread between replica means: a small bias that
    SyncBatchNorm avoids by normalising over the whole batch at every step.)
    """
    ctx = _as_list(ctx)
    if len(ctx) < 2:
        return
    for param in net.collect_params('.*running_mean|.*running_var').values():
        copies = param.list_data()
        mean = nd.add_n(*[c.as_in_context(ctx[0]) for c in copies]) / len(copies)
        param.set_data(mean)


def seed_everything(seed):
    """Seed Python's, NumPy's and MXNet's generators (shuffling, augmentation, dropout)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    mx.random.seed(seed % 2**31)


def _save_checkpoint(path, net, trainer, epoch, history):
    """Parameters, optimizer state and history in one zip, replaced atomically."""
    with zip_bundle_writer(path) as folder:
        net.save_parameters(os.path.join(folder, 'net.params'))
        trainer.save_states(os.path.join(folder, 'trainer.states'))
        write_json(os.path.join(folder, 'meta.json'), {'epoch': epoch, 'history': history})


def _load_checkpoint(path, net, trainer, ctx):
    try:
        with zip_bundle_reader(path) as folder:
            with open(os.path.join(folder, 'meta.json')) as f:
                meta = json.load(f)
            net.load_parameters(os.path.join(folder, 'net.params'), ctx=ctx)
            trainer.load_states(os.path.join(folder, 'trainer.states'))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, mx.MXNetError) as err:
        raise UserError('checkpoint %s cannot be read (%s): delete it to start over'
                        % (path, str(err).splitlines()[0][:120]))
    return meta['epoch'] + 1, meta['history']


def format_epoch(epoch, history):
    """The textbook's epoch line, followed by the throughput."""
    return ('Epoch %d. Loss: %.3f, Train acc %.2f, Test acc %.2f, Time %.1f sec (%.1f images/sec)'
            % (epoch, history['loss'][-1], history['train_acc'][-1], history['test_acc'][-1],
               history['seconds'][-1], history['images_per_sec'][-1]))


def train(train_data, test_data, net, loss, trainer, ctx, num_epochs, *, progress=None,
          seed=None, checkpoint=None, resume=False, sync_batchnorm=True, print_fn=print):
    """Train `net` for `num_epochs` epochs on the contexts `ctx`; return the history.

    The history holds, per epoch: mean training loss, training and test accuracy, seconds
    (training and evaluation) and training images per second.

    progress: tqdm bar on stderr; None shows it only on a terminal.
    seed: when given, every epoch starts from generators seeded with (seed, epoch), which is
        what makes a resumed run end with the same parameters as an uninterrupted one.
    checkpoint: a file written atomically after each epoch; with resume=True training
        continues from it when it exists.
    sync_batchnorm: with several contexts, average the replicas' BatchNorm running statistics
        after each epoch, so evaluation does not depend on how batches were split.

    Several machines: with a 'dist_sync' kvstore, each worker passes its own shard of the
    data (utils.distributed.shard_dataset) and the gradients of all workers are summed and
    divided by the global batch size, so W workers with batch B train like one process with
    batch W x B. Loss and accuracy in the history are this worker's.
    """
    ctx = _as_list(ctx)
    params = net.collect_params()
    workers = sync_workers(trainer)
    history = {key: [] for key in HISTORY_KEYS}
    start_epoch = 0
    if resume and checkpoint and os.path.exists(checkpoint):
        start_epoch, history = _load_checkpoint(checkpoint, net, trainer, ctx)
        print_fn('Resuming from %s at epoch %d' % (checkpoint, start_epoch))
    print_fn('Start training on', ctx)
    for epoch in range(start_epoch, num_epochs):
        if seed is not None:
            seed_everything(seed * 1000 + epoch)
        start = time.time()
        batch_losses, batch_correct = [], []
        samples = 0
        pending = None
        bar = tqdm(train_data, desc='epoch %d' % epoch, file=sys.stderr, leave=False,
                   disable=None if progress is None else not progress, unit='batch')
        for batch in bar:
            data, label = _unpack(batch)
            xs, ys = split_batch(data, label, ctx)
            with autograd.record():
                outputs = [net(x) for x in xs]
                losses = [loss(out, y) for out, y in zip(outputs, ys)]
            for lo in losses:
                lo.backward()
            if len(xs) < len(ctx):
                _zero_idle_grads(params, ctx[len(xs):])
            try:
                trainer.step(data.shape[0] * workers)
            except UserWarning as err:  # raised by Trainer.step, see utils.distributed
                raise UserError('%s: build the Trainer with utils.distributed.make_trainer '
                                '(update_on_kvstore=False)' % str(err).split('.')[0])
            samples += data.shape[0]
            batch_loss = nd.add_n(*[lo.sum().as_in_context(ctx[0]) for lo in losses])
            batch_losses.append(batch_loss)
            batch_correct.append(nd.add_n(*[_correct(out, y).as_in_context(ctx[0])
                                            for out, y in zip(outputs, ys)]))
            # Stay at most one batch ahead of the devices: enough to keep them busy, and the
            # queued inputs of a whole epoch do not pile up in memory.
            if pending is not None:
                pending.wait_to_read()
            pending = batch_loss
        bar.close()
        if samples == 0:
            raise UserError('train: the training data iterator yielded no sample')
        losses_read = nd.concat(*batch_losses, dim=0).asnumpy()
        bad = np.flatnonzero(~np.isfinite(losses_read))
        if bad.size:
            raise TrainingDiverged(
                'the loss became %s at epoch %d, batch %d: lower the learning rate or check '
                'the input data' % (losses_read[bad[0]], epoch, bad[0]))
        train_seconds = time.time() - start
        if sync_batchnorm:
            average_batchnorm_stats(net, ctx)
        test_acc = (evaluate_accuracy(test_data, net, ctx) if test_data is not None
                    else float('nan'))
        # Python floats before dividing: numpy 2 would divide a float32 sum in float32
        history['loss'].append(float(losses_read.sum()) / samples)
        history['train_acc'].append(float(nd.concat(*batch_correct, dim=0).asnumpy().sum())
                                    / samples)
        history['test_acc'].append(float(test_acc))
        history['seconds'].append(time.time() - start)
        history['images_per_sec'].append(samples / train_seconds)
        print_fn(format_epoch(epoch, history))
        if checkpoint:
            _save_checkpoint(checkpoint, net, trainer, epoch, history)
    return history
