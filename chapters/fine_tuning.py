"""Fine-tuning: transfer learning from ImageNet to the hotdog data set (the Gluon tutorial).

    python -m chapters.fine_tuning [--quick] [--dataset hotdog|faces|auto] [--devices cpu:2]

Online, the text's setting: ResNet-18 v2 pretrained on ImageNet, a new 2-class output layer,
hotdog / not-hotdog. Offline (no hotdog.zip in data/ and no network), the same cells run on
what the package registries provide: MobileNetV2 ImageNet weights and scikit-image's real photos,
face / not-face standing in for hotdog / not-hotdog.
"""
# %%
import utils  # sets OMP_NUM_THREADS before MXNet loads

import os

import numpy as np
from mxnet import gluon, image, init, nd
from mxnet.gluon.model_zoo import vision as models

from utils.cli import Run, chapter_parser, devices_from, progress_from
from utils.detection import batchnorms, freeze_batchnorm
from utils.datasets import (HOTDOG_SHA1, HOTDOG_URLS, ArrayImageDataset, hotdog_available,
                            image_folder, load_faces)
from utils.errors import UserError, main_guard
from utils.few_shot import ALL, parse_per_class, per_class_subset

# Pretrained models expect ImageNet's normalisation (the text feeds raw 0-255 pixels and lets
# ResNet's first BatchNorm absorb the scale; MobileNetV2's weights need the real thing).
MEAN = nd.array(utils.IMAGENET_MEAN).reshape((3, 1, 1))
STD = nd.array(utils.IMAGENET_STD).reshape((3, 1, 1))
OFFLINE_MODEL = 'mobilenetv2_1.0'
MODEL_FOR = {'hotdog': 'resnet18_v2', 'faces': OFFLINE_MODEL}
FACE_PHOTOS = ('astronaut.png', 'coffee.png')  # a face, and no face
FACE_PIXELS = 25  # side of scikit-image's lfw_subset photos
# The quick run on the offline faces is data-scarce, where pretraining matters: 4 training
# photos per class, one batch of all 8 per update. (With 8 per class scratch reached 0.88 and
# 0.88 for seeds 0 and 2, with all 160 photos 0.925: the face set is easy.)
QUICK_FACES = dict(per_class=4, epochs=40, batch_size=8, learning_rate=0.001,
                   finetune_batchnorm='inference')


def build_parser(description=__doc__.splitlines()[0], default_out='out/fine_tuning'):
    parser = chapter_parser(description, default_out=default_out)
    parser.add_argument('--dataset', choices=['auto', 'hotdog', 'faces'], default='auto',
                        help='auto: hotdog when it can be had, else faces (offline)')
    parser.add_argument('--model', default='auto',
                        help="pretrained model: auto (hotdog: resnet18_v2 from the model store, "
                             "else mobilenetv2_1.0 from the offline weights) or any name "
                             "utils.get_pretrained knows")
    parser.add_argument('--epochs', type=int, default=None,
                        help='default: 10 (quick: 10; quick on the faces: 40)')
    parser.add_argument('--batch-size', type=int, default=None,
                        help='default: 64 (quick: 32; quick on the faces: 8)')
    parser.add_argument('--per-class', type=parse_per_class, default=None, metavar='N',
                        help='training images per class, drawn with --seed, or "all"; '
                             'default all (quick on the faces: 4)')
    parser.add_argument('--image-size', type=int, default=None,
                        help='crop size in pixels; default 224 (quick: 96)')
    parser.add_argument('--learning-rate', type=float, default=None,
                        help='default: 0.01, as in the text (quick on the faces: 0.001)')
    parser.add_argument('--wd', type=float, default=0.001)
    parser.add_argument('--output-lr-mult', type=float, default=None,
                        help='learning-rate multiplier of the new output layer; '
                             'default 1, as in the text (quick: 10)')
    parser.add_argument('--bn-momentum', type=float, default=None,
                        help='momentum of the BatchNorm running averages of both nets; '
                             'default 0.9, as in Gluon (quick: 0.5, see set_bn_momentum)')
    parser.add_argument('--finetune-batchnorm', choices=['update', 'inference'], default=None,
                        help="finetune_net's BatchNorm: 'update' (as in the text) or "
                             "'inference' (ImageNet's statistics used and kept); default "
                             "update (quick on the faces: inference)")
    parser.add_argument('--predict', nargs='*', default=None, metavar='IMAGE',
                        help='image files for classify_hotdog (default: a few test images)')
    parser.add_argument('--data-dir', default=os.environ.get('GLUON_TRANSFER_DATA'),
                        help='where hotdog.zip is downloaded and extracted (default: data/)')
    parser.add_argument('--data-url', action='append', default=None,
                        help='mirror of hotdog.zip, tried before the default URLs '
                             '(also $HOTDOG_URL)')
    parser.add_argument('--data-sha1', default=os.environ.get('HOTDOG_SHA1', HOTDOG_SHA1),
                        help="sha1 of the mirror's hotdog.zip (also $HOTDOG_SHA1)")
    return parser


def parse_args(argv=None, parser=None):
    """The options, with the defaults that depend on --quick filled in."""
    args = (parser or build_parser()).parse_args(argv)
    quick = args.quick
    args.unset = [key for key in QUICK_FACES if getattr(args, key) is None]
    args.per_class = args.per_class or ALL
    args.learning_rate = args.learning_rate or 0.01
    args.finetune_batchnorm = args.finetune_batchnorm or 'update'
    args.epochs = args.epochs or 10
    args.batch_size = args.batch_size or (32 if quick else 64)
    args.image_size = args.image_size or (96 if quick else 224)
    if args.output_lr_mult is None:
        args.output_lr_mult = 10.0 if quick else 1.0
    if args.bn_momentum is None:
        args.bn_momentum = 0.5 if quick else 0.9
    mirrors = (args.data_url or []) + ([os.environ['HOTDOG_URL']] if 'HOTDOG_URL' in os.environ
                                       else [])
    args.urls = mirrors + list(HOTDOG_URLS)
    return args


# %% [markdown]
# ## Get the data
# hotdog.zip through utils.download (mirrors, sha1 checked), extracted to data/hotdog. When it
# cannot be had and --dataset is auto, the offline stand-in: real face / not-face photos.

# %%
def get_data(args, size, quick_faces=False):
    """(train_imgs, test_imgs, dataset name, [(photo, its true class or None)]).

    A photo is a file name or a uint8 HWC image (a held-out face photo).

    quick_faces: with --quick on the faces, the settings of QUICK_FACES not given on the
    command line are taken from there.
    """
    if args.dataset in ('auto', 'hotdog'):
        kwargs = {'urls': args.urls, 'sha1': args.data_sha1}
        if args.data_dir:
            kwargs['data_dir'] = args.data_dir
        folder, why = hotdog_available(**kwargs)
        if folder:
            return hotdog_data(folder, size, args.per_class, args.seed)
        if args.dataset == 'hotdog':
            raise UserError(why)
        print('hotdog data unavailable (no data/hotdog.zip, no network): running offline on '
              "scikit-image's face / not-face photos with MobileNetV2 ImageNet weights")
    if quick_faces and args.quick:
        for key in args.unset:
            setattr(args, key, QUICK_FACES[key])
    return face_data(size, args.seed, args.per_class)


def augmentations(size, resize=True):
    """The text's train_augs and test_augs, at `size` pixels.

    RandomCropAug and CenterCropAug take the largest region of the crop's shape that fits an
    image smaller than the crop and upsample it to `size`: every image comes out size x size.
    At a size below 224 the image is first resized (shorter side) so the crop keeps the same
    share of the picture as a 224 crop of the 256-pixel-ish originals.
    """
    resize = [image.ResizeAug(size * 256 // 224)] if resize and size != 224 else []
    train_augs = resize + [image.HorizontalFlipAug(.5), image.RandomCropAug((size, size))]
    test_augs = resize + [image.CenterCropAug((size, size))]
    return train_augs, test_augs


def transform(data, label, augs):
    data = data.astype('float32')
    for aug in augs:
        data = aug(data)
    data = nd.transpose(data, (2, 0, 1))
    data = (data / 255 - MEAN) / STD
    return data, nd.array([label]).asscalar().astype('float32')


def hotdog_data(folder, size, per_class=ALL, seed=0):
    train_augs, test_augs = augmentations(size)
    train_imgs = image_folder(os.path.join(folder, 'train'),
                              transform=lambda X, y: transform(X, y, train_augs))
    test_imgs = image_folder(os.path.join(folder, 'test'),
                             transform=lambda X, y: transform(X, y, test_augs))
    keep = per_class_subset([label for _, label in train_imgs.items], per_class, seed)
    train_imgs.items = [train_imgs.items[i] for i in keep]
    # held-out photos of each class, with their true class
    examples = [(test_imgs.items[i][0], test_imgs.synsets[test_imgs.items[i][1]])
                for i in (0, 1, len(test_imgs) - 2, len(test_imgs) - 1)]
    return train_imgs, test_imgs, 'hotdog', examples


def face_data(size, seed, per_class=ALL):
    # The 25-pixel photos are resized once, to what the resize step would give, then cropped.
    train_augs, test_augs = augmentations(size, resize=False)
    (train_x, train_y), (test_x, test_y), synsets = load_faces(size * 256 // 224, seed=seed)
    keep = per_class_subset(train_y, per_class, seed)
    train_imgs = ArrayImageDataset(train_x[keep], train_y[keep], synsets,
                                   transform=lambda X, y: transform(X, y, train_augs))
    test_imgs = ArrayImageDataset(test_x, test_y, synsets,
                                  transform=lambda X, y: transform(X, y, test_augs))
    # held-out photos of each class (written as files by as_file), and two photos from
    # outside the data set: a face, and a coffee cup that is neither class
    from skimage import data as skdata
    examples = [(test_x[i].astype(np.uint8), synsets[test_y[i]])
                for c in (0, 1) for i in np.flatnonzero(test_y == c)[:2]]
    examples += [(os.path.join(skdata.data_dir, name), None) for name in FACE_PHOTOS]
    return train_imgs, test_imgs, 'faces', examples


def show_training_images(train_imgs, path):
    """The text's 4x8 grid of augmented training images."""
    data = gluon.data.DataLoader(train_imgs, 32, shuffle=True)
    for X, _ in data:
        X = (X * STD + MEAN).transpose((0, 2, 3, 1)).clip(0, 1)
        utils.show_images(X, 4, 8, path=path)
        break


# %% [markdown]
# ## Model and training
# On a data-scarce set (the quick run on the faces: 8 photos, batches of 8) finetune_net's
# BatchNorm layers are kept in inference mode, as the TensorFlow transfer-learning text
# advises: they normalise with ImageNet's running statistics and never update them
# (`use_global_stats`), while their scale and shift still train. Batch statistics of 8 grey
# photos are a poor, jumpy estimate of ImageNet's. With the statistics fixed nothing
# renormalises the activations after a large step, so the learning rate is 0.001 there
# (0.003 diverged in the how-much-data chapter's study). scratch_net has no statistics to keep,
# and trains with the same settings, as in the text: at 0.001 it learns slowly. With its own
# best rate (0.03) it does better, 0.70-0.93 on 4 photos per class (how-much-data chapter).

# %%
def first_conv(net):
    """The first convolution of `features` (ResNet: features[1], after the input BatchNorm)."""
    for block in net.features:
        if isinstance(block, gluon.nn.Conv2D):
            return block
    raise ValueError('no convolution at the top of features')


def get_pretrained_net(model, dataset):
    """(name, network): the text's model, or the offline one when the store cannot be reached."""
    if model != 'auto':
        return model, utils.get_pretrained(model)
    try:
        return MODEL_FOR[dataset], utils.get_pretrained(MODEL_FOR[dataset])
    except UserError as err:
        if MODEL_FOR[dataset] == OFFLINE_MODEL:
            raise
        print('%s; using %s instead' % (err, OFFLINE_MODEL))
        return OFFLINE_MODEL, utils.get_pretrained(OFFLINE_MODEL)


def new_net(model_name, classes=2):
    """Same architecture as the pretrained model, with `classes` outputs, not initialised."""
    if model_name == OFFLINE_MODEL:  # its pretrained output has a bias: keep the same head
        return utils.pretrained.mobilenet_v2_with_bias(classes)
    return models.get_model(model_name, classes=classes)


def set_bn_momentum(net, momentum):
    """How fast BatchNorm's running averages (used at test time) forget their past.

    Each step keeps `momentum` of the old average. A scratch net starts them at mean 0,
    variance 1, while MobileNetV2's depthwise layers see variances of 1e-3 to 5e-4 (Xavier
    gives a 3x3 depthwise filter a fan-in of 9). After the quick run's 50 steps at 0.9,
    0.9**50 = 5e-3 of the initial 1 is left: 10x the true variance. At test time those 17
    layers then shrink the signal until every image gets the same class (test accuracy 0.50
    while training accuracy, on batch statistics, reaches 0.95). At 0.5 the start is
    forgotten within a few steps; pretrained statistics are unaffected either way.
    Set before hybridize: the value is read when the graph is built.
    """
    for bn in batchnorms(net):
        bn._kwargs['momentum'] = momentum


def train(net, ctx, train_imgs, test_imgs, batch_size=64, epochs=10, learning_rate=0.01,
          wd=0.001, output_lr_mult=1.0, bn_momentum=0.9, progress=None, seed=None):
    """The text's train(): hybridize, SGD, softmax cross-entropy, utils.train on `ctx`."""
    set_bn_momentum(net, bn_momentum)
    train_data = gluon.data.DataLoader(train_imgs, batch_size, shuffle=True)
    test_data = gluon.data.DataLoader(test_imgs, batch_size)

    # make sure the parameters live on ctx
    net.collect_params().reset_ctx(ctx)
    net.hybridize(static_alloc=True, static_shape=True)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    if output_lr_mult != 1:
        net.output.collect_params().setattr('lr_mult', output_lr_mult)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {
        'learning_rate': learning_rate, 'wd': wd})
    return utils.train(train_data, test_data, net, loss, trainer, ctx, epochs,
                       progress=progress, seed=seed)


# %% [markdown]
# ## Predicting images
# First held-out test photos of each class, whose true class is known, then (offline) two
# photos from outside the data set: an astronaut's face, and a cup of coffee. The coffee is
# neither a face nor one of the non-face patches of the data set, but a 2-class net has no
# third answer: its softmax must split all the probability between 'face' and 'not-face',
# so a confident answer for it says which of the two classes the photo is nearer to, not that
# the net recognised it.

# %%
def as_file(photo, path):
    """A held-out photo kept in memory (uint8 HWC) written as a PNG, for classify_hotdog."""
    if isinstance(photo, str):
        return photo
    from utils.plotting import plt
    plt.imsave(path, photo)
    return path


def classify_hotdog(net, fname, synsets, test_augs, ctx, grey=False):
    """The text's classify_hotdog: 'With prob=0.998959, hotdog' (any two classes)."""
    try:
        with open(fname, 'rb') as f:
            img = image.imdecode(f.read())
    except Exception as err:  # OSError from open, MXNetError from the decoder
        raise UserError('%s cannot be read as an image (%s)' % (fname, str(err)[:80]))
    if grey:  # the face photos are 25x25 grey: show the net a photo made the same way
        img = img.astype('float32').mean(axis=2, keepdims=True)
        img = image.imresize(image.center_crop(img, (min(img.shape[:2]),) * 2)[0],
                             FACE_PIXELS, FACE_PIXELS, interp=1).reshape(
                                 (FACE_PIXELS, FACE_PIXELS, 1)).tile((1, 1, 3))
    data, _ = transform(img, -1, test_augs)
    data = data.expand_dims(axis=0)
    out = net(data.as_in_context(ctx[0]))
    out = nd.softmax(out)
    pred = int(nd.argmax(out, axis=1).asscalar())
    prob = out[0][pred].asscalar()
    return 'With prob=%f, %s' % (prob, synsets[pred])


def summary_table(histories, last=3):
    """Final test accuracy and its mean over the last epochs (one epoch can swing a lot)."""
    lines = ['%-14s %14s %16s %10s %12s' % ('net', 'final test acc', 'mean last %d' % last,
                                            'train acc', 'seconds')]
    for name, h in histories.items():
        lines.append('%-14s %14.3f %16.3f %10.3f %12.1f' % (
            name, h['test_acc'][-1], np.mean(h['test_acc'][-last:]), h['train_acc'][-1],
            sum(h['seconds'])))
    return '\n'.join(lines)


@main_guard
def main(argv=None):
    args = parse_args(argv)
    run = Run(args, 'fine_tuning')
    ctx = devices_from(args)
    progress = progress_from(args)
    utils.training.seed_everything(args.seed)

    # %% Get the data and look at some training images
    train_imgs, test_imgs, dataset, examples = get_data(args, args.image_size,
                                                        quick_faces=True)
    print('%s: %d training and %d test images, classes %s, %dx%d crops'
          % (dataset, len(train_imgs), len(test_imgs), train_imgs.synsets, args.image_size,
             args.image_size))
    show_training_images(train_imgs, run.figure('train_images.png'))

    # %% The pretrained network: features + output
    model_name, pretrained_net = get_pretrained_net(args.model, dataset)
    print(pretrained_net.output)
    print(first_conv(pretrained_net).weight.data()[0][0])

    # %% finetune_net: same architecture, 2 classes, features from pretrained_net
    finetune_net = new_net(model_name)
    finetune_net.features = pretrained_net.features
    finetune_net.output.initialize(init.Xavier())
    if args.finetune_batchnorm == 'inference':  # see the markdown cell above train()
        freeze_batchnorm(finetune_net.features)
    settings = dict(batch_size=args.batch_size, epochs=args.epochs,
                    learning_rate=args.learning_rate, wd=args.wd,
                    output_lr_mult=args.output_lr_mult, bn_momentum=args.bn_momentum,
                    progress=progress, seed=args.seed)
    finetune_history = train(finetune_net, ctx, train_imgs, test_imgs, **settings)

    # %% scratch_net: the same, trained from a random (Xavier) initialisation
    scratch_net = new_net(model_name)
    scratch_net.initialize(init=init.Xavier())
    scratch_history = train(scratch_net, ctx, train_imgs, test_imgs, **settings)

    # %% Both histories, and the table
    histories = {'finetune_net': finetune_history, 'scratch_net': scratch_history}
    utils.plot_history(histories, run.figure('finetune_vs_scratch.png'),
                       title='%s, %s' % (dataset, model_name))
    print(summary_table(histories))

    # %% Predicting images
    _, test_augs = augmentations(args.image_size)
    if args.predict is not None:
        examples = [(fname, None) for fname in args.predict]
    for i, (photo, truth) in enumerate(examples):
        fname = as_file(photo, run.figure('held_out_%d_%s.png' % (i, truth)))
        print('%s (%s): %s' % (os.path.basename(fname), 'true class: %s' % truth if truth
                               else 'not from the data set', classify_hotdog(
            finetune_net, fname, train_imgs.synsets, test_augs, ctx, grey=dataset == 'faces')))

    run.metrics.update(dataset=dataset, model=model_name, devices=[str(c) for c in ctx],
                       image_size=args.image_size, histories=histories)
    run.finish()
    return run.metrics


if __name__ == '__main__':
    main()
