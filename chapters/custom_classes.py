"""Your own classes on a frozen MobileNet: rock-paper-scissors for anyone's pictures.

    python -m chapters.custom_classes [--images DIR] [--quick]   # train, save the model
    python -m chapters.custom_classes --predict PHOTO_OR_FOLDER ...
    python -m chapters.custom_classes --webcam                     # live, with OpenCV

The text (TensorFlow.js, in the browser) cuts a pretrained MobileNet after its last
convolution (`conv_pw_13_relu`), freezes it, and trains a small head on 30-50 webcam pictures
per class: Flatten -> Dense(100, relu) -> Dense(classes, softmax), Adam 1e-4, batch 24,
20 epochs. Here the pictures come from a folder with one sub-folder per class (`--images`);
the frozen base runs once per picture and the head trains on the cached output, so training
takes seconds on a CPU. Without `--images` a demo folder is generated: synthetic scenes with
a triangle, a rectangle, or a crowd of noise shapes.
"""
# %%
import utils  # sets OMP_NUM_THREADS before MXNet loads

import json
import os
import shutil
import sys
import time
import zipfile

import numpy as np
from mxnet import gluon, init, nd
from mxnet.gluon import nn

from chapters.feature_extraction import feature_loader, features_of
from utils import detection
from utils.cli import Run, chapter_parser, devices_from, progress_from
from utils.datasets import IMAGE_SUFFIXES, image_folder
from utils.errors import UserError, main_guard
from utils.files import write_json, zip_bundle_reader, zip_bundle_writer
from utils.pretrained import imagenet_transform, load_image

MODEL = 'mobilenetv2_1.0'
# The text cuts MobileNet v1 at `conv_pw_13_relu`, its last convolution and activation. In
# Gluon's MobileNetV2 the last convolution is features[20] (1x1, 320 -> 1280), with its
# BatchNorm and ReLU6 at 21 and 22; 23 is the global pooling. So the base is features[:23]:
# (N, 1280, 7, 7) at 224 pixels, flattened to 62720 numbers for the head.
CUT = 23
DEMO_CLASSES = ('triangle', 'rectangle', 'crowded')


def build_parser():
    parser = chapter_parser(__doc__.splitlines()[0], default_out='out/custom_classes')
    parser.add_argument('--images', default=None, metavar='DIR',
                        help='one sub-folder of pictures per class (30-50 each is plenty); '
                             'default: a generated demo folder in OUT/demo_images')
    parser.add_argument('--model-file', default=None, metavar='PATH',
                        help='where the trained model is saved / read (default OUT/model.zip)')
    parser.add_argument('--predict', nargs='+', default=None, metavar='PATH',
                        help='picture files or folders to classify with the saved model')
    parser.add_argument('--webcam', action='store_true',
                        help='classify the camera picture live (q quits)')
    parser.add_argument('--camera', type=int, default=0, help='OpenCV camera index')
    parser.add_argument('--per-class', type=int, default=None,
                        help='pictures per class of the demo folder; default 40 (quick: 30)')
    parser.add_argument('--image-size', type=int, default=224)
    parser.add_argument('--epochs', type=int, default=20)
    parser.add_argument('--batch-size', type=int, default=24)
    parser.add_argument('--learning-rate', type=float, default=1e-4)
    parser.add_argument('--val-fraction', type=float, default=0.2,
                        help='share of each class held out to measure accuracy (0: train on '
                             'all, as the text does)')
    return parser


def parse_args(argv=None):
    args = build_parser().parse_args(argv)
    args.per_class = args.per_class or (30 if args.quick else 40)
    args.model_file = args.model_file or os.path.join(args.out, 'model.zip')
    if not 0 <= args.val_fraction < 1:
        raise UserError('--val-fraction must be at least 0 and below 1, got %s'
                        % args.val_fraction)
    return args


# %% [markdown]
# ## The pictures
# A folder with one sub-folder per class. Checked before anything runs: at least two classes,
# no empty class, every picture decodable (each problem named in one line), and a warning
# when a class has far fewer pictures than the largest (the head would learn to avoid it).

# %%
def make_demo_folder(root, per_class, seed=0):
    """Write PNG scenes: a triangle or a rectangle among a little noise, or a crowd of noise
    shapes (either target among 40 circles and 40 lines)."""
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


def load_pictures(root, size):
    """The folder as a dataset of (normalised CHW picture, label), checked; counts per class."""
    tf = imagenet_transform(size, size)
    pictures = image_folder(root, transform=lambda img, label: (tf(img), label))
    counts = {name: 0 for name in pictures.synsets}
    for _, label in pictures.items:
        counts[pictures.synsets[label]] += 1
    return pictures, counts


def split(labels, fraction, seed):
    """(train indices, validation indices): `fraction` of every class held out."""
    rng = np.random.RandomState(seed)
    train, val = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        cut = int(round(fraction * len(idx)))
        val.extend(idx[:cut])
        train.extend(idx[cut:])
    return np.sort(train), np.sort(val)


# %% [markdown]
# ## The model: frozen truncated MobileNet, the text's head

# %%
def truncated_base(ctx=None):
    """MobileNetV2's features up to its last convolution, frozen (BatchNorm statistics too)."""
    base = detection.freeze(utils.get_pretrained(MODEL, ctx=ctx).features[:CUT])
    base.hybridize(static_alloc=True)
    return base


def build_new_head(num_classes):
    """The text's buildNewHead: Flatten -> Dense(100, relu) -> Dense(classes), no bias in the
    last layer (as in the text); the softmax is applied by the loss and by `predict`."""
    head = nn.HybridSequential(prefix='head_')
    with head.name_scope():
        head.add(nn.Flatten(), nn.Dense(100, activation='relu', prefix='hidden_dense_1_'),
                 nn.Dense(num_classes, use_bias=False, prefix='softmax_classification_'))
    return head


def save_model(path, head, classes, size):
    """Head parameters and class names in one zip, written atomically."""
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
            head = build_new_head(len(meta['classes']))
            head.load_parameters(os.path.join(folder, 'head.params'))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as err:
        raise UserError('%s is not a model saved by this chapter (%s)'
                        % (path, str(err).splitlines()[0][:100]))
    return truncated_base(), head, meta['classes'], meta['image_size']


# %% [markdown]
# ## Predicting pictures and the webcam

# %%
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


def predict(base, head, img, size):
    """Class probabilities of one HWC RGB uint8 picture (NDArray)."""
    x = imagenet_transform(size, size)(img).expand_dims(axis=0)
    return nd.softmax(head(base(x)))[0].asnumpy()


def predict_files(args):
    base, head, classes, size = load_model(args.model_file)
    results = []
    for path in picture_files(args.predict):
        probs = predict(base, head, load_image(path), size)
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


def webcam(args):
    """Live predictions: the class and its probability drawn on each frame; q quits."""
    import cv2
    camera = open_camera(args.camera)
    base, head, classes, size = load_model(args.model_file)
    window = True
    try:
        while True:
            ok, frame = camera.read()
            if not ok:
                raise UserError('camera %d stopped sending pictures' % args.camera)
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


# %% [markdown]
# ## Training

# %%
@main_guard
def main(argv=None):
    args = parse_args(argv)
    run = Run(args, 'custom_classes')
    if args.webcam:
        webcam(args)
        return run.finish()
    if args.predict:
        run.metrics['predictions'] = predict_files(args)
        return run.finish()

    ctx = devices_from(args)
    progress = progress_from(args)
    utils.training.seed_everything(args.seed)

    # %% The pictures: yours, or the demo folder
    root = args.images or make_demo_folder(os.path.join(args.out, 'demo_images'),
                                           args.per_class, args.seed)
    pictures, counts = load_pictures(root, args.image_size)
    classes = pictures.synsets
    print('%s: %s' % (root, ', '.join('%s %d' % kv for kv in counts.items())))
    check_balance(counts)

    # %% The frozen base runs once per picture
    base = truncated_base(ctx[0])
    start = time.time()
    feats, labels = features_of(base, pictures, 32, ctx)
    feature_seconds = time.time() - start
    print('Base output %s for %d pictures in %.1f sec' % (feats.shape[1:], len(feats),
                                                          feature_seconds))
    shown = first_of_each(labels, 4)
    utils.show_images([utils.pretrained.centre_crop(load_image(pictures.items[i][0]),
                                                    args.image_size, args.image_size)
                       for i in shown], -(-len(shown) // 4), 4,
                      titles=[classes[int(labels[i])] for i in shown],
                      path=run.figure('pictures.png'))

    # %% The head: Adam 1e-4, batch 24, 20 epochs, shuffled
    train_idx, val_idx = split(labels, args.val_fraction, args.seed)
    head = build_new_head(len(classes))
    head.initialize(init.Xavier(), ctx=ctx)
    head.hybridize()
    trainer = gluon.Trainer(head.collect_params(), 'adam',
                            {'learning_rate': args.learning_rate})
    train_data = feature_loader(feats[train_idx], labels[train_idx], args.batch_size,
                                shuffle=True)
    val_data = (feature_loader(feats[val_idx], labels[val_idx], args.batch_size)
                if len(val_idx) else None)
    history = utils.train(train_data, val_data, head, gluon.loss.SoftmaxCrossEntropyLoss(),
                          trainer, ctx, args.epochs, progress=progress, seed=args.seed)
    save_model(args.model_file, head, classes, args.image_size)
    print('Model and class names saved to %s' % args.model_file)

    # %% Per-class accuracy on the held-out pictures
    per_class = {}
    if len(val_idx):
        probs = detection.predict_arrays(head, feats[val_idx], ctx=ctx[0])
        pred = probs.argmax(axis=1)
        print('%-20s %8s %8s %14s' % ('class', 'pictures', 'held out', 'held-out acc'))
        for c, name in enumerate(classes):
            mask = labels[val_idx] == c
            per_class[name] = float(np.mean(pred[mask] == c)) if mask.any() else None
            print('%-20s %8d %8d %14s' % (name, counts[name], mask.sum(),
                                          '-' if per_class[name] is None
                                          else '%.3f' % per_class[name]))

    run.metrics.update(classes=classes, counts=counts, image_size=args.image_size,
                       feature_shape=list(feats.shape[1:]), feature_seconds=feature_seconds,
                       train_seconds=float(sum(history['seconds'])), history=history,
                       held_out=len(val_idx), held_out_accuracy_per_class=per_class,
                       model_file=args.model_file)
    run.finish()
    return run.metrics


def first_of_each(labels, k):
    """Indices of the first k pictures of every class, class by class."""
    return [i for c in np.unique(labels) for i in np.flatnonzero(labels == c)[:k]]


if __name__ == '__main__':
    main()
