"""Fashion-MNIST from Debian's `dataset-fashion-mnist` package, and its classes' ImageNet rows.

    images, labels = load_fashion_mnist('test')      # uint8 (10000, 28, 28), uint8 (10000,)
    imagenet_rows(['Sandal', 'Sneaker'])             # {'Sandal': 774, 'Sneaker': 770}

The package (30 MB, Debian bullseye and later) puts the four gzipped IDX files under
/usr/share/datasets/fashion-mnist/. Without root, `make fashion-mnist` extracts the same files
from the downloaded .deb into data/fashion-mnist/ (`apt-get download` + `dpkg-deb -x`).

Gluon's own `gluon.data.vision.FashionMNIST` is not used: it accepts only its mirror's gzip files
by sha1 (Debian's recompressed ones differ), tries to download anything else, and reads the
headers without checking them. The IDX reader below checks magic, dimensions and size.
"""
import gzip
import os
import struct
import zlib

import numpy as np

from ..errors import UserError
from ..pretrained.imagenet import imagenet_classes

PACKAGE_PATH = 'usr/share/datasets/fashion-mnist'  # inside the .deb
DEBIAN_FOLDER = '/' + PACKAGE_PATH
ENV_VAR = 'FASHION_MNIST_DIR'
PROJECT_DATA = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'data')
# `dpkg-deb -x` keeps the package's paths below the folder it extracts into
EXTRACTED_FOLDER = os.path.join(PROJECT_DATA, 'fashion-mnist')

FILES = {'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
         'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}

# Label order of the data set (zalandoresearch/fashion-mnist README).
CLASSES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
           'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot')

# The ImageNet class that shows the same kind of product; trouser, dress and shirt have none
# close enough ('jean' is one fabric, 'gown' one kind of dress).
IMAGENET_NAMES = {'T-shirt/top': 'jersey', 'Pullover': 'sweatshirt', 'Coat': 'trench coat',
                  'Sandal': 'sandal', 'Sneaker': 'running shoe', 'Bag': 'purse',
                  'Ankle boot': 'cowboy boot'}

HOW_TO_GET = ('get it with `sudo apt-get install dataset-fashion-mnist` (Debian bullseye or '
              'later), or without root `make fashion-mnist` (apt-get download + dpkg-deb -x into '
              'data/fashion-mnist), or set %s to a folder holding the four IDX files' % ENV_VAR)

# IDX type codes (the third byte of the magic number) and their big-endian numpy types.
IDX_TYPES = {0x08: '>u1', 0x09: '>i1', 0x0B: '>i2', 0x0C: '>i4', 0x0D: '>f4', 0x0E: '>f8'}


# %% The IDX format

def read_idx(path):
    """The array stored in an IDX file (gzipped or not: told by its first bytes, not its name).

    The header is 2 zero bytes, a type code, the number of dimensions, then each dimension as a
    big-endian uint32; the data must fill exactly the product of the dimensions. A damaged file
    raises a one-line UserError naming it.
    """
    def damaged(reason):
        return UserError('%s is not a valid IDX file (%s): delete it and get the data again; %s'
                         % (path, reason, HOW_TO_GET))

    try:
        with open(path, 'rb') as f:
            raw = f.read()
        if raw[:2] == b'\x1f\x8b':
            raw = gzip.decompress(raw)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise damaged('broken gzip data: %s' % (str(err) or type(err).__name__)) from None
    except OSError as err:
        raise UserError('%s cannot be read (%s)' % (path, err.strerror or err)) from None
    if len(raw) < 4:
        raise damaged('%d bytes, shorter than the 4-byte magic number' % len(raw))
    zeros, type_code, ndim = raw[:2], raw[2], raw[3]
    if zeros != b'\x00\x00' or type_code not in IDX_TYPES or ndim == 0:
        raise damaged('bad magic number 0x%s' % raw[:4].hex())
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise damaged('header cut short: %d of %d bytes' % (len(raw), header))
    dims = struct.unpack('>%dI' % ndim, raw[4:header])
    dtype = np.dtype(IDX_TYPES[type_code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise damaged('dimensions %s need %d data bytes, the file has %d'
                      % ('x'.join(map(str, dims)), expected, len(raw) - header))
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder('='))


# %% Finding the files

def _idx_file(folder, name):
    """`folder/name.gz` or `folder/name`, whichever exists, else None."""
    for candidate in (name + '.gz', name):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def _complete(folder):
    return all(_idx_file(folder, name) for pair in FILES.values() for name in pair)


def candidate_folders(folder=None):
    """Where the files are looked for, in order: `folder`, $FASHION_MNIST_DIR, data/ (flat or
    as extracted from the .deb), the installed package."""
    if folder:
        return [folder]
    found = [os.environ[ENV_VAR]] if os.environ.get(ENV_VAR) else []
    return found + [EXTRACTED_FOLDER, os.path.join(EXTRACTED_FOLDER, PACKAGE_PATH),
                    DEBIAN_FOLDER]


def find_fashion_mnist(folder=None):
    """The first folder holding all four IDX files, or None."""
    for candidate in candidate_folders(folder):
        if _complete(candidate):
            return candidate
    return None


def locate_fashion_mnist(folder=None):
    """Like find_fashion_mnist, but a one-line UserError saying how to get the data when absent."""
    found = find_fashion_mnist(folder)
    if found is None:
        raise UserError('Fashion-MNIST not found in %s: %s'
                        % (', '.join(candidate_folders(folder)), HOW_TO_GET))
    return found


def load_fashion_mnist(split='train', folder=None):
    """(images uint8 (N, 28, 28), labels uint8 (N,)) of the 'train' (60000) or 'test' (10000)
    split; label k is CLASSES[k]."""
    if split not in FILES:
        raise UserError('unknown Fashion-MNIST split %r: use train or test' % split)
    root = locate_fashion_mnist(folder)
    image_path, label_path = (_idx_file(root, name) for name in FILES[split])
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise UserError('%s holds %s %s, not uint8 images (N, rows, columns): wrong file?'
                        % (image_path, images.dtype, images.shape))
    if labels.shape != (len(images),) or labels.dtype != np.uint8:
        raise UserError('%s holds %s labels %s for %d images in %s: the two files do not match'
                        % (label_path, labels.dtype, labels.shape, len(images), image_path))
    if labels.size and labels.max() >= len(CLASSES):
        raise UserError('%s holds label %d; Fashion-MNIST has %d classes'
                        % (label_path, labels.max(), len(CLASSES)))
    return images, labels


def load_classes(split, classes, per_class=None, folder=None):
    """Only the images of `classes` (names of CLASSES), labelled 0, 1, ... in that order.

    per_class: keep the first `per_class` images of each class, in file order (a fixed,
    reproducible sample); None keeps all.
    """
    unknown = [c for c in classes if c not in CLASSES]
    if unknown:
        raise UserError('not Fashion-MNIST classes: %s; the classes are: %s'
                        % (', '.join(unknown), ', '.join(CLASSES)))
    images, labels = load_fashion_mnist(split, folder)
    picked = [np.flatnonzero(labels == CLASSES.index(c))[:per_class] for c in classes]
    new_labels = np.concatenate([np.full(len(p), k, np.int64) for k, p in enumerate(picked)])
    return images[np.concatenate(picked)], new_labels


def as_product_photos(images, invert=True):
    """uint8 (N, 28, 28) -> uint8 RGB (N, 28, 28, 3), dark on white like a shop's photos.

    The data set stores products light on black; ImageNet's pictures of shoes and bags are
    mostly the other way round (measured: MobileNetV2's rows sandal / running shoe / cowboy
    boot tell those three classes apart at 0.59 inverted, 0.37-0.40 as stored, 96 px).
    """
    images = np.asarray(images, np.uint8)
    return np.repeat((255 - images if invert else images)[..., None], 3, axis=-1)


# %% Classes and their ImageNet rows

def imagenet_rows(classes=None):
    """{Fashion-MNIST class: ImageNet output row}, looked up by the ImageNet class name.

    `classes` defaults to every class that has a counterpart (IMAGENET_NAMES).
    """
    names = imagenet_classes()
    rows = {}
    for cls in (IMAGENET_NAMES if classes is None else classes):
        if cls not in IMAGENET_NAMES:
            raise UserError('Fashion-MNIST class %r has no ImageNet counterpart; these have: %s'
                            % (cls, ', '.join(IMAGENET_NAMES)))
        rows[cls] = names.index(IMAGENET_NAMES[cls])
    return rows
