"""The fine-tuning text's image augmentations, and its transform of (image, label) pairs."""
from mxnet import image, nd

from .imagenet import normalise


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


def transform(data, label, augs):
    """The text's transform: augment an HWC image, then CHW, normalised for ImageNet nets
    (the text feeds raw 0-255 pixels and lets ResNet's first BatchNorm absorb the scale;
    MobileNetV2's weights need the real thing)."""
    data = data.astype('float32')
    for aug in augs:
        data = aug(data)
    data = normalise(nd.transpose(data, (2, 0, 1)))
    return data, nd.array([label]).asscalar().astype('float32')
