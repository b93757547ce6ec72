"""Transfer learning and fine-tuning: feature extraction, then fine-tuning the top of MobileNetV2.

    python -m chapters.feature_extraction [--quick] [--dataset hotdog|faces|auto]

The text's two ways to customise a pretrained network, in Gluon:

1. Feature extraction: the whole MobileNetV2 base frozen, global average pooling, dropout 0.2
   and a new dense output trained on top. The base's output is computed once and cached, so
   the head trains in a fraction of a second per epoch (measured against recomputing it).
2. Fine-tuning: the top of the base unfrozen (from the same point as the text's
   `fine_tune_at = 100` of Keras' 154 layers), a learning rate one tenth of the first, BatchNorm
   kept in inference mode, and a measured comparison with BatchNorm statistics left updating.

Online the data are hotdog / not-hotdog (the fine-tuning chapter's data set); offline,
scikit-image's real face / not-face photos stand in. The text's test split is carved from the
validation data: one fifth of it.
"""
# %%
import utils  # sets OMP_NUM_THREADS before MXNet loads

import copy
import os
import tempfile
import time

import numpy as np
from mxnet import gluon, init, nd
from mxnet.gluon import nn

from chapters import fine_tuning
from utils import detection
from utils.cli import Run, chapter_parser, devices_from, progress_from
from utils.datasets import HOTDOG_SHA1, HOTDOG_URLS
from utils.errors import UserError, main_guard
from utils.plotting import plt, save_figure

MODEL = 'mobilenetv2_1.0'
# Keras' MobileNetV2 has 154 layers and the text fine-tunes from layer 100,
# `block_11_expand_relu`: block_11's expansion convolution and its BatchNorm stay frozen,
# its depthwise convolution and everything after train. Gluon's `features` holds the 17
# bottlenecks as children 3-19 (Keras `expanded_conv` is 3, `block_k` is 3 + k), so the same
# point is `features[14].out[3:]` (the depthwise conv of block_11) and then `features[15:23]`:
# 54 weight arrays, 56 with the new output layer, exactly the text's count.
FINE_TUNE_BLOCK, FINE_TUNE_LAYER = 14, 3


def build_parser():
    parser = chapter_parser(__doc__.splitlines()[0], default_out='out/feature_extraction')
    parser.add_argument('--dataset', choices=['auto', 'hotdog', 'faces'], default='auto',
                        help='auto: hotdog when it can be had, else faces (offline)')
    parser.add_argument('--image-size', type=int, default=None,
                        help='crop size in pixels; default 160, as in the text (quick: 96)')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--initial-epochs', type=int, default=None,
                        help='feature-extraction epochs; default: 10 on hotdog (63 batches '
                             'each, as in the text), 100 on the 160 face photos (5 batches '
                             'each: about the same number of steps; cached, they take '
                             'seconds)')
    parser.add_argument('--fine-tune-epochs', type=int, default=None,
                        help='fine-tuning epochs; default 10 (quick: 5)')
    parser.add_argument('--base-learning-rate', type=float, default=1e-4,
                        help="Adam's learning rate for the head; fine-tuning uses one tenth")
    parser.add_argument('--no-bn-comparison', action='store_true',
                        help='skip fine-tuning a second time with BatchNorm statistics updating')
    parser.add_argument('--data-dir', default=os.environ.get('GLUON_TRANSFER_DATA'),
                        help='where hotdog.zip is downloaded and extracted (default: data/)')
    parser.add_argument('--data-url', action='append', default=None,
                        help='mirror of hotdog.zip, tried before the default URLs')
    parser.add_argument('--data-sha1', default=os.environ.get('HOTDOG_SHA1', HOTDOG_SHA1),
                        help="sha1 of the mirror's hotdog.zip")
    return parser


def parse_args(argv=None):
    args = build_parser().parse_args(argv)
    args.image_size = args.image_size or (96 if args.quick else 160)
    args.fine_tune_epochs = args.fine_tune_epochs or (5 if args.quick else 10)
    args.urls = (args.data_url or []) + list(HOTDOG_URLS)  # what fine_tuning.get_data reads
    return args


# %% [markdown]
# ## Data: train, validation, and a test split carved from the validation data
# The fine-tuning chapter's data (hotdog, or the offline faces) with its augmentations
# (random crop and flip). The text moves one fifth of the validation batches to a test set;
# here one fifth of the (shuffled) validation images.

# %%
def with_transform(dataset, fn):
    """The same images through another transform (e.g. the training images without
    augmentation, for the feature cache)."""
    view = copy.copy(dataset)
    view._transform = fn
    return view


class Indices(gluon.data.Sampler):
    """The given indices, in order (for Dataset.sample)."""

    def __init__(self, indices):
        self._indices = [int(i) for i in indices]

    def __iter__(self):
        return iter(self._indices)

    def __len__(self):
        return len(self._indices)


def split_validation(dataset, seed, fraction=5):
    """(validation, test): a random 1/fraction of `dataset` becomes the test set."""
    if len(dataset) < 2:
        raise UserError('%d validation image(s): at least two are needed to carve out a test '
                        'set' % len(dataset))
    order = np.random.RandomState(seed).permutation(len(dataset))
    cut = max(1, len(dataset) // fraction)
    return (dataset.sample(Indices(sorted(order[cut:]))),
            dataset.sample(Indices(sorted(order[:cut]))))


def denormalise(X):
    """Normalised CHW batch -> HWC images in [0, 1], for figures."""
    return (X * fine_tuning.STD + fine_tuning.MEAN).transpose((0, 2, 3, 1)).clip(0, 1)


# %% [markdown]
# ## The base model and the classification head
# `pretrained_net.features` ends with global average pooling: its output is the text's
# `feature_batch_average`, 1280 numbers per image. The head is Dropout(0.2) and a Dense layer
# with 2 outputs (softmax cross-entropy on two logits instead of the text's one sigmoid
# logit: the same model, and the accuracy of utils.train reads an argmax).

# %%
def make_head(classes=2):
    head = nn.HybridSequential(prefix='head_')
    with head.name_scope():
        head.add(nn.Dropout(0.2), nn.Dense(classes))
    head.initialize(init.Xavier())
    return head


def top_layers(base):
    """The part of `features` that fine-tuning trains (see FINE_TUNE_BLOCK above)."""
    return [base[FINE_TUNE_BLOCK].out[FINE_TUNE_LAYER:], base[FINE_TUNE_BLOCK + 1:]]


def bottom_layers(base):
    return [base[:FINE_TUNE_BLOCK], base[FINE_TUNE_BLOCK].out[:FINE_TUNE_LAYER]]


def unfreeze_top(base, bn_inference=True):
    """Freeze `base`, then make its top trainable (weights, BatchNorm gamma and beta).

    bn_inference: every BatchNorm uses and keeps its running statistics (the text's
    `training=False`); otherwise the unfrozen top normalises with batch statistics and
    updates its running mean and variance at every step. Call before hybridize().
    """
    detection.set_trainable(base, False)
    for part in (bottom_layers(base) + top_layers(base)) if bn_inference else bottom_layers(base):
        detection.freeze_batchnorm(part)
    for part in top_layers(base):
        detection.set_trainable(part, True)
    return base


def running_stats(block):
    """Copies of every BatchNorm running mean and variance in `block`."""
    return {name: p.data().copy() for name, p in block.collect_params().items()
            if name.endswith(('running_mean', 'running_var'))}


# %% [markdown]
# ## Training with Keras-like epoch lines
# utils.train runs each epoch; the validation loss and accuracy are computed after it, in
# inference mode, and printed as the text's `model.fit` does.

# %%
def evaluate(net, data, ctx):
    """(mean softmax cross-entropy, accuracy) of `net` on a DataLoader, in inference mode."""
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    total, correct, count = 0.0, 0.0, 0
    for X, y in data:
        out = net(X.as_in_context(ctx[0]))
        y = y.as_in_context(ctx[0])
        total += float(loss_fn(out, y).sum().asscalar())
        correct += float((out.argmax(axis=1) == y.astype('float32')).sum().asscalar())
        count += X.shape[0]
    return total / count, correct / count


def fit(net, trainer, train_data, val_data, ctx, epochs, initial_epoch=0, seed=0,
        progress=None):
    """Keras' fit: epochs initial_epoch+1 .. initial_epoch+epochs; returns the history."""
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    history = {key: [] for key in ('loss', 'accuracy', 'val_loss', 'val_accuracy', 'seconds',
                                   'images_per_sec')}
    total = initial_epoch + epochs
    for epoch in range(initial_epoch, total):
        h = utils.train(train_data, None, net, loss_fn, trainer, ctx, 1, progress=progress,
                        seed=seed * 100 + epoch, print_fn=lambda *a: None)
        val_loss, val_acc = evaluate(net, val_data, ctx)
        for key, value in (('loss', h['loss'][0]), ('accuracy', h['train_acc'][0]),
                           ('val_loss', val_loss), ('val_accuracy', val_acc),
                           ('seconds', h['seconds'][0]),
                           ('images_per_sec', h['images_per_sec'][0])):
            history[key].append(float(value))
        if epochs > 20 and (epoch + 1 - initial_epoch) % 10 and epoch + 1 < total:
            continue  # long cached runs: every tenth epoch
        print('Epoch %d/%d - %.1fs - accuracy: %.4f - loss: %.4f - val_accuracy: %.4f - '
              'val_loss: %.4f' % (epoch + 1, total, h['seconds'][0], h['train_acc'][0],
                                  h['loss'][0], val_acc, val_loss))
    return history


def features_of(base, dataset, batch_size, ctx):
    """The frozen base's output for every image, computed once: (features, labels) arrays."""
    labels = []

    def batches():
        for X, y in gluon.data.DataLoader(dataset, batch_size):
            labels.append(y.asnumpy())
            yield X
    return detection.extract_features(base, batches(), ctx[0]), np.concatenate(labels)


def feature_loader(feats, labels, batch_size, shuffle=False):
    return gluon.data.DataLoader(gluon.data.ArrayDataset(nd.array(feats), nd.array(labels)),
                                 batch_size, shuffle=shuffle)


def seconds_per_head_epoch(history):
    """Training seconds of one head epoch (utils.train's images/sec, evaluation left out)."""
    return float(np.median([1.0 / ips for ips in history['images_per_sec']]))


# %% [markdown]
# ## Figures

# %%
def plot_learning_curves(history, fine, path, initial_epochs, compare=None):
    """The text's two panels; the vertical line marks the start of fine-tuning."""
    fig, axes = plt.subplots(2, 1, figsize=(8, 8))
    epochs = np.arange(1, len(history['loss']) + len(fine['loss']) + 1)
    for ax, key, name in ((axes[0], 'accuracy', 'Accuracy'), (axes[1], 'loss', 'Loss')):
        ax.plot(epochs, history[key] + fine[key], label='Training ' + name)
        ax.plot(epochs, history['val_' + key] + fine['val_' + key], label='Validation ' + name)
        if compare is not None:
            ax.plot(epochs[initial_epochs:], compare['val_' + key], '--', color='tab:red',
                    label='Validation %s, BN statistics updating' % name)
        ax.axvline(initial_epochs + 0.5, color='green', label='Start Fine Tuning')
        ax.set(title='Training and Validation ' + name, ylabel=name)
        ax.grid(True, alpha=0.3)
        ax.legend(loc='lower right' if key == 'accuracy' else 'upper right', fontsize=8)
    axes[1].set(xlabel='epoch')
    save_figure(fig, path)


def show_predictions(net, test_imgs, synsets, ctx, path):
    """3x3 test images titled with the predicted class (and the true one when wrong)."""
    X, y = next(iter(gluon.data.DataLoader(test_imgs, 9)))
    pred = net(X.as_in_context(ctx[0])).argmax(axis=1).asnumpy().astype(int)
    titles = [synsets[p] if p == t else '%s (is %s)' % (synsets[p], synsets[int(t)])
              for p, t in zip(pred, y.asnumpy())]
    utils.show_images(denormalise(X), 3, 3, titles=titles, scale=2.5, path=path)
    return pred, y.asnumpy().astype(int)


@main_guard
def main(argv=None):
    args = parse_args(argv)
    run = Run(args, 'feature_extraction')
    ctx = devices_from(args)
    progress = progress_from(args)
    utils.training.seed_everything(args.seed)
    size = args.image_size

    # %% Data: train, validation, test (one fifth of the validation images)
    train_imgs, val_imgs, dataset, _ = fine_tuning.get_data(args, size)
    if not args.initial_epochs:
        args.initial_epochs = 10 if dataset == 'hotdog' else 100
    synsets = train_imgs.synsets
    _, test_augs = fine_tuning.augmentations(size, resize=dataset == 'hotdog')
    val_imgs, test_imgs = split_validation(val_imgs, args.seed)
    print('%s: %d training, %d validation and %d test images, classes %s, %dx%d'
          % (dataset, len(train_imgs), len(val_imgs), len(test_imgs), synsets, size, size))
    train_data = gluon.data.DataLoader(train_imgs, args.batch_size, shuffle=True)
    val_data = gluon.data.DataLoader(val_imgs, args.batch_size)
    test_data = gluon.data.DataLoader(test_imgs, args.batch_size)

    # %% The base model: MobileNetV2's features, pretrained on ImageNet, frozen
    pretrained_net = utils.get_pretrained(MODEL, ctx=ctx[0])
    base_model = detection.freeze(pretrained_net.features)
    base_model.hybridize(static_alloc=True)
    X, _ = next(iter(train_data))
    print('feature_batch:', base_model[:-1](X).shape, '-> feature_batch_average:',
          base_model(X).reshape((X.shape[0], -1)).shape)

    # %% Feature extraction: the head alone, trained on the base's output computed once
    plain_train = with_transform(train_imgs, lambda img, label: fine_tuning.transform(
        img, label, test_augs))
    start = time.time()
    train_feats, train_labels = features_of(base_model, plain_train, args.batch_size, ctx)
    val_feats, val_labels = features_of(base_model, val_imgs, args.batch_size, ctx)
    print('Cached the base output of %d images in %.1f sec'
          % (len(train_feats) + len(val_feats), time.time() - start))
    head = make_head(len(synsets))
    head.collect_params().reset_ctx(ctx)
    cached_train = feature_loader(train_feats, train_labels, args.batch_size, shuffle=True)
    cached_val = feature_loader(val_feats, val_labels, args.batch_size)
    loss0, accuracy0 = evaluate(head, cached_val, ctx)
    print('initial loss: {:.2f}'.format(loss0))
    print('initial accuracy: {:.2f}'.format(accuracy0))
    trainer = gluon.Trainer(head.collect_params(), 'adam',
                            {'learning_rate': args.base_learning_rate})
    history = fit(head, trainer, cached_train, cached_val, ctx, args.initial_epochs,
                  seed=args.seed, progress=progress)

    # %% What the cache saves: one head epoch recomputing the frozen base for every batch
    timing_net = nn.HybridSequential()
    timing_net.add(base_model, make_head(len(synsets)))
    timing_net.collect_params().reset_ctx(ctx)
    timing_net.hybridize(static_alloc=True, static_shape=True)
    timing_trainer = gluon.Trainer(timing_net[1].collect_params(), 'adam',
                                   {'learning_rate': args.base_learning_rate})
    recomputed = utils.train(gluon.data.DataLoader(plain_train, args.batch_size, shuffle=True),
                             None, timing_net, gluon.loss.SoftmaxCrossEntropyLoss(),
                             timing_trainer, ctx, 1, progress=progress, seed=args.seed,
                             print_fn=lambda *a: None)
    cached_s = seconds_per_head_epoch(history) * len(train_feats)
    recomputed_s = seconds_per_head_epoch(recomputed) * len(train_feats)
    print('Seconds per head epoch (%d images): cached features %.4f, recomputing the base '
          '%.2f: %.0fx faster'
          % (len(train_feats), cached_s, recomputed_s, recomputed_s / cached_s))

    # %% Fine-tuning: unfreeze the top of the base, BatchNorm kept in inference mode
    head_file = os.path.join(tempfile.mkdtemp(prefix='head-'), 'head.params')
    head.save_parameters(head_file)
    print('Number of children in features:', len(base_model),
          '; fine-tune from features[%d].out[%d] (Keras layer 100 of 154, block_11)'
          % (FINE_TUNE_BLOCK, FINE_TUNE_LAYER))

    def fine_tune(bn_inference, label):
        base = unfreeze_top(utils.get_pretrained(MODEL).features, bn_inference)
        new_head = make_head(len(synsets))
        new_head.load_parameters(head_file)
        model = nn.HybridSequential()
        model.add(base, new_head)
        model.collect_params().reset_ctx(ctx)
        model.hybridize(static_alloc=True, static_shape=True)
        params = detection.trainable_params(model)
        before = running_stats(base)
        trainer = gluon.Trainer(params, 'rmsprop',
                                {'learning_rate': args.base_learning_rate / 10})
        print('%s: %d trainable weight arrays' % (label, len(params)))
        fine = fit(model, trainer, train_data, val_data, ctx, args.fine_tune_epochs,
                   initial_epoch=args.initial_epochs, seed=args.seed, progress=progress)
        after = running_stats(base)
        drift = max(float(nd.abs(after[k] - before[k]).max().asscalar()) for k in before)
        return model, fine, drift, len(params)

    model, history_fine, drift, n_trainable = fine_tune(True, 'BatchNorm in inference mode')
    rows = [('BatchNorm in inference mode', history_fine, drift, evaluate(model, test_data, ctx))]
    compare = None
    if not args.no_bn_comparison:
        bn_model, compare, bn_drift, _ = fine_tune(False, 'BatchNorm statistics updating')
        rows.append(('BatchNorm statistics updating', compare, bn_drift,
                     evaluate(bn_model, test_data, ctx)))
    os.remove(head_file)
    os.rmdir(os.path.dirname(head_file))

    print('%-30s %9s %9s %9s %10s %18s'
          % ('fine-tuning', 'val loss', 'val acc', 'test acc', 'best val', 'max BN stat change'))
    for name, h, change, (_, test_acc) in rows:
        print('%-30s %9.3f %9.3f %9.3f %10.3f %18.4f'
              % (name, h['val_loss'][-1], h['val_accuracy'][-1], test_acc,
                 max(h['val_accuracy']), change))

    # %% Learning curves of both phases, test accuracy, predictions
    plot_learning_curves(history, history_fine, run.figure('learning_curves.png'),
                         args.initial_epochs, compare)
    test_loss, test_accuracy = rows[0][3]
    print('Test accuracy :', test_accuracy)
    pred, labels = show_predictions(model, test_imgs, synsets, ctx,
                                    run.figure('test_predictions.png'))
    print('Predictions:\n', pred)
    print('Labels:\n', labels)

    run.metrics.update(
        dataset=dataset, model=MODEL, image_size=size, devices=[str(c) for c in ctx],
        sizes={'train': len(train_imgs), 'validation': len(val_imgs), 'test': len(test_imgs)},
        fine_tune_at='features[%d].out[%d]' % (FINE_TUNE_BLOCK, FINE_TUNE_LAYER),
        trainable_weight_arrays=n_trainable, initial_loss=loss0, initial_accuracy=accuracy0,
        history=history, history_fine=history_fine, test_loss=test_loss,
        test_accuracy=test_accuracy,
        head_epoch_seconds={'cached': cached_s, 'recomputed': recomputed_s,
                            'speedup': recomputed_s / cached_s},
        bn_comparison={name: {'val_loss': h['val_loss'][-1], 'val_accuracy':
                              h['val_accuracy'][-1], 'test_accuracy': acc,
                              'max_running_stat_change': change}
                       for name, h, change, (_, acc) in rows})
    run.finish()
    return run.metrics


if __name__ == '__main__':
    main()
