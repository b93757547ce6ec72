"""Does fine-tuning collapse? The how-much-data chapter's fine-tune cell over many seeds.

    OMP_NUM_THREADS=1 python -m benchmarks.finetune_stability --per-class all --seeds 20 \
        --lr 0.001 0.003 [--updates 40] [--image-size 64] [--first-seed 0]

On the offline faces (the chapter's pool, test photos and subsets: seed s trains on the
chapter's subset of seed s with the chapter's run seed), every setting fine-tunes MobileNetV2
once per seed and prints one line per run: the test accuracy, the training loss at the first
update, its highest value after that (and at which update), the mean of the last 5 updates,
the share of test photos put in class 1 (0 or 1: the output no longer depends on the photo),
the spread of the features over the test photos (near 0: dead features), and how far the
inputs of the BatchNorm layers (which normalise with ImageNet's fixed statistics) have moved
from those statistics: the largest, over layers, of the mean over channels of
|batch mean - running mean| / running standard deviation, before and after training.
A summary per setting ends the output. Compare thread counts by running it twice.
"""
import utils  # noqa: F401  (sets OMP_NUM_THREADS before MXNet loads)

import argparse
import os
import platform
import time

import numpy as np
from mxnet import autograd, nd

from utils.pretrained.block import batchnorms
from utils.training.few_shot import (load_pool, parse_per_class, per_class_subset, pool_datasets,
                                     pool_size)
from utils.training.transfer_methods import RISE, FineTune

BATCH_SIZE = 16  # at most, as in the chapter


def batchnorm_shift(net, images):
    """Largest over the BatchNorm layers of `net.features` of the mean over channels of
    |mean of the layer's input over `images` - running mean| / running standard deviation.
    Runs the features imperatively (hooks do not fire inside a hybridized graph), then
    hybridizes the net again as the methods do."""
    shifts = []

    def hook(block, inputs):
        x = inputs[0]
        mean = x.mean(axis=(0, 2, 3))
        sd = nd.sqrt(block.running_var.data() + block._kwargs['eps'])
        shifts.append(float((nd.abs(mean - block.running_mean.data()) / sd).mean().asscalar()))
    handles = [bn.register_forward_pre_hook(hook) for bn in batchnorms(net.features)]
    net.hybridize(active=False)
    with autograd.predict_mode():
        net.features(images)
    for handle in handles:
        handle.detach()
    net.hybridize(static_alloc=True, static_shape=True)
    return max(shifts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--per-class', type=parse_per_class, default='all')
    parser.add_argument('--seeds', type=int, default=20)
    parser.add_argument('--first-seed', type=int, default=0)
    parser.add_argument('--lr', type=float, nargs='+', default=[0.001])
    parser.add_argument('--output-lr-mult', type=float, default=10)
    parser.add_argument('--updates', type=int, default=40)
    parser.add_argument('--image-size', type=int, default=64)
    args = parser.parse_args()

    size = args.image_size
    train, test, synsets, _ = load_pool(argparse.Namespace(dataset='faces'), size * 256 // 224)
    data = pool_datasets(train, test, synsets, size)
    ctx = [utils.try_gpu()]
    model_name, _ = utils.pretrained_for('faces')
    test_x = nd.stack(*[data['test'][i][0] for i in range(len(data['test']))])
    n = args.per_class
    print('%s, %d cores, OMP_NUM_THREADS=%s, load %s; %s per class, %d updates, %d px' % (
        platform.machine(), os.cpu_count(), os.environ.get('OMP_NUM_THREADS'),
        ' '.join('%.2f' % x for x in os.getloadavg()), n, args.updates, size), flush=True)
    print('%-30s %4s %6s %6s %12s %6s %7s %6s %13s %5s'
          % ('setting', 'seed', 'acc', 'loss1', 'highest (at)', 'last5', 'class1', 'spread',
             'BN shift', 'sec'))
    for lr in args.lr:
        settings = dict(learning_rate=lr, output_lr_mult=args.output_lr_mult,
                        batchnorm='inference', wd=0.001)
        method = FineTune(model_name, settings, ctx)
        label = 'lr %g (output x%g)' % (lr, args.output_lr_mult)
        accs, rose = [], 0
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            indices = per_class_subset(train[1], n, seed)
            run_seed = seed * 1000 + (pool_size(train[1]) if n == 'all' else n)
            start = time.time()
            outcome = method.run(data, indices, min(BATCH_SIZE, len(indices)), args.updates,
                                 ctx, run_seed)
            seconds = time.time() - start
            with autograd.predict_mode():
                logits = method.net(test_x)
                features = method.net.features(test_x).asnumpy().reshape(len(test_x), -1)
            shift = batchnorm_shift(method.net, test_x)
            # the shift of the ImageNet weights on these photos, for comparison
            for name, p in method.net.features.collect_params().items():
                p.set_data(method.imagenet[name])
            shift0 = batchnorm_shift(method.net, test_x)
            losses = outcome.losses
            top = 1 + int(np.argmax(losses[1:]))
            accs.append(outcome.accuracy)
            rose += outcome.loss_rose() is not None
            print('%-30s %4d %6.3f %6.3f %7.3f (%2d) %6.3f %7.2f %6.3f %5.2f->%6.2f %5.0f' % (
                label, seed, outcome.accuracy, losses[0], losses[top], top + 1,
                losses[-5:].mean(), float(logits.argmax(axis=1).mean().asscalar()),
                features.std(axis=0).mean(), shift0, shift, seconds), flush=True)
        accs = np.array(accs)
        print('SUMMARY %s: %d seeds, accuracy mean %.3f, min %.3f, max %.3f; below 0.9: %d; '
              'loss rose above %g times its first value: %d'
              % (label, len(accs), accs.mean(), accs.min(), accs.max(), (accs < 0.9).sum(),
                 RISE, rose), flush=True)


if __name__ == '__main__':
    main()
