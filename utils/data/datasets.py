"""The data sets of the fine-tuning chapters: hotdog online, real faces from scikit-image offline.

Both give `ImageFolderDataset`-like datasets of (HWC float32 image with values 0-255, label)
pairs and a `synsets` list of class names, so the same transforms work on either.
`hotdog_or_faces` is what the chapters call; `HOTDOG_SETTINGS` are its command-line options.
"""
import os

import numpy as np
from mxnet import gluon, image, nd

from ..cli import data_dir as data_folder, opt, sha1_hex
from .download import DownloadError, download_checked, extract, extraction_damage
from ..errors import UserError
from ..files import can_write_in
from .split import ALL, per_class_subset, split_per_class
from .decoded import decode_once
from .transforms import augmentations, resize_side, transform

# d2l's mirror first, the source text's original URL second.
HOTDOG_URLS = ('http://d2l-data.s3-accelerate.amazonaws.com/hotdog.zip',
               'https://apache-mxnet.s3-accelerate.amazonaws.com/gluon/dataset/hotdog.zip')
HOTDOG_SHA1 = 'fba480ffa8aa7e0febbb511d181409f899b9baa5'
DATA_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'data')


def get_hotdog(data_dir=DATA_DIR, urls=HOTDOG_URLS, sha1=HOTDOG_SHA1):
    """Download (if needed) and extract hotdog.zip; return the folder holding train/ and test/.

    `urls`: strings, checked against `sha1`, or (URL, sha1) pairs (a mirror's own build).
    Raises DownloadError (one line, saying where to put the file by hand) without network.
    A `data_dir` that cannot be written (a read-only classroom share) is used as it is when
    it holds the extracted folder, else refused in one line saying what is missing.
    """
    folder = os.path.join(data_dir, 'hotdog')
    archive = os.path.join(data_dir, 'hotdog.zip')
    sources = [u if isinstance(u, tuple) else (u, sha1) for u in urls]
    if not can_write_in(data_dir):
        _check_read_only_share(data_dir, archive, sources)
    else:
        fname, archive_sha1 = download_checked(sources, archive)
        extract(fname, data_dir, archive_sha1)  # the download checked it: no second hashing
    check_image_folder(os.path.join(folder, 'train'))
    check_image_folder(os.path.join(folder, 'test'))
    return folder


class ReadOnlyShareError(DownloadError):
    """A read-only data folder without the extracted data: nothing can be fetched into it."""


def _check_read_only_share(data_dir, archive, sources):
    """A read-only data folder needs hotdog/ extracted by a run with write access (its
    extraction marker, and every file at its size); hotdog.zip itself is not read."""
    missing = extraction_damage(archive, data_dir, [s for _, s in sources])
    if missing:
        raise ReadOnlyShareError(
            '%s is read-only and incomplete: %s; run a chapter once with write access to it '
            '(or give --data-dir a folder you can write to)' % (os.path.abspath(data_dir), missing))


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
    train_idx, test_idx = split_per_class(labels, train_fraction, seed)
    grey = nd.array(photos[..., None] * 255).astype('float32')
    resized = np.stack([image.imresize(g, size, size, interp=1).asnumpy() for g in grey])
    rgb = np.repeat(resized, 3, axis=-1).astype('float32')
    return ((rgb[train_idx], labels[train_idx]), (rgb[test_idx], labels[test_idx]),
            ['face', 'not-face'])


# The command-line options of every chapter that reads hotdog (utils.cli.settings).
HOTDOG_SETTINGS = dict(
    dataset=opt('auto', 'auto: hotdog when it can be had, else faces (offline)',
                choices=['auto', 'hotdog', 'faces']),
    data_dir=opt(os.environ.get('GLUON_TRANSFER_DATA'),
                 'where hotdog.zip is downloaded and extracted (default: data/, or '
                 '$GLUON_TRANSFER_DATA); a read-only folder is used as it is when it holds '
                 'the extracted data', type=data_folder),
    data_url=opt(None, 'mirror of hotdog.zip, tried before the default URLs (also $HOTDOG_URL)',
                 action='append'),
    data_sha1=opt(os.environ.get('HOTDOG_SHA1', HOTDOG_SHA1),
                  "sha1 of the mirror's hotdog.zip (also $HOTDOG_SHA1); the default URLs "
                  "are always checked against the published sha1", type=sha1_hex),
)
FACE_PHOTOS = ('astronaut.png', 'coffee.png')  # a face, and no face: for classify_hotdog


def hotdog_urls(mirrors=None):
    """Where hotdog.zip is tried: the given mirrors, $HOTDOG_URL, then the default URLs."""
    extra = [os.environ['HOTDOG_URL']] if 'HOTDOG_URL' in os.environ else []
    return list(mirrors or []) + extra + list(HOTDOG_URLS)


def hotdog_sources(mirrors=None, mirror_sha1=HOTDOG_SHA1):
    """hotdog_urls as (URL, sha1) pairs: the mirrors' file checked against `mirror_sha1`
    (--data-sha1), the default URLs' against the published HOTDOG_SHA1."""
    return [(url, HOTDOG_SHA1 if url in HOTDOG_URLS else mirror_sha1)
            for url in hotdog_urls(mirrors)]


def hotdog_folder(args):
    """The extracted hotdog folder for the HOTDOG_SETTINGS in `args`, or None when the faces
    stand in (--dataset auto without the data, said in one line); --dataset hotdog without
    the data is a UserError."""
    if args.dataset not in ('auto', 'hotdog'):
        return None
    kwargs = {'urls': hotdog_sources(args.data_url, args.data_sha1)}
    if args.data_dir:
        kwargs['data_dir'] = args.data_dir
    try:
        return get_hotdog(**kwargs)
    except ReadOnlyShareError as err:
        if args.dataset == 'hotdog' or args.data_dir:  # a share was named: say what it lacks
            raise
        why = str(err)
    except DownloadError:
        if args.dataset == 'hotdog':
            raise
        why = None
    print('hotdog data unavailable (%s): running offline on scikit-image\'s face / not-face '
          'photos with MobileNetV2 ImageNet weights'
          % (why or 'no data/hotdog.zip, no network'))
    return None


def hotdog_or_faces(args, size, resize_hotdog=True, folder='find', transforms=None):
    """(train_imgs, test_imgs, data set name, examples) at `size`-pixel crops, from
    HOTDOG_SETTINGS and `args.seed`.

    folder: the extracted hotdog folder, None for the offline faces, or 'find' to ask
    hotdog_folder (--dataset auto: hotdog when it can be downloaded or is in data/, else the
    faces). transforms: (train, test) functions of (image, label), given images resized once
    (resize_side); by default the text's train_augs and test_augs through `transform`.
    `args.per_class` (if the chapter has it; default all): training images kept per class,
    drawn with `args.seed` (utils.training.few_shot.per_class_subset).
    examples: [(photo, its true class or None)] for classify_hotdog; a photo is a file name
    or a uint8 HWC image (a held-out face photo).
    """
    if folder == 'find':
        folder = hotdog_folder(args)
    if transforms is None:
        train_augs, test_augs = augmentations(size, resize=False)
        transforms = (lambda X, y: transform(X, y, train_augs),
                      lambda X, y: transform(X, y, test_augs))
    if folder:
        return _hotdog_data(folder, size, transforms, resize_hotdog, _per_class(args),
                            args.seed)
    return _face_data(size, transforms, args.seed, _per_class(args))


def _per_class(args):
    return getattr(args, 'per_class', None) or ALL


def _hotdog_data(folder, size, transforms, resize=True, per_class=ALL, seed=0):
    # Decoded and resized once (in memory when it fits): each epoch repeats only the flip and
    # the crop. The augmentations therefore start after the resize step.
    side = resize_side(size, resize)
    train_folder = image_folder(os.path.join(folder, 'train'))
    keep = per_class_subset([label for _, label in train_folder.items], per_class, seed)
    train_folder.items = [train_folder.items[i] for i in keep]
    train_imgs = decode_once(train_folder, side, transforms[0], name='hotdog train')
    test_imgs = decode_once(image_folder(os.path.join(folder, 'test')), side, transforms[1],
                            name='hotdog test')
    # held-out photos of each class, with their true class
    examples = [(test_imgs.items[i][0], test_imgs.synsets[test_imgs.items[i][1]])
                for i in (0, 1, len(test_imgs) - 2, len(test_imgs) - 1)]
    return train_imgs, test_imgs, 'hotdog', examples


def _face_data(size, transforms, seed, per_class=ALL):
    # The 25-pixel photos are resized once, to what the resize step would give, then cropped.
    (train_x, train_y), (test_x, test_y), synsets = load_faces(size * 256 // 224, seed=seed)
    keep = per_class_subset(train_y, per_class, seed)
    train_imgs = ArrayImageDataset(train_x[keep], train_y[keep], synsets, transform=transforms[0])
    test_imgs = ArrayImageDataset(test_x, test_y, synsets, transform=transforms[1])
    # the first two held-out photos of each class at their own 25 pixels (classify_hotdog
    # resizes them as the test set was), then two photos from outside the data set: a face,
    # and a coffee cup that is neither class
    from skimage import data as skdata
    _, (test_photos, _), _ = load_faces(25, seed=seed)
    examples = [(test_photos[i].astype(np.uint8), synsets[test_y[i]])
                for c in (0, 1) for i in np.flatnonzero(test_y == c)[:2]]
    examples += [(os.path.join(skdata.data_dir, name), None) for name in FACE_PHOTOS]
    return train_imgs, test_imgs, 'faces', examples


def with_transform(dataset, fn):
    """The same images through another transform (e.g. the training images without
    augmentation, for a feature cache)."""
    import copy
    view = copy.copy(dataset)
    view._transform = fn
    return view
