"""utils.train on generated data: the training loop of every chapter, in seconds.

    python -m chapters.train_basics --devices cpu:2
    python -m utils.launch -n 2 -- python -m chapters.train_basics --kvstore dist_sync

Two Gaussian blobs, a small MLP, SGD: the epoch lines of the textbook, on one or several
contexts (`--devices cpu:2` runs the multi-GPU code path on a laptop), or in several worker
processes sharing gradients through a parameter server (`--kvstore dist_sync`), each worker
training on its own shard of the data.
"""
# %%
import utils  # sets OMP_NUM_THREADS before MXNet loads

import os

import numpy as np
from mxnet import gluon, init
from mxnet.gluon import nn

from utils.cli import Run, chapter_parser, devices_from, progress_from
from utils.distributed import create_kvstore, make_trainer, shard_dataset, worker_rank
from utils.errors import main_guard


def make_blobs(n, seed):
    """n points in 20 dimensions, two classes whose means differ by 1.5 along every axis."""
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, 2, size=n)
    points = rng.normal(size=(n, 20)) + 1.5 * labels[:, None]
    return points.astype('float32'), labels.astype('float32')


@main_guard
def main(argv=None):
    parser = chapter_parser(__doc__.splitlines()[0], default_out='out/train_basics')
    parser.add_argument('--epochs', type=int, default=5)
    parser.add_argument('--batch-size', type=int, default=64)
    args = parser.parse_args(argv)
    kv = create_kvstore(args.kvstore)  # with dist_sync: this worker's rank among num_workers
    rank, num_workers = worker_rank(kv)
    if num_workers > 1:  # one figure folder and metrics file per worker
        args.out = os.path.join(args.out, 'rank%d' % rank)
        if args.metrics_json:
            base, ext = os.path.splitext(args.metrics_json)
            args.metrics_json = '%s.rank%d%s' % (base, rank, ext or '.json')
    run = Run(args, 'train_basics')
    ctx = devices_from(args)
    utils.training.seed_everything(args.seed)

    # %% Data: 2000 training and 500 test points; with several workers each trains on its shard
    train_set = shard_dataset(gluon.data.ArrayDataset(*make_blobs(2000, args.seed)), kv)
    train_data = gluon.data.DataLoader(train_set, args.batch_size, shuffle=True)
    test_data = gluon.data.DataLoader(gluon.data.ArrayDataset(*make_blobs(500, args.seed + 1)),
                                      args.batch_size)

    # %% Model and training
    net = nn.HybridSequential()
    net.add(nn.Dense(32, activation='relu'), nn.Dense(2))
    net.initialize(init.Xavier(), ctx=ctx)
    net.hybridize()
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = make_trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1}, kv)
    history = utils.train(train_data, test_data, net, loss, trainer, ctx, args.epochs,
                          progress=progress_from(args), seed=args.seed)

    # %% Figure and metrics
    utils.plot_history({'mlp': history}, run.figure('history.png'))
    run.metrics.update(devices=[str(c) for c in ctx], kvstore=args.kvstore, rank=rank,
                       num_workers=num_workers, train_samples=len(train_set), history=history)
    run.finish()


if __name__ == '__main__':
    main()
