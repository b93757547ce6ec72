"""The fine-tuning text's image augmentations, its transform of (image, label) pairs (saved
from chapters/fine_tuning.py, see bookgen.saved), and a numpy crop with per-batch
normalisation for nets whose loader is the bottleneck."""
import math
import random

import cv2
import numpy as np
from mxnet import image, nd
from mxnet.gluon.data.dataloader import default_batchify_fn

from ..pretrained.imagenet import IMAGENET_MEAN, IMAGENET_STD, normalise


def augmentations(size, resize=True):
    """The text's train_augs and test_augs, at `size` pixels.

    RandomCropAug and CenterCropAug take the largest region of the crop's shape that fits an
    image smaller than the crop and upsample it to `size`: every image comes out size x size.
    At a size below 224 the image is first resized (shorter side) so the crop keeps the same
    share of the picture as a 224 crop of the 256-pixel-ish originals.
    """
    side = resize_side(size, resize)
    resize = [image.ResizeAug(side)] if side else []
    train_augs = resize + [image.HorizontalFlipAug(.5), image.RandomCropAug((size, size))]
    test_augs = resize + [image.CenterCropAug((size, size))]
    return train_augs, test_augs


def resize_side(size, resize=True):
    """The shorter side the text's resize step gives pictures for `size`-pixel crops, or None
    when pictures are cropped as they are (at 224, or with resize=False)."""
    return size * 256 // 224 if resize and size != 224 else None


# @saved from chapters/fine_tuning.py: edit it there, then `python -m bookgen.saved`
def transform(data, label, augs):
    """The text's transform: augment an HWC image with values 0-255, make it CHW, and
    normalise it for ImageNet nets (the port's addition)."""
    data = data.astype('float32')
    for aug in augs:
        data = aug(data)
    data = normalise(nd.transpose(data, (2, 0, 1)))
    return data, nd.array([label]).asscalar().astype('float32')


# Augmentation in numpy, normalisation per batch, for nets so small that the loader is their
# bottleneck. gluon's RandomResizedCrop, RandomFlipLeftRight, ToTensor and Normalize dispatch
# several MXNet operations per picture: 0.37 ms per 96-px crop measured on 2 cores, where a
# mobilenet0.25 training step at 96 px costs 0.55 ms per picture. What gluon lacks is a crop
# that runs in plain numpy and OpenCV, and a normalisation applied to the whole batch at once.

class RandomResizedCropFlip:
    """gluon's RandomResizedCrop then RandomFlipLeftRight on a uint8 HWC picture (NDArray or
    numpy), returning a uint8 HWC numpy array: a region of `scale` of the picture's area and an
    aspect ratio in `ratio` (log-uniform), 10 tries, else the largest centred square; resized
    bilinearly to `size`, flipped with probability 1/2. Draws from Python's `random`, which
    utils.train seeds per epoch, as gluon's crop does."""

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
        self.size, self.scale = size, scale
        self.log_ratio = (math.log(ratio[0]), math.log(ratio[1]))

    def region(self, height, width):
        """(top, left, h, w) of the crop."""
        for _ in range(10):
            area = random.uniform(*self.scale) * height * width
            aspect = math.exp(random.uniform(*self.log_ratio))
            w, h = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if 0 < w <= width and 0 < h <= height:
                return random.randint(0, height - h), random.randint(0, width - w), h, w
        side = min(height, width)
        return (height - side) // 2, (width - side) // 2, side, side

    def crop_shape(self, img):
        """(size, size, channels) of the crops of the numpy picture `img`."""
        return (self.size, self.size, img.shape[2] if img.ndim == 3 else 1)

    def __call__(self, img):
        img = _numpy(img)
        return self.into(img, np.empty(self.crop_shape(img), dtype=img.dtype))

    def into(self, img, out):
        """Write the crop of the picture `img` into `out` (a size x size x channels numpy array)
        and return `out`."""
        img = _numpy(img)
        top, left, h, w = self.region(*img.shape[:2])
        region = img[top:top + h, left:left + w]
        target = out[:, :, 0] if out.shape[2] == 1 else out  # OpenCV drops a single channel
        _kept_in(target, cv2.resize(region, (self.size, self.size), dst=target,
                                    interpolation=cv2.INTER_LINEAR))
        if random.random() < 0.5:
            # In place: 1.3 us against 32 us for numpy's out[:] = out[:, ::-1] at 96 px
            _kept_in(target, cv2.flip(target, 1, dst=target))
        return out


def _kept_in(target, result):
    """Make sure an OpenCV result asked for in `target` is there: OpenCV returns a new array
    instead when it cannot write into the one given."""
    if result.ctypes.data != target.ctypes.data:
        target[...] = result.reshape(target.shape)


def normalised_batch(samples):
    """DataLoader batchify_fn for (uint8 HWC picture, label) samples: one (N, 3, H, W) float32
    batch scaled to [0, 1] and normalised for ImageNet nets (ToTensor and Normalize, applied
    once per batch), and the labels as the default batchify_fn gives them (same values and
    dtype)."""
    return _normalised(np.stack([picture for picture, _ in samples])), _labels(samples)


class CroppedBatches:
    """DataLoader batchify_fn for (uint8 HWC numpy picture, label) samples of any sizes: each
    picture cropped and flipped by `crop` (a RandomResizedCropFlip) straight into the batch,
    then the batch normalised as normalised_batch does. The same batches as a dataset
    transformed by `crop` batched by normalised_batch, without the per-sample transform and
    the stacking copy."""

    def __init__(self, crop):
        self.crop = crop

    def __call__(self, samples):
        first = _numpy(samples[0][0])
        pictures = np.empty((len(samples),) + self.crop.crop_shape(first), dtype=first.dtype)
        for picture, (img, _) in zip(pictures, samples):
            self.crop.into(img, picture)
        return _normalised(pictures), _labels(samples)


def _numpy(img):
    return img.asnumpy() if isinstance(img, nd.NDArray) else np.asarray(img)


# Both arrays reach MXNet without a copy (nd.from_numpy, zero_copy): `nd.array` copies
# synchronously through the engine, so the training thread waited behind the batch being
# computed; measured on 2 cores, the loader's share of a mobilenet0.25 step at 96 px fell from
# 0.30 to 0.11 ms per picture. The arrays handed over are new and never written again, as
# zero_copy requires.

def _normalised(pictures):
    batch = nd.from_numpy(pictures, zero_copy=True)
    return nd.image.normalize(nd.image.to_tensor(batch), IMAGENET_MEAN, IMAGENET_STD)


def _labels(samples):
    labels = [label for _, label in samples]
    if isinstance(labels[0], (nd.NDArray, tuple)):
        return default_batchify_fn(labels)
    return nd.from_numpy(np.ascontiguousarray(labels), zero_copy=True)
