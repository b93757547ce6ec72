# %% [markdown]
# # Fine-tuning: transfer learning from ImageNet to hotdog / not-hotdog
#
# Follows the Gluon tutorial "Fine-tuning: 通过微调来迁移学习" (the MXNet edition of Dive into
# Deep Learning, 动手学深度学习, computer-vision chapter), section by section: getting the data,
# the model and training, predicting images.
#
# Fine-tuning: train a network on a large source data set (ImageNet), give it a new output
# layer sized for the target data set, initialised at random, keep every other weight, and
# train on the target data. A ResNet-18 v2 fine-tuned on 2000 hotdog / not-hotdog photos
# beats the same network trained from a random start (`scratch_net`) in the same epochs.
#
# Run it: `python -m chapters.fine_tuning [--quick] [--devices cpu:2]` (`--help` lists the
# settings), or open `notebooks/fine_tuning.ipynb` (`make notebooks`). `--quick` offline (4
# face photos per class, 20 epochs) takes about 15 s on an idle 2-core machine.
#
# Offline (no `data/hotdog.zip`, no network) the same cells run MobileNetV2 with
# torchvision's ImageNet weights on scikit-image's face / not-face photos. The measurements
# behind the `--quick` settings: [docs/chapter-notes.md](../docs/chapter-notes.md#fine_tuning).

# %%
import utils  # sets OMP_NUM_THREADS before MXNet loads

import os

import numpy as np
from mxnet import gluon, image, init, nd

from utils import opt
from utils.cli import PIXELS, fraction, image_file, non_negative_float, one_of
from utils.data.datasets import hotdog_folder
from utils.errors import UserError
from utils.training.few_shot import parse_per_class
from utils.pretrained.imagenet import normalise
from utils.pretrained.model_store import known_models
from utils.data.transforms import resize_side

# %% [markdown]
# ## Settings
#
# The defaults are the text's: 10 epochs, batches of 64, SGD with learning rate 0.01 and
# weight decay 0.001, 224-pixel crops. The command line changes them (`--epochs 5`); `quick=`
# is what `--quick`, and a notebook, take instead: 96-pixel crops, batches of 32, a new output
# layer that learns 10x faster (`output_lr_mult`, from later editions of Dive into Deep
# Learning) and BatchNorm averages that forget faster (`bn_momentum`, see below). When the
# offline faces stand in, `--quick` also makes the run data-scarce, where pretraining matters
# (`QUICK_FACES`, applied in the next section to what the command line did not give).

# %%
# @save utils.pretrained.finetune
FINE_TUNING_SETTINGS = dict(
    model=opt('auto', "pretrained model: auto (hotdog: resnet18_v2 from the model store, "
                      "faces: mobilenetv2_1.0 from the offline weights) or any name "
                      "utils.get_pretrained knows",
              type=one_of(['auto'] + known_models(), 'model')),
    epochs=opt(10, 'training epochs of each net'),
    batch_size=opt(64, 'images per batch', quick=32),
    image_size=opt(224, 'crop size in pixels', quick=96, type=PIXELS),
    learning_rate=opt(0.01, "SGD's learning rate"),
    wd=opt(0.001, 'weight decay', type=non_negative_float),
    output_lr_mult=opt(1.0, 'learning-rate multiplier of the new output layer', quick=10.0),
    bn_momentum=opt(0.9, 'momentum of the BatchNorm running averages of both nets', quick=0.5,
                    type=fraction()),
)
args = utils.settings(
    'fine_tuning', 'Fine-tuning: transfer learning from ImageNet to hotdog / not-hotdog',
    predict=opt(None, 'image files for classify_hotdog (default: a few test images)',
                nargs='*', metavar='IMAGE', type=image_file),
    per_class=opt('all', 'training images per class, drawn with --seed, or "all" (--quick on '
                         'the faces: 4)', type=parse_per_class, metavar='N'),
    finetune_batchnorm=opt('update', "finetune_net's BatchNorm: 'update' (as in the text) or "
                                     "'inference' (ImageNet's statistics used and kept; --quick "
                                     "on the faces)", choices=['update', 'inference']),
    **FINE_TUNING_SETTINGS, **utils.HOTDOG_SETTINGS)
QUICK_FACES = dict(per_class=4, epochs=20, batch_size=8, learning_rate=0.001,
                   finetune_batchnorm='inference')
run = utils.Run(args, 'fine_tuning')  # wall time, metrics, the figure folder
ctx = utils.parse_devices(args.devices)
utils.seed_everything(args.seed)

# %% [markdown]
# ## Getting the data
#
# The hotdog data set has 1400 pictures of hot dogs and as many others, mostly food, scraped from
# the web; 1000 of each class are for training and the rest for testing. `hotdog_folder`
# downloads `hotdog.zip` (mirrors tried in turn, its sha1 checked before the file takes its
# name) and extracts it to `data/hotdog`; offline it says so and returns None, and the face
# photos stand in.

# %%
folder = hotdog_folder(args)
if folder is None and args.quick:  # the data-scarce run of the Settings cell
    for name in QUICK_FACES.keys() - args.given:
        setattr(args, name, QUICK_FACES[name])

# %% [markdown]
# The text's augmentations: `train_augs` flips at random and takes a random 224x224 crop,
# `test_augs` the centre crop; `transform` applies them and makes the image CHW. Two
# departures: `transform` also normalises with ImageNet's mean and standard deviation (the
# text feeds raw pixels to ResNet, whose first BatchNorm absorbs the scale; MobileNetV2 needs
# the real thing), and each picture is resized once before the crops (shorter side
# `size * 256 / 224`, so a smaller crop keeps the share a 224 crop has).

# %%
size = args.image_size
train_augs = [image.HorizontalFlipAug(.5), image.RandomCropAug((size, size))]
test_augs = [image.CenterCropAug((size, size))]


# @save utils.data.transforms
def transform(data, label, augs):
    """The text's transform: augment an HWC image with values 0-255, make it CHW, and
    normalise it for ImageNet nets (the port's addition)."""
    data = data.astype('float32')
    for aug in augs:
        data = aug(data)
    data = normalise(nd.transpose(data, (2, 0, 1)))
    return data, nd.array([label]).asscalar().astype('float32')


# %% [markdown]
# The text reads each folder with `ImageFolderDataset`; `hotdog_or_faces` does that for
# hotdog, or loads the face photos, with these transforms (`--per-class N` keeps N training
# images per class).

# %%
train_imgs, test_imgs, dataset, examples = utils.hotdog_or_faces(
    args, size, folder=folder, transforms=(lambda X, y: transform(X, y, train_augs),
                                           lambda X, y: transform(X, y, test_augs)))
print('%s: %d training and %d test images, classes %s, %dx%d crops'
      % (dataset, len(train_imgs), len(test_imgs), train_imgs.synsets, size, size))

# %% [markdown]
# The text draws 32 augmented training images, 4 rows of 8:

# %%
data = gluon.data.DataLoader(train_imgs, 32, shuffle=True)
for X, _ in data:
    utils.show_images(utils.denormalise(X), 4, 8, path=run.figure('train_images.png'))
    break

# %% [markdown]
# ## The model and training
#
# The text takes ResNet-18 v2 from Gluon's model zoo with its ImageNet weights
# (`utils.pretrained_for`; offline MobileNetV2). A pretrained model has two parts: `features`,
# from the input to the last pooling, and `output`, the layer with the 1000 ImageNet classes;
# the text prints `Dense(512 -> 1000, linear)`. MobileNetV2's `output` is a 1x1 convolution
# (1280 -> 1000) and Flatten: a Dense layer's job, replaced all the same.

# %%
model_name, pretrained_net = utils.pretrained_for(dataset, args.model)
print(pretrained_net.output)

# %% [markdown]
# Part of the first convolution's weights: the text prints a 7x7 block of `features[1]`
# (ResNet-18 v2 starts with a BatchNorm); MobileNetV2's first convolution, `features[0]`, is
# 3x3. `utils.first_conv` finds either.

# %%
print(utils.first_conv(pretrained_net).weight.data()[0][0])

# %% [markdown]
# Fine-tuning builds a new network of the same architecture with as many outputs as the new
# data set has classes, 2. Its `features` are those of `pretrained_net`; only `output` starts
# from random (Xavier) weights.

# %%
finetune_net = utils.new_classifier(model_name, classes=2)
finetune_net.features = pretrained_net.features
finetune_net.output.initialize(init.Xavier())
if args.finetune_batchnorm == 'inference':  # see the next cell
    utils.freeze_batchnorm(finetune_net.features)

# %% [markdown]
# On the data-scarce quick run (8 face photos, batches of 8) finetune_net's BatchNorm layers
# stay in inference mode, as the TensorFlow transfer-learning text advises: they keep
# ImageNet's statistics (`use_global_stats`), a better estimate than 8 grey photos give, while
# their scale and shift train. Nothing then renormalises after a large step, hence the
# learning rate of 0.001. scratch_net trains with the same settings, as in the text.

# %% [markdown]
# The text's `train` function, named `train_fine_tuning` here (`utils.train` is the text's
# helper, which prints the epoch lines and splits each batch over the devices in `ctx`):
# DataLoaders, the parameters moved to `ctx`, hybridize, softmax cross-entropy, SGD with
# weight decay. The port passes the data sets in (the text reads the notebook's) and adds the
# two `--quick` settings, `progress`, and `seed` for repeatable shuffles and augmentations.


# %%
# @save utils.pretrained.finetune
def train_fine_tuning(net, ctx, train_imgs, test_imgs, batch_size=64, epochs=10,
                      learning_rate=0.01, wd=0.001, output_lr_mult=1.0, bn_momentum=0.9,
                      progress=None, seed=None, first_epoch=0):
    """The text's train(): hybridize, SGD, softmax cross-entropy, utils.train on `ctx`.

    output_lr_mult: learning-rate multiplier of `net.output`; bn_momentum: of every BatchNorm's
    running averages. first_epoch: as in utils.train, for a schedule trained in several calls.
    Returns the history.
    """
    utils.set_bn_momentum(net, bn_momentum)
    train_data = gluon.data.DataLoader(train_imgs, batch_size, shuffle=True)
    test_data = gluon.data.DataLoader(test_imgs, batch_size)

    # make sure the parameters live on ctx
    net.collect_params().reset_ctx(ctx)
    # static_alloc without static_shape, which took more memory for the same time
    # (python -m benchmarks.graph_memory)
    net.hybridize(static_alloc=True)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    if output_lr_mult != 1:
        net.output.collect_params().setattr('lr_mult', output_lr_mult)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {
        'learning_rate': learning_rate, 'wd': wd})
    history = utils.train(train_data, test_data, net, loss, trainer, ctx, epochs,
                          progress=progress, seed=seed, first_epoch=first_epoch)
    utils.release_graph(net)  # a net kept for later gives its training buffers back
    return history


settings = utils.train_settings(args)  # the settings above, as train_fine_tuning's keywords
finetune_history = train_fine_tuning(finetune_net, ctx, train_imgs, test_imgs, **settings)

# %% [markdown]
# For comparison, `scratch_net`: the same network, every weight initialised at random.

# %%
scratch_net = utils.new_classifier(model_name, classes=2)
scratch_net.initialize(init=init.Xavier())
scratch_history = train_fine_tuning(scratch_net, ctx, train_imgs, test_imgs, **settings)

# %% [markdown]
# The fine-tuned net converges much faster than the one that starts from random values; the
# table also gives the mean of the last three epochs, as one epoch's test accuracy swings.
# The text's last epochs (ResNet-18 v2, hotdog, 224 px, two GPUs): finetune_net `Loss: 0.053,
# Train acc 0.98, Test acc 0.96`, scratch_net `Loss: 0.295, Train acc 0.89, Test acc 0.77`
# (swinging between 0.69 and 0.86). Offline the data, network, crops and epochs differ:
# compare the gap between the nets, not the digits.

# %%
histories = {'finetune_net': finetune_history, 'scratch_net': scratch_history}
utils.plot_history(histories, run.figure('finetune_vs_scratch.png'),
                   title='%s, %s' % (dataset, model_name))
utils.print_table(
    ['net', 'final test acc', 'mean last 3', 'train acc', 'seconds'],
    [[name, h['test_acc'][-1], np.mean(h['test_acc'][-3:]), h['train_acc'][-1],
      sum(h['seconds'])] for name, h in histories.items()],
    [None, '%.3f', '%.3f', '%.3f', '%.1f'])

# %% [markdown]
# ### Why --quick lowers the BatchNorm momentum
#
# Each step keeps `momentum` of a BatchNorm's running averages, which the net uses at test
# time, starting from variance 1. scratch_net's depthwise layers have variances near 1e-3, and
# after a short run at Gluon's default 0.9 the initial 1 still dominates (0.9**50 = 0.005):
# at test time every photo would get the same class. At 0.5 the averages forget their start
# within a few steps; the pretrained net starts from ImageNet's and is not affected.
#
# `--quick` on the faces stops at 20 updates of each net: finetune_net is near its best after
# about 10, scratch_net has only begun to move from chance. Trained longer, scratch_net swings
# from epoch to epoch, and the gap would depend on where a swing ends; what each method
# reaches once converged is the how-much-data chapter's question.

# %% [markdown]
# ## Predicting images
#
# `classify_hotdog` reads a picture, applies `test_augs` through `transform`, and returns the
# most likely class with its probability. The text classifies three pictures of the book that
# are not in the data set's zip: `real_hotdog.jpg` (`'With prob=0.998959, hotdog'`),
# `leg_hotdog.jpg` (0.997123, hotdog: legs that look like hot dogs) and `dog_hotdog.jpg`
# (0.754116, hotdog: a dog dressed as one); `--predict FILE ...` classifies yours. The port
# first resizes a picture as the data set's were, and uses `nd.softmax` for the deprecated
# `SoftmaxActivation`.
#
# Below: held-out test photos of each class, with their true class, then (offline) an
# astronaut's face and a cup of coffee. The coffee is neither class, but a 2-class softmax has
# no third answer: a confident line for it says which class it is nearer to.

# %%
FACE_PIXELS = 25  # side of scikit-image's lfw_subset photos


def classify_hotdog(net, fname, grey=False):
    try:
        with open(fname, 'rb') as f:
            img = image.imdecode(f.read())
    except Exception as err:  # OSError from open, MXNetError from the decoder
        raise UserError('%s cannot be read as an image (%s)' % (fname, str(err)[:80]))
    side = resize_side(size)
    if grey:  # made like the data set's photos: 25 px, then resized once (bilinear)
        img = img.astype('float32').mean(axis=2, keepdims=True)
        img = image.imresize(image.center_crop(img, (min(img.shape[:2]),) * 2)[0],
                             FACE_PIXELS, FACE_PIXELS, interp=1)
        side = size * 256 // 224
        img = image.imresize(img, side, side, interp=1).reshape((side, side, 1)).tile((1, 1, 3))
    elif side:  # the resize step the training pictures had
        img = image.resize_short(img, side)
    data, _ = transform(img, -1, test_augs)
    data = data.expand_dims(axis=0)
    out = net(data.as_in_context(ctx[0]))
    out = nd.softmax(out)
    pred = int(nd.argmax(out, axis=1).asscalar())
    prob = out[0][pred].asscalar()
    label = train_imgs.synsets
    return 'With prob=%f, %s' % (prob, label[pred])


def as_file(photo, path):
    """A held-out photo kept in memory (uint8 HWC) written as a PNG, for classify_hotdog."""
    if isinstance(photo, str):
        return photo
    utils.display.plotting.plt.imsave(path, photo)
    return path


if args.predict is not None:
    examples = [(fname, None) for fname in args.predict]
for i, (photo, truth) in enumerate(examples):
    fname = as_file(photo, run.figure('held_out_%d_%s.png' % (i, truth)))
    print('%s (%s): %s' % (os.path.basename(fname),
                           'true class: %s' % truth if truth else 'not from the data set',
                           classify_hotdog(finetune_net, fname, grey=dataset == 'faces')))

# %% [markdown]
# A held-out line can be wrong (0.95 test accuracy on 40 photos is two mistakes), and the
# astronaut, whose face fills a small part of a colour frame, can go either way once shrunk to
# 25 grey pixels.

# %% [markdown]
# ## Conclusion
#
# A model pretrained on a large data set makes a good classifier from a small one: both tasks
# need the same low-level skills (edges, textures, shapes), and the layers near the input
# learned them on ImageNet. The exercises are in `chapters/fine_tuning_exercises.py`.

# %%
run.finish(dataset=dataset, model=model_name, devices=[str(c) for c in ctx], image_size=size,
           histories=histories)
