"""Several machines: MXNet's parameter-server kvstore, and each worker's share of the data.

A worker started by `python -m utils.training.launch` (or by hand with the DMLC_* variables, see
docs/several-machines.md) creates a `dist_sync` kvstore, hands it to its gluon.Trainer and
trains on its own shard of the training data. The servers add up the workers' gradients at
every step, so all workers keep identical parameters. With `dist_async` the servers apply
each worker's gradient as it arrives (asynchronous SGD): workers never wait for each other,
and utils.train gives them the servers' parameters once all have finished.
"""
import mxnet as mx
from mxnet import gluon

from ..errors import UserError
from ..data.split import IndexSampler

KVSTORE_CHOICES = ('device', 'local', 'dist_sync', 'dist_device_sync', 'dist_async')


def create_kvstore(name):
    """The kvstore for gluon.Trainer: a KVStore object for 'dist_*' (its rank and number of
    workers decide the shard), else the name itself (the Trainer creates it lazily)."""
    if not name.startswith('dist'):
        return name
    import os
    if 'DMLC_ROLE' not in os.environ:
        raise UserError('--kvstore %s needs the parameter-server variables (DMLC_ROLE, '
                        'DMLC_PS_ROOT_URI, ...): start the run with '
                        '`python -m utils.training.launch -n WORKERS -- '
                        'python -m chapters.<name> --kvstore %s ...`'
                        % (name, name))
    return mx.kv.create(name)


def worker_rank(kv):
    """(rank, number of workers) of this process; (0, 1) for a local kvstore or a name."""
    if isinstance(kv, mx.kv.KVStore):
        return kv.rank, kv.num_workers
    return 0, 1


def shard_dataset(dataset, kv=None, *, rank=None, num_workers=None):
    """This worker's share of `dataset`: samples rank, rank + W, rank + 2W, ... (W workers).

    Every shard has len(dataset) // W samples (the last len(dataset) % W are left out), so all
    workers run the same number of batches: in dist_sync a worker that took one step more
    than the others would wait for them forever. Strided rather than contiguous, so that a
    folder listed class by class gives every worker every class. Shuffle after sharding (the
    DataLoader's shuffle=True does). Without a distributed kvstore the dataset is returned as
    it is.
    """
    if rank is None or num_workers is None:
        rank, num_workers = worker_rank(kv)
    if not 0 <= rank < num_workers:
        raise ValueError('rank %d is not in [0, %d)' % (rank, num_workers))
    if num_workers == 1:
        return dataset
    per_worker = len(dataset) // num_workers
    if per_worker == 0:
        raise UserError('%d samples cannot be shared among %d workers'
                        % (len(dataset), num_workers))
    return dataset.sample(IndexSampler(range(rank, per_worker * num_workers, num_workers)))


def make_trainer(params, optimizer, optimizer_params, kvstore='device'):
    """gluon.Trainer for any kvstore; with a distributed one, updates run on the workers.

    With update_on_kvstore=True (Gluon's default for 'dist_*') the servers apply the
    optimizer with the gradient scale of the first step, and Trainer.step raises when a later
    batch (the last of an epoch) has another size. With update_on_kvstore=False the servers
    only add up gradients and each worker divides by its own batch size: every worker has the
    same number of samples per batch (shard_dataset), so all keep identical parameters.
    'dist_async' is the exception: its updates must run on the servers (MXNet forces
    update_on_kvstore), so utils.train keeps the first step's scale and scales a smaller
    batch's gradient itself.
    `kvstore` is a name ('device', 'dist_sync', ...) or a KVStore from create_kvstore.
    """
    if isinstance(kvstore, str) and kvstore.startswith('dist'):
        kvstore = create_kvstore(kvstore)
    kwargs = {}
    if isinstance(kvstore, mx.kv.KVStore) and kvstore.type.startswith('dist') \
            and 'async' not in kvstore.type:
        kwargs['update_on_kvstore'] = False
    return gluon.Trainer(params, optimizer, optimizer_params, kvstore=kvstore, **kwargs)
