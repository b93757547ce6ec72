"""Three ways to use a pretrained network on a few images, for a learning curve: fine-tuning,
frozen features with a new output layer, and training from scratch.

Each method is built (and hybridized) once and `run(data, indices, batch_size, updates, ctx,
seed)` restores its starting point, trains on the images `indices` of data['train'] for a
fixed number of updates and returns an `Outcome`: the test accuracy and the training loss of
each update. `run_experiment` gives every method the same subsets and flags runs whose loss
climbed. The how-much-data chapter explains the settings; benchmarks/few_shot_settings.py and
benchmarks/finetune_stability.py are the studies behind them.
"""
import time
from collections import namedtuple

import numpy as np
from mxnet import autograd, gluon, init, nd

from ..pretrained.block import freeze_batchnorm, set_bn_momentum
from .few_shot import ALL, FixedUpdates, per_class_subset, pool_size
from ..pretrained.model_store import get_pretrained, new_classifier
from .loop import evaluate_accuracy, seed_everything, train
from ..data.transforms import augmentations, transform

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


# A run whose training loss climbs to more than this many times its first value took steps
# too large for its weights. Measured (benchmarks/finetune_stability.py, the chapter's runs):
# fine-tuning runs that collapsed to chance climbed 4.2 to 900 times, healthy ones at most 2.4
# times; runs from scratch, which have nothing learned to lose, up to 5.4 (4 of 30 above 3).
RISE = 3


class Outcome(namedtuple('Outcome', 'accuracy losses')):
    """A run's test accuracy and the mean training loss of each of its updates (numpy)."""

    def loss_rose(self):
        """(update, loss) of the highest loss after the first update when it is above RISE
        times the first update's loss, else None. Updates count from 0."""
        if len(self.losses) < 2:
            return None
        worst = 1 + int(np.argmax(self.losses[1:]))
        if self.losses[worst] > RISE * self.losses[0]:
            return worst, float(self.losses[worst])
        return None


class RecordedLoss:
    """A loss that also keeps each batch's sum and size, on the device, to be read back once
    at the end (utils.train reports only the mean of a whole epoch)."""

    def __init__(self, loss):
        self.loss = loss
        self.sums, self.sizes = [], []

    def __call__(self, output, label):
        values = self.loss(output, label)
        with autograd.pause():
            self.sums.append(values.sum())
        self.sizes.append(values.shape[0])
        return values

    def per_update(self, updates):
        """The mean loss of each of `updates` updates (every update makes the same number of
        calls: one per device its batch is split over)."""
        if not self.sums:
            return np.zeros(0)
        sums = nd.concat(*self.sums, dim=0).asnumpy().reshape(updates, -1).sum(axis=1)
        return sums / np.reshape(self.sizes, (updates, -1)).sum(axis=1)


def train_updates(net, train_set, indices, settings, batch_size, updates, ctx, seed, trainable):
    """Train `net` (its `trainable` parameters) with SGD for `updates` batches of the images
    `indices` (one utils.train epoch); return the mean loss of each update."""
    sampler = FixedUpdates(indices, batch_size, updates, seed=seed)
    train_data = gluon.data.DataLoader(train_set, batch_sampler=sampler)
    trainer = gluon.Trainer(trainable, 'sgd', {'learning_rate': settings['learning_rate'],
                                               'wd': settings.get('wd', TEXT_WD)})
    loss = RecordedLoss(gluon.loss.SoftmaxCrossEntropyLoss())
    train(train_data, None, net, loss, trainer, ctx, 1, progress=False, seed=seed,
          print_fn=lambda *args: None)
    return loss.per_update(updates)


def held_out_accuracy(net, test_set, ctx):
    """Accuracy on the test photos (evaluated once, at the end of a run)."""
    return evaluate_accuracy(gluon.data.DataLoader(test_set, 64), net, ctx)


def fit(net, train_set, indices, test_set, settings, batch_size, updates, ctx, seed, trainable):
    """train_updates, then the test accuracy: an Outcome."""
    losses = train_updates(net, train_set, indices, settings, batch_size, updates, ctx, seed,
                           trainable)
    return Outcome(held_out_accuracy(net, test_set, ctx), losses)


def settle_shapes(net, example, ctx):
    """Give parameters whose initialisation waits for their input shape (Gluon's deferred
    initialisation) their shapes with one forward pass. Otherwise the first run of a method
    would draw its initial weights at its first training batch, after the training seeds,
    and a cell run alone would start elsewhere than the same cell in a longer run."""
    if any(p._deferred_init for p in net.collect_params().values()):
        with autograd.predict_mode():
            net(example.expand_dims(0).as_in_context(ctx[0]))


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
        settle_shapes(self.net, data['train'][indices[0]][0], ctx)
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
        settle_shapes(self.net, data['train'][indices[0]][0], ctx)
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
        settle_shapes(self.head, self.train[0][0], ctx)
        seed_everything(seed)
        self.head.initialize(init.Xavier(), ctx=ctx, force_reinit=True)
        # the same number of images per batch as the other methods
        return fit(self.head, self.train, self.views(indices), self.test, self.settings,
                   min(batch_size, len(indices)), updates, ctx, seed,
                   self.head.collect_params())


def rise_warning(name, outcome):
    """The line a run whose training loss rose above its first value gets, else None."""
    rose = outcome.loss_rose()
    if rose is None:
        return None
    update, loss = rose
    return ('  warning: the training loss of %s rose from %.3f at update 1 to %.3f at update %d,'
            ' more than %g times: its steps were too large for its weights (test accuracy %.3f)'
            % (name, outcome.losses[0], loss, update + 1, RISE, outcome.accuracy))


def run_experiment(methods, data, train_y, per_class, seeds, updates, ctx, batch_size,
                   log=print):
    """For each seed and size one training subset, and every method trains on it.

    Returns {method: {size: [test accuracy per seed]}}, the seconds each method took, and the
    runs whose training loss rose above RISE times its first value (each logged with a warning
    line):
    [{method, seed, size, first_loss, highest_loss, at_update, accuracy}].
    The batch is min(batch_size, training images).
    """
    accuracies = {name: {size: [] for size in per_class} for name in methods}
    seconds = {name: 0.0 for name in methods}
    rises = []
    for seed in seeds:
        for size in per_class:
            indices = per_class_subset(train_y, size, seed)
            run_seed = seed * 1000 + (pool_size(train_y) if size == ALL else size)
            line, warnings = [], []
            for name, method in methods.items():
                start = time.time()
                outcome = method.run(data, indices, min(batch_size, len(indices)), updates,
                                     ctx, run_seed)
                seconds[name] += time.time() - start
                accuracies[name][size].append(outcome.accuracy)
                line.append('%s %.3f' % (name, outcome.accuracy))
                warning = rise_warning(name, outcome)
                if warning:
                    warnings.append(warning)
                    update, loss = outcome.loss_rose()
                    rises.append({'method': name, 'seed': seed, 'size': str(size),
                                  'first_loss': float(outcome.losses[0]),
                                  'highest_loss': loss, 'at_update': update + 1,
                                  'accuracy': outcome.accuracy})
            log('seed %d, %s per class (%d images): %s'
                % (seed, size, len(indices), ', '.join(line)))
            for warning in warnings:
                log(warning)
    return accuracies, seconds, rises
