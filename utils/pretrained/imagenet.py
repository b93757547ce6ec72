"""What networks pretrained on ImageNet expect: their preprocessing, and their class names.

Every network of `utils.get_pretrained` takes RGB scaled to [0, 1] and normalised with the
ImageNet mean and standard deviation, (N, 3, 224, 224): `preprocess`, `imagenet_transform` and
`preprocess_batch` do exactly that; `denormalise` turns such a batch back into pictures.
"""
import functools

import mxnet as mx
import numpy as np
from mxnet import nd
from mxnet.gluon.data.vision import transforms
from PIL import Image

from ..errors import UserError, one_line

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def centre_crop(img, size=224, resize=256):
    """torchvision's Resize(resize) and CenterCrop(size) of an HWC uint8 image (NDArray or
    array), still uint8: the part `preprocess` keeps.

    Done as torchvision does on PIL images: the shorter side to `resize` and the longer to
    int(resize * long / short) with PIL's bilinear filter (which antialiases), the crop's
    offsets rounded. Gluon's Resize and CenterCrop differ: OpenCV's bilinear without
    antialiasing, and offsets rounded down (a pixel off on odd margins).
    """
    pil = Image.fromarray(img.asnumpy() if isinstance(img, nd.NDArray) else np.asarray(img))
    width, height = pil.size
    short, long = sorted((width, height))
    new_long = int(resize * long / short)
    width, height = (resize, new_long) if width <= height else (new_long, resize)
    if (width, height) != pil.size:
        pil = pil.resize((width, height), Image.BILINEAR)
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return nd.array(np.asarray(pil.crop((left, top, left + size, top + size))), dtype='uint8')


def imagenet_transform(size=224, resize=256):
    """torchvision's evaluation preprocessing of one HWC uint8 image: shorter side to
    `resize`, centre crop `size` (centre_crop), CHW float in [0, 1], ImageNet mean/std."""
    to_tensor = transforms.Compose([transforms.ToTensor(),
                                    transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    return lambda img: to_tensor(centre_crop(img, size, resize))


def preprocess(img, size=224, resize=256):
    """One HWC RGB image (uint8 NDArray) as a (1, 3, size, size) batch for the networks here."""
    return imagenet_transform(size, resize)(img).expand_dims(axis=0)


def preprocess_batch(images, size=224, ctx=None):
    """uint8 images (N, H, W, 3) -> normalised float32 NDArray (N, 3, size, size).

    Resized (bilinear) while still uint8, then scaled to [0, 1] and normalised: 4x less
    float work than normalising at 224 px and resizing after.
    """
    images = np.asarray(images)
    if images.shape[1] != size or images.shape[2] != size:
        images = nd.image.resize(nd.array(images, dtype='uint8'), size=(size, size)).asnumpy()
    x = images.astype(np.float32) / 255
    x = (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return nd.array(x.transpose(0, 3, 1, 2), ctx=ctx or mx.cpu())


def normalise(chw):
    """A CHW image with values 0-255 (NDArray), scaled to [0, 1] and normalised."""
    mean = nd.array(IMAGENET_MEAN, ctx=chw.context).reshape((3, 1, 1))
    std = nd.array(IMAGENET_STD, ctx=chw.context).reshape((3, 1, 1))
    return (chw / 255 - mean) / std


def denormalise(batch):
    """A normalised batch (N, 3, H, W) -> HWC images in [0, 1], for figures."""
    mean = nd.array(IMAGENET_MEAN, ctx=batch.context).reshape((1, 3, 1, 1))
    std = nd.array(IMAGENET_STD, ctx=batch.context).reshape((1, 3, 1, 1))
    return (batch * std + mean).transpose((0, 2, 3, 1)).clip(0, 1)


def load_image(path):
    """The image file at `path` as an HWC RGB uint8 NDArray; a clear error when unreadable."""
    try:
        with open(path, 'rb') as f:
            return mx.image.imdecode(f.read(), flag=1, to_rgb=True)
    except (OSError, mx.base.MXNetError) as err:
        raise UserError('%s cannot be read as an image (%s): give a JPEG or PNG file'
                        % (path, one_line(err))) from None


@functools.lru_cache(maxsize=1)
def _imagenet_attr():
    from gluoncv.data.imagenet.classification import ImageNet1kAttr
    return ImageNet1kAttr()


def imagenet_classes():
    """The 1000 ImageNet class names in output order (713 photocopier, 934 hotdog)."""
    return list(_imagenet_attr().classes)


def imagenet_synsets():
    """The WordNet ids of the 1000 classes, in output order ('n01440764' is tench)."""
    return list(_imagenet_attr().synset)
