"""Three ways to use a pretrained network on a few images, for a learning curve: fine-tuning,
frozen features with a new output layer, and training from scratch.

Each method is built (and hybridized) once and `run(data, indices, batch_size, updates, ctx,
seed)` restores its starting point, trains on the images `indices` of data['train'] for a
fixed number of updates and returns the test accuracy. `run_experiment` gives every method
the same subsets. The how-much-data chapter explains the settings; benchmarks/
few_shot_settings.py is the study behind them.
"""
import time

import numpy as np
from mxnet import autograd, gluon, init, nd

from .block import freeze_batchnorm, set_bn_momentum
from .few_shot import ALL, FixedUpdates, per_class_subset, pool_size
from .model_store import get_pretrained, new_classifier
from .training import evaluate_accuracy, seed_everything, train
from .transforms import augmentations, transform

TEXT_WD = 0.001  # the fine-tuning text's weight decay


def set_batchnorm(net, mode, momentum=0.9):
    """'inference': normalise with the running statistics and keep them (use_global_stats);
    'update': batch statistics in training, running averages updated with `momentum`.
    Set before hybridize: the flags are read when the graph is built."""
    if mode == 'inference':
        freeze_batchnorm(net)
    elif mode == 'update':
        set_bn_momentum(net, momentum)
    else:
        raise ValueError('batchnorm mode %r' % mode)


def fit(net, train_set, indices, test_set, settings, batch_size, updates, ctx, seed, trainable):
    """Train `net` (its `trainable` parameters) with SGD for `updates` batches of the images
    `indices` (one utils.train epoch); return the test accuracy."""
    sampler = FixedUpdates(indices, batch_size, updates, seed=seed)
    train_data = gluon.data.DataLoader(train_set, batch_sampler=sampler)
    test_data = gluon.data.DataLoader(test_set, 64)
    trainer = gluon.Trainer(trainable, 'sgd', {'learning_rate': settings['learning_rate'],
                                               'wd': settings.get('wd', TEXT_WD)})
    train(train_data, None, net, gluon.loss.SoftmaxCrossEntropyLoss(), trainer, ctx, 1,
          progress=False, seed=seed, print_fn=lambda *args: None)
    return evaluate_accuracy(test_data, net, ctx)


class FineTune:
    """The whole network trains from its own copy of the ImageNet weights; a new output layer,
    its learning rate x settings['output_lr_mult']; BatchNorm mode settings['batchnorm']."""

    def __init__(self, model_name, settings, ctx):
        self.settings = settings
        self.net = new_classifier(model_name)
        # its own copy of the ImageNet weights: training changes them
        self.net.features = get_pretrained(model_name).features
        self.net.output.initialize(init.Xavier(), ctx=ctx)
        self.net.collect_params().reset_ctx(ctx)
        set_batchnorm(self.net.features, settings['batchnorm'],
                      settings.get('bn_momentum', 0.9))
        self.imagenet = {name: p.data().copy()
                         for name, p in self.net.features.collect_params().items()}
        self.net.hybridize(static_alloc=True, static_shape=True)
        self.net.output.collect_params().setattr('lr_mult', settings['output_lr_mult'])

    def run(self, data, indices, batch_size, updates, ctx, seed):
        for name, p in self.net.features.collect_params().items():
            p.set_data(self.imagenet[name])
        seed_everything(seed)
        self.net.output.initialize(init.Xavier(), ctx=ctx, force_reinit=True)
        return fit(self.net, data['train'], indices, data['test'], self.settings, batch_size,
                   updates, ctx, seed, self.net.collect_params())


class Scratch:
    """The same architecture from a fresh Xavier start every run."""

    def __init__(self, model_name, settings, ctx):
        self.settings = settings
        self.net = new_classifier(model_name)
        self.net.initialize(init.Xavier(), ctx=ctx)
        set_batchnorm(self.net, settings['batchnorm'], settings.get('bn_momentum', 0.9))
        self.net.hybridize(static_alloc=True, static_shape=True)

    def run(self, data, indices, batch_size, updates, ctx, seed):
        seed_everything(seed)
        self.net.initialize(init.Xavier(), ctx=ctx, force_reinit=True)
        return fit(self.net, data['train'], indices, data['test'], self.settings, batch_size,
                   updates, ctx, seed, self.net.collect_params())


def extract_features(features, images, size, ctx, flip=False):
    """Features of the centre crops of uint8 HWC `images`, in inference mode (numpy)."""
    _, test_augs = augmentations(size, resize=False)
    out = []
    with autograd.predict_mode():
        for start in range(0, len(images), 64):
            batch = [transform(nd.array(img[:, ::-1] if flip else img), 0, test_augs)[0]
                     for img in images[start:start + 64]]
            out.append(features(nd.stack(*batch).as_in_context(ctx[0])).asnumpy())
    return np.concatenate(out)


class FrozenFeatures:
    """Only a new output layer trains, on features of the centre crop and its mirror image
    computed once per image of the pool ((train_x, train_y), (test_x, test_y))."""

    def __init__(self, pretrained_net, model_name, settings, ctx, train, test, size):
        self.settings = settings
        (train_x, train_y), (test_x, test_y) = train, test
        features = pretrained_net.features
        # training item 2i is image i, 2i + 1 its mirror image
        both = np.stack([extract_features(features, train_x, size, ctx),
                         extract_features(features, train_x, size, ctx, flip=True)], axis=1)
        self.train = gluon.data.ArrayDataset(
            nd.array(both.reshape((-1,) + both.shape[2:])),
            nd.array(np.repeat(train_y, 2).astype(np.float32)))
        self.test = gluon.data.ArrayDataset(
            nd.array(extract_features(features, test_x, size, ctx)),
            nd.array(test_y.astype(np.float32)))
        self.head = new_classifier(model_name).output
        self.head.initialize(init.Xavier(), ctx=ctx)
        self.head.hybridize(static_alloc=True, static_shape=True)

    def views(self, indices):
        """The cached items of the images `indices`: each image and its mirror."""
        indices = np.asarray(indices)
        return np.stack([2 * indices, 2 * indices + 1], axis=1).ravel()

    def run(self, data, indices, batch_size, updates, ctx, seed):
        seed_everything(seed)
        self.head.initialize(init.Xavier(), ctx=ctx, force_reinit=True)
        # the same number of images per batch as the other methods
        return fit(self.head, self.train, self.views(indices), self.test, self.settings,
                   min(batch_size, len(indices)), updates, ctx, seed,
                   self.head.collect_params())


def run_experiment(methods, data, train_y, per_class, seeds, updates, ctx, batch_size,
                   log=print):
    """For each seed and size one training subset, and every method trains on it.

    Returns {method: {size: [test accuracy per seed]}} and the seconds each method took.
    The batch is min(batch_size, training images).
    """
    accuracies = {name: {size: [] for size in per_class} for name in methods}
    seconds = {name: 0.0 for name in methods}
    for seed in seeds:
        for size in per_class:
            indices = per_class_subset(train_y, size, seed)
            run_seed = seed * 1000 + (pool_size(train_y) if size == ALL else size)
            line = []
            for name, method in methods.items():
                start = time.time()
                acc = method.run(data, indices, min(batch_size, len(indices)), updates, ctx,
                                 run_seed)
                seconds[name] += time.time() - start
                accuracies[name][size].append(acc)
                line.append('%s %.3f' % (name, acc))
            log('seed %d, %s per class (%d images): %s'
                % (seed, size, len(indices), ', '.join(line)))
    return accuracies, seconds
