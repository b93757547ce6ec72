"""The settings study behind chapters.how_much_data: learning rate, BatchNorm mode, updates.

    python -m benchmarks.few_shot_settings --method fine-tune --lr 0.003 0.01 0.03 \
        --batchnorm inference update --per-class 4 32 --seeds 3 --updates 40 [--image-size 64]

On the offline faces (the chapter's pool and test set), each configuration trains on the same
subsets as the chapter (seeds 0 .. N-1) and prints the test accuracy after 1/2, 3/4 and all of
the updates: a setting is stable when the last two agree and the seeds agree.
"""
import utils  # noqa: F401  (sets OMP_NUM_THREADS before MXNet loads)

import argparse
import itertools
import os
import platform
import time

import numpy as np

from utils.training.few_shot import load_pool, parse_per_class, per_class_subset, pool_datasets
from utils.training.transfer_methods import FineTune, FrozenFeatures, Scratch, fit

BATCH_SIZE = 16  # at most, as in the chapter


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--method', choices=['fine-tune', 'frozen features', 'scratch'],
                        required=True)
    parser.add_argument('--lr', type=float, nargs='+', required=True)
    parser.add_argument('--batchnorm', nargs='+', default=['update'],
                        choices=['inference', 'update'])
    parser.add_argument('--bn-momentum', type=float, default=0.5)
    parser.add_argument('--output-lr-mult', type=float, default=10)
    parser.add_argument('--per-class', nargs='+', type=parse_per_class, default=[4, 32])
    parser.add_argument('--seeds', type=int, default=3)
    parser.add_argument('--updates', type=int, nargs='+', default=[40])
    parser.add_argument('--image-size', type=int, default=64)
    args = parser.parse_args()

    size = args.image_size
    train, test, synsets, _ = load_pool(argparse.Namespace(dataset='faces'), size * 256 // 224)
    data = pool_datasets(train, test, synsets, size)
    ctx = [utils.try_gpu()]
    model_name, pretrained = utils.pretrained_for('faces')
    print('%s, %d cores, OMP_NUM_THREADS=%s, load %s' % (
        platform.machine(), os.cpu_count(), os.environ.get('OMP_NUM_THREADS'),
        ' '.join('%.2f' % x for x in os.getloadavg())))
    print('%-44s %6s %-24s %-24s %-24s %6s %6s'
          % ('setting', 'n', 'acc at 1/2', 'at 3/4', 'at end', 'mean', 'sec'))
    for lr, bn, updates in itertools.product(args.lr, args.batchnorm, args.updates):
        settings = {'learning_rate': lr, 'batchnorm': bn, 'bn_momentum': args.bn_momentum,
                    'output_lr_mult': args.output_lr_mult}
        if args.method == 'fine-tune':
            method = FineTune(model_name, settings, ctx)
            net = method.net
            label = 'fine-tune lr %g (x%g) BN %s' % (lr, args.output_lr_mult, bn)
        elif args.method == 'scratch':
            method = Scratch(model_name, settings, ctx)
            net, label = method.net, 'scratch lr %g BN %s' % (lr, bn)
        else:
            method = FrozenFeatures(pretrained, model_name, settings, ctx, train, test, size)
            net, label = method.head, 'frozen lr %g' % lr
        label += ' U%d' % updates
        for n in args.per_class:
            accs = [[], [], []]
            start = time.time()
            for seed in range(args.seeds):
                indices = per_class_subset(train[1], n, seed)
                batch = min(BATCH_SIZE, len(indices))
                run_seed = seed * 1000 + (80 if n == 'all' else n)
                # half the updates from the method's fresh start, then two quarters more
                first = method.run(data, indices, batch, updates // 2, ctx, run_seed)
                accs[0].append(first.accuracy)
                if args.method == 'frozen features':
                    train_set, test_set = method.train, method.test
                    views = method.views(indices)
                else:
                    train_set, test_set, views = data['train'], data['test'], indices
                for q in (1, 2):
                    accs[q].append(fit(net, train_set, views, test_set, settings, batch,
                                       updates // 4, ctx, run_seed + q,
                                       net.collect_params()).accuracy)
            print('%-44s %6s %-24s %-24s %-24s %6.3f %6.0f' % (
                label, n, *[' '.join('%.3f' % a for a in acc) for acc in accs],
                np.mean(accs[2]), time.time() - start), flush=True)


if __name__ == '__main__':
    main()
