"""The data sets of the fine-tuning chapters: hotdog online, real faces from scikit-image offline.

Both give `ImageFolderDataset`-like datasets of (HWC float32 image with values 0-255, label)
pairs and a `synsets` list of class names, so the chapters' transforms work on either.
"""
import os

import numpy as np
from mxnet import gluon, image, nd

from .download import DownloadError, download, extract
from .errors import UserError

# d2l's mirror first, the source text's original URL second.
HOTDOG_URLS = ('http://d2l-data.s3-accelerate.amazonaws.com/hotdog.zip',
               'https://apache-mxnet.s3-accelerate.amazonaws.com/gluon/dataset/hotdog.zip')
HOTDOG_SHA1 = 'fba480ffa8aa7e0febbb511d181409f899b9baa5'
DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'data')


def get_hotdog(data_dir=DATA_DIR, urls=HOTDOG_URLS, sha1=HOTDOG_SHA1):
    """Download (if needed) and extract hotdog.zip; return the folder holding train/ and test/.

    Raises DownloadError (one line, saying where to put the file by hand) without network.
    """
    folder = os.path.join(data_dir, 'hotdog')
    archive = os.path.join(data_dir, 'hotdog.zip')
    fname = download(list(urls), archive, sha1)
    extract(fname, data_dir)
    check_image_folder(os.path.join(folder, 'train'))
    check_image_folder(os.path.join(folder, 'test'))
    return folder


def hotdog_available(data_dir=DATA_DIR, urls=HOTDOG_URLS, sha1=HOTDOG_SHA1):
    """The hotdog folder, or None (with the reason) when it cannot be had."""
    try:
        return get_hotdog(data_dir, urls, sha1), None
    except DownloadError as err:
        return None, str(err)


IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')


def check_image_folder(root):
    """Refuse, in one line, a folder that ImageFolderDataset would silently get wrong."""
    if not os.path.isdir(root):
        raise UserError('%s is not a folder: it must hold one sub-folder of images per class'
                        % root)
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if len(classes) < 2:
        raise UserError('%s holds %d class folder(s): at least two are needed, one sub-folder '
                        'of images per class' % (root, len(classes)))
    for name in classes:
        files = [f for f in os.listdir(os.path.join(root, name))
                 if f.lower().endswith(IMAGE_SUFFIXES)]
        if not files:
            raise UserError('class folder %s holds no .jpg or .png image: add pictures or '
                            'remove the folder' % os.path.join(root, name))
    return classes


class CheckedImageFolderDataset(gluon.data.vision.ImageFolderDataset):
    """ImageFolderDataset whose undecodable files are named in one line instead of a trace."""

    def __getitem__(self, idx):
        path = self.items[idx][0]
        try:
            img = image.imread(path, self._flag)
        except Exception:  # MXNetError from OpenCV's decoder
            raise UserError('%s cannot be decoded as an image: replace or delete it' % path)
        label = self.items[idx][1]
        if self._transform is not None:
            return self._transform(img, label)
        return img, label


def image_folder(root, transform=None):
    """The text's `ImageFolderDataset`, with the folder checked and bad files named."""
    check_image_folder(root)
    return CheckedImageFolderDataset(root, transform=transform)


class ArrayImageDataset(gluon.data.Dataset):
    """In-memory images with ImageFolderDataset's interface (`synsets`, transform(img, label))."""

    def __init__(self, images, labels, synsets, transform=None):
        self._images, self._labels = images, labels
        self.synsets = list(synsets)
        self._transform = transform

    def __len__(self):
        return len(self._images)

    def __getitem__(self, idx):
        img, label = nd.array(self._images[idx]), int(self._labels[idx])
        if self._transform is not None:
            return self._transform(img, label)
        return img, label


def load_faces(size, seed=0, train_fraction=0.8):
    """scikit-image's lfw_subset as 'face' / 'not-face' (100 real photos each, 25x25 grey).

    Split per class with a fixed seed, grey repeated to 3 channels, resized to `size`
    pixels (bilinear), values 0-255. Returns (train_images, train_labels), (test_images,
    test_labels), synsets.
    """
    from skimage import data as skdata  # imported here: only the offline path needs it
    photos = skdata.lfw_subset()  # (200, 25, 25) in [0, 1]: 100 faces, then 100 non-faces
    labels = np.repeat([0, 1], 100)
    rng = np.random.RandomState(seed)
    train_idx, test_idx = [], []
    for cls in (0, 1):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        cut = int(round(train_fraction * len(idx)))
        train_idx.extend(idx[:cut])
        test_idx.extend(idx[cut:])
    grey = nd.array(photos[..., None] * 255).astype('float32')
    resized = np.stack([image.imresize(g, size, size, interp=1).asnumpy() for g in grey])
    rgb = np.repeat(resized, 3, axis=-1).astype('float32')
    return ((rgb[train_idx], labels[train_idx]), (rgb[test_idx], labels[test_idx]),
            ['face', 'not-face'])
