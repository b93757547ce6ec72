# %% [markdown]
# # utils.train on generated data: the training loop of every chapter, in seconds
#
# Not a section of a source text: the textbook's `utils.train` (the loop the Gluon tutorial
# "Fine-tuning: 通过微调来迁移学习" calls), shown on its own. Two Gaussian blobs, a small MLP,
# SGD: the text's epoch lines, on one or several contexts (`--devices cpu:2` runs the
# multi-GPU code path on a laptop), or in several worker processes sharing gradients through
# a parameter server (`--kvstore dist_sync`), each worker training on its own shard of the data.
#
#     python -m chapters.train_basics --devices cpu:2
#     python -m utils.training.launch -n 2 -- python -m chapters.train_basics --kvstore dist_sync
#
# It took 4 s on 2 cores shared with other jobs (load 9, OMP_NUM_THREADS=1); there is no
# separate `--quick` setting.

# %%
import utils  # sets OMP_NUM_THREADS before MXNet loads

import os

import numpy as np
from mxnet import gluon, init
from mxnet.gluon import nn

from utils import opt
from utils.training.distributed import create_kvstore, make_trainer, shard_dataset, worker_rank

# %% [markdown]
# ## Settings
#
# With `--kvstore dist_sync` every worker gets its own figure folder and metrics file.

# %%
args = utils.settings('train_basics', 'utils.train on generated data: the training loop of '
                      'every chapter, in seconds', distributed=True,
                      epochs=opt(5, 'training epochs'),
                      batch_size=opt(64, 'points per batch'))
kv = create_kvstore(args.kvstore)  # with dist_sync: this worker's rank among num_workers
rank, num_workers = worker_rank(kv)
if num_workers > 1:
    args.out = os.path.join(args.out, 'rank%d' % rank)
    if args.metrics_json:
        base, ext = os.path.splitext(args.metrics_json)
        args.metrics_json = '%s.rank%d%s' % (base, rank, ext or '.json')
run = utils.Run(args, 'train_basics')
ctx = utils.parse_devices(args.devices)
utils.seed_everything(args.seed)

# %% [markdown]
# ## Data
#
# 2000 training and 500 test points in 20 dimensions, two classes whose means differ by 1.5
# along every axis. With several workers each trains on its shard (`shard_dataset`).


# %%
def make_blobs(n, seed):
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, 2, size=n)
    points = rng.normal(size=(n, 20)) + 1.5 * labels[:, None]
    return points.astype('float32'), labels.astype('float32')


train_set = shard_dataset(gluon.data.ArrayDataset(*make_blobs(2000, args.seed)), kv)
train_data = gluon.data.DataLoader(train_set, args.batch_size, shuffle=True)
test_data = gluon.data.DataLoader(gluon.data.ArrayDataset(*make_blobs(500, args.seed + 1)),
                                  args.batch_size)

# %% [markdown]
# ## Model and training
#
# `make_trainer` builds a `gluon.Trainer` that also works with a distributed kvstore
# (`update_on_kvstore=False` for `dist_sync`; `dist_async`, asynchronous SGD, updates on the
# servers; see docs/several-machines.md).

# %%
net = nn.HybridSequential()
net.add(nn.Dense(32, activation='relu'), nn.Dense(2))
net.initialize(init.Xavier(), ctx=ctx)
net.hybridize()
loss = gluon.loss.SoftmaxCrossEntropyLoss()
trainer = make_trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1}, kv)
history = utils.train(train_data, test_data, net, loss, trainer, ctx, args.epochs,
                      progress=False if args.no_progress else None, seed=args.seed)

# %%
utils.plot_history({'mlp': history}, run.figure('history.png'))
run.metrics.update(devices=[str(c) for c in ctx], kvstore=args.kvstore, rank=rank,
                   num_workers=num_workers, train_samples=len(train_set), history=history)
run.finish()
