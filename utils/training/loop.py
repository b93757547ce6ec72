"""The textbook's `train` and `evaluate_accuracy`, data-parallel over any list of contexts.

Each batch is split over the contexts, every replica computes its share, the Trainer sums the
gradients (kvstore 'device', 'local' or 'dist_sync') and divides by the true batch size (with
'dist_sync': the sum of all workers' batches). Loss
and accuracy stay on the devices during an epoch and are read back once at its end, so the
Python loop never waits for a number it does not need.
"""
import json
import os
import pickle
import random
import sys
import time
import zipfile

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd
from tqdm import tqdm

from ..errors import UserError, one_line
from ..files import write_json, zip_bundle_reader, zip_bundle_writer
from .trainer_states import check_trainer_states

HISTORY_KEYS = ('loss', 'train_acc', 'test_acc', 'seconds', 'images_per_sec')


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


class ReplicasDisagree(UserError):
    """The workers of a 'dist_sync' run no longer hold the same parameters."""


# The kvstore key of the per-epoch replica check: far above the Trainer's keys (0, 1, ...,
# one per parameter), so it never meets a parameter on the servers.
REPLICA_CHECK_KEY = 1 << 24
# Replicas on one machine are bit-identical; other CPUs may round an update differently.
REPLICA_RTOL = 1e-5


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


def _is_dist_sync(trainer):
    kv = getattr(trainer, '_kvstore_params', {}).get('kvstore')
    kind = kv.type if isinstance(kv, mx.kv.KVStore) else kv
    return isinstance(kind, str) and kind.startswith('dist') and 'async' not in kind


def _is_dist_async(trainer):
    kv = getattr(trainer, '_kvstore_params', {}).get('kvstore')
    kind = kv.type if isinstance(kv, mx.kv.KVStore) else kv
    return isinstance(kind, str) and kind.startswith('dist') and 'async' in kind


def init_async(trainer, net, first_inputs, batch_size):
    """Prepare a 'dist_async' Trainer before its first step; return the batch size every
    step passes to trainer.step.

    Asynchronous SGD needs update_on_kvstore (the servers apply each worker's gradient as it
    arrives), so the optimizer, with rescale_grad = 1 / batch size, is pickled to the
    servers at the first step and cannot change afterwards. Every worker sends it, and each
    arrival resets the servers' optimizer states: a barrier after that, so no gradient is
    applied before every worker's copy has arrived.
    """
    if any(p._deferred_init for p in trainer._params):
        net(first_inputs[0])  # shapes only: predict mode, nothing recorded
    trainer._optimizer.rescale_grad = trainer._scale / batch_size  # what step(batch) sets
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
    for param in trainer._params:
        for data in param.list_data():
            data.wait_to_read()
    trainer._kvstore._barrier()
    return batch_size


def _scale_grads(trainer, factor):
    for param in _trained_params(trainer):
        for grad in param.list_grad():
            grad *= factor


def pull_final_params(trainer):
    """After asynchronous training: wait until every worker's last gradient has reached the
    servers, then give this worker the servers' parameters (all workers end equal)."""
    nd.waitall()  # this worker's pushes are acknowledged by the servers
    trainer._kvstore._barrier()
    for param in _trained_params(trainer):
        key = trainer._param2idx[param.name]
        trainer._kvstore.pull(key, param.list_data(), priority=-key)
    nd.waitall()


def _trained_params(trainer):
    return [p for p in trainer._params if p.grad_req != 'null']


def init_distributed(trainer, net, first_inputs):
    """Give every worker rank 0's parameters before the first batch is recorded.

    gluon.Trainer does this lazily inside the first `step`, after the first batch's forward
    and backward, and nothing orders a worker's initial pull (kv.broadcast) before its first
    gradient pushpull on the same key. The ps-lite of MXNet 1.9.1 queues a server's requests
    by priority, both have priority 0, and equal priorities are served in any order: under
    load a server can merge the gradients first and answer the initial pull with their sum,
    which then replaces that worker's weights (benchmarks/dist_init_order.py shows it).
    Hence: finish deferred shapes, broadcast, wait until this worker holds the pulled values,
    then a barrier, so no gradient is pushed before every worker has its weights.
    """
    params = trainer._params
    if any(p._deferred_init for p in params):
        net(first_inputs[0])  # shapes only: predict mode, nothing recorded
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._update_on_kvstore:
        raise UserError('utils.train checks after every epoch that the workers agree, which '
                        'needs update_on_kvstore=False: build the Trainer with '
                        'utils.training.distributed.make_trainer')
    if trainer._params_to_init:
        trainer._init_params()
    for param in params:
        for data in param.list_data():
            data.wait_to_read()
    _replica_check_key(trainer)
    trainer._kvstore._barrier()


def _replica_check_key(trainer):
    """The key of the replica check for this Trainer's parameters, initialised on first use
    (a key is initialised once per kvstore: a second init would count as a push)."""
    kv = trainer._kvstore
    shape = (kv.num_workers, len(_trained_params(trainer)), len(CHECKSUMS))
    keys = kv.__dict__.setdefault('_replica_check_keys', {})
    if shape not in keys:
        keys[shape] = REPLICA_CHECK_KEY + len(keys)
        kv.init(keys[shape], nd.zeros(shape))
    return keys[shape]


CHECKSUMS = ('sum', 'sum at even positions', 'sum of squares', 'sum of magnitudes')


def parameter_checksums(params):
    """Four sums per parameter (its first copy), accumulated in float64: a change anywhere
    moves some of them, and a swap of neighbours moves the second."""
    rows = []
    for param in params:
        x = param.list_data()[0].asnumpy().ravel()
        rows.append([part.sum(dtype=np.float64) for part in (x, x[::2], np.square(x), np.abs(x))])
    return np.array(rows).reshape(len(params), len(CHECKSUMS))


def gather_checksums(kv, key, checksums):
    """Every worker's checksums, (workers, parameters, 4): each worker fills its own row of a
    zero array and the servers add the rows up (adding zeros is exact). float32: float64
    arrays came back rounded to float32 through MXNet 1.9.1's dist kvstore."""
    slots = np.zeros((kv.num_workers,) + checksums.shape, dtype=np.float32)
    slots[kv.rank] = checksums
    gathered = nd.zeros(slots.shape)
    kv.pushpull(key, nd.array(slots), out=gathered)
    return gathered.asnumpy().astype(np.float64)


def _same(a, b):
    """Two workers' checksums of one parameter agree up to REPLICA_RTOL of their scale (the sum
    of magnitudes bounds the first two sums, the sum of squares is its own scale)."""
    scale = np.maximum(np.abs(a[[3, 3, 2, 3]]), np.abs(b[[3, 3, 2, 3]]))
    return bool(np.all(np.abs(a - b) <= REPLICA_RTOL * scale + 1e-30))


def replica_groups(table, index):
    """Workers grouped by the checksums of parameter `index`: one group when all agree."""
    groups = []
    for worker in range(table.shape[0]):
        for group in groups:
            if _same(table[group[0], index], table[worker, index]):
                group.append(worker)
                break
        else:
            groups.append([worker])
    return groups


def _describe(groups):
    names = ['(%s)' % ', '.join(str(w) for w in g) for g in groups]
    return ', '.join(names[:-1]) + ' and ' + names[-1]


def check_replicas(trainer, epoch):
    """Stop with one line when the workers of a 'dist_sync' run hold different parameters."""
    params = _trained_params(trainer)
    table = gather_checksums(trainer._kvstore, _replica_check_key(trainer),
                             parameter_checksums(params))
    differing = [(p.name, groups) for i, p in enumerate(params)
                 for groups in [replica_groups(table, i)] if len(groups) > 1]
    if differing:
        name, groups = differing[0]
        more = (' (and %d more parameters)' % (len(differing) - 1)
                if len(differing) > 1 else '')
        raise ReplicasDisagree(
            'the workers disagree after epoch %d: parameter %s differs between workers %s%s; '
            'the run cannot be trusted, start it again' % (epoch, name, _describe(groups), more))


def _total(parts, ctx):
    """The sum of per-device parts on `ctx`; one part is returned as it is (one operation less
    per batch, which a small net on a CPU notices)."""
    if len(parts) == 1 and parts[0].context == ctx:
        return parts[0]
    return nd.add_n(*[part.as_in_context(ctx) for part in parts])


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
            states = os.path.join(folder, 'trainer.states')
            check_trainer_states(states, 'checkpoint %s' % path)  # before pickle runs it
            trainer.load_states(states)
            return meta['epoch'] + 1, meta['history']
    # zip_bundle_reader checks every member's CRC, so a damaged file ends here, never half-read
    except (zipfile.BadZipFile, KeyError, TypeError, OSError, ValueError, AssertionError,
            EOFError, pickle.UnpicklingError, mx.MXNetError) as err:
        raise UserError('checkpoint %s cannot be read (%s): delete it to start over'
                        % (path, one_line(err, 120))) from None


def format_epoch(epoch, history):
    """The textbook's epoch line, followed by the throughput."""
    return ('Epoch %d. Loss: %.3f, Train acc %.2f, Test acc %.2f, Time %.1f sec (%.1f images/sec)'
            % (epoch, history['loss'][-1], history['train_acc'][-1], history['test_acc'][-1],
               history['seconds'][-1], history['images_per_sec'][-1]))


def train(train_data, test_data, net, loss, trainer, ctx, num_epochs, *, progress=None,
          seed=None, first_epoch=0, checkpoint=None, resume=False, sync_batchnorm=True,
          print_fn=print, on_batch_end=None):
    """Train `net` for `num_epochs` epochs on the contexts `ctx`; return the history.

    The history holds, per epoch: mean training loss, training and test accuracy, seconds
    (training and evaluation) and training images per second.

    progress: tqdm bar on stderr; None shows it only on a terminal.
    seed: when given, every epoch starts from generators seeded with (seed, epoch), which is
        what makes a resumed run end with the same parameters as an uninterrupted one.
    first_epoch: the number of this call's first epoch, for those seeds: a schedule trained
        in several calls (e.g. a learning-rate drop) passes the epochs trained so far, so the
        later epochs get new shuffles and augmentations instead of replaying the first ones.
    checkpoint: a file written atomically after each epoch; with resume=True training
        continues from it when it exists.
    sync_batchnorm: with several contexts, average the replicas' BatchNorm running statistics
        after each epoch, so evaluation does not depend on how batches were split.
    on_batch_end: called as on_batch_end(epoch, batch, loss) after every batch, with the
        batch's mean loss (Keras' onBatchEnd). Reading the loss waits for the batch to finish,
        so the devices no longer run ahead: for small heads, where the wait is short.

    Several machines: with a 'dist_sync' kvstore, each worker passes its own shard of the
    data (utils.training.distributed.shard_dataset) and the gradients of all workers are summed and
    divided by the global batch size, so W workers with batch B train like one process with
    batch W x B. Loss and accuracy in the history are this worker's. The parameters are
    broadcast from rank 0 before the first batch, and after every epoch the workers compare
    checksums of their trained parameters: ReplicasDisagree (one line) when they differ.
    """
    ctx = _as_list(ctx)
    params = net.collect_params()
    workers = sync_workers(trainer)
    dist_sync = _is_dist_sync(trainer)
    dist_async = _is_dist_async(trainer)
    dist_ready = False
    async_batch = None
    history = {key: [] for key in HISTORY_KEYS}
    start_epoch = 0
    if dist_async and checkpoint:
        raise UserError('train: no checkpoint with a dist_async kvstore (the optimizer states '
                        'live on the servers); use dist_sync, or no checkpoint')
    if resume and checkpoint and os.path.exists(checkpoint):
        start_epoch, history = _load_checkpoint(checkpoint, net, trainer, ctx)
        print_fn('Resuming from %s at epoch %d' % (checkpoint, start_epoch))
    print_fn('Start training on', ctx)
    for epoch in range(start_epoch, num_epochs):
        if seed is not None:
            seed_everything(seed * 1000 + first_epoch + epoch)
        start = time.time()
        batch_losses, batch_correct = [], []
        samples = 0
        pending = None
        bar = tqdm(train_data, desc='epoch %d' % epoch, file=sys.stderr, leave=False,
                   disable=None if progress is None else not progress, unit='batch')
        for batch in bar:
            data, label = _unpack(batch)
            xs, ys = split_batch(data, label, ctx)
            if dist_sync and not dist_ready:
                init_distributed(trainer, net, xs)
                dist_ready = True
            if dist_async and async_batch is None:
                async_batch = init_async(trainer, net, xs, data.shape[0])
            with autograd.record():
                outputs = [net(x) for x in xs]
                losses = [loss(out, y) for out, y in zip(outputs, ys)]
            for lo in losses:
                lo.backward()
            if len(xs) < len(ctx):
                _zero_idle_grads(params, ctx[len(xs):])
            step_size = data.shape[0] * workers
            if dist_async and step_size != async_batch:
                # The servers divide by the first batch's size: a smaller last batch of a
                # shard has its summed gradient scaled here so it is divided by its own.
                _scale_grads(trainer, async_batch / step_size)
                step_size = async_batch
            try:
                trainer.step(step_size)
            except UserWarning as err:  # raised by Trainer.step, see utils.training.distributed
                raise UserError('%s: build the Trainer with '
                                'utils.training.distributed.make_trainer '
                                '(update_on_kvstore=False)' % str(err).split('.')[0])
            samples += data.shape[0]
            batch_loss = _total([lo.sum() for lo in losses], ctx[0])
            batch_losses.append(batch_loss)
            batch_correct.append(_total([_correct(out, y) for out, y in zip(outputs, ys)],
                                        ctx[0]))
            # Stay at most one batch ahead of the devices: enough to keep them busy, and the
            # queued inputs of a whole epoch do not pile up in memory.
            if pending is not None:
                pending.wait_to_read()
            pending = batch_loss
            if on_batch_end is not None:
                on_batch_end(epoch, len(batch_losses) - 1,
                             float(batch_loss.asscalar()) / data.shape[0])
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
        if dist_sync:
            check_replicas(trainer, epoch)
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
    if dist_async and async_batch is not None:
        pull_final_params(trainer)
    return history


def train_arrays(net, loss_fn, trainer, train, val, batch_size, epochs, ctx=None, seed=0,
                 lr_drop=None, print_fn=print, label='Epoch'):
    """utils.train's sibling for in-memory arrays (cached features and any kind of label,
    e.g. boxes, which utils.train's accuracy cannot read); returns the history.

    train, val: (inputs, labels) numpy arrays (val may be None). Every epoch shuffles with
    a generator seeded by (seed, epoch). lr_drop: a fraction of the training steps after
    which the learning rate is divided by 5 (counted in steps, so that a run of one epoch
    drops half-way too). Prints one line per epoch, Keras-like:
    `Epoch 3/20 - loss: 812.345 - val_loss: 905.123 - 1.2 sec`.
    """
    from .predict import evaluate_loss
    ctx = _as_list(ctx or mx.cpu())
    params = net.collect_params()
    x_train, y_train = train
    history = {'loss': [], 'val_loss': [], 'seconds': []}
    base_lr = trainer.learning_rate
    steps_per_epoch = -(-len(x_train) // batch_size)
    drop_step = int(round(lr_drop * epochs * steps_per_epoch)) if lr_drop is not None else None
    step = 0
    for epoch in range(epochs):
        start = time.time()
        order = np.random.default_rng([seed, epoch]).permutation(len(x_train))
        total = []
        for i in range(0, len(order), batch_size):
            if step == drop_step and step > 0:
                trainer.set_learning_rate(base_lr / 5)
            step += 1
            idx = np.sort(order[i:i + batch_size])
            xs, ys = split_batch(nd.array(x_train[idx]), nd.array(y_train[idx]), ctx)
            with autograd.record():
                losses = [loss_fn(net(x), y) for x, y in zip(xs, ys)]
            for lo in losses:
                lo.backward()
            if len(xs) < len(ctx):
                _zero_idle_grads(params, ctx[len(xs):])
            trainer.step(len(idx))
            total.append(_total([lo.sum() for lo in losses], ctx[0]))
        loss = float(nd.add_n(*total).asscalar()) / len(order)
        if not np.isfinite(loss):
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
