"""An image folder decoded and resized once, kept in memory, when it fits.

Decoding a JPEG or PNG and resizing it costs more than the random flip and crop that follow,
and for a small net at 96 pixels more than the net's own step. `decode_once` wraps an
`ImageFolderDataset` so that every picture is decoded and its shorter side resized a single
time, into uint8 arrays; each epoch then repeats only the augmentation. Gluon has no such
wrapper: `ImageFolderDataset` decodes on every access, and `ArrayDataset`/`SimpleDataset` need
the arrays already made (and drop `items` and `synsets`, which the chapters read).

The memory it may take is a budget measured when the wrapper is made: a quarter of the memory
the system reports available (`MemAvailable`), or `$GLUON_TRANSFER_DECODE_BUDGET_MIB`. The
decoded size is estimated from the files' headers before decoding anything; over the budget,
pictures are decoded (and resized the same way) on every access, and one line says so.
"""
import os
import time

from mxnet import gluon, image

from ..errors import UserError

BUDGET_ENV = 'GLUON_TRANSFER_DECODE_BUDGET_MIB'
BUDGET_SHARE = 0.25  # of the available memory: leaves room for the net, and for other programs
RESIZE_INTERP = 2  # area interpolation, as image.ResizeAug uses by default
MIB = 1 << 20


def available_bytes():
    """Memory available to new allocations now (Linux /proc/meminfo), or None if unknown."""
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:  # other Unixes: free pages, an underestimate
        return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    except (ValueError, OSError, AttributeError):
        return None


def memory_budget():
    """Bytes the decoded pictures may take: $GLUON_TRANSFER_DECODE_BUDGET_MIB, else a quarter
    of the available memory (0 when that cannot be measured: decode per epoch)."""
    if os.environ.get(BUDGET_ENV):
        return budget_from_environment(os.environ[BUDGET_ENV])
    available = available_bytes()
    return int(available * BUDGET_SHARE) if available else 0


def budget_from_environment(text):
    """Bytes for $GLUON_TRANSFER_DECODE_BUDGET_MIB's `text`: a number of MiB, 0 or more (0
    decodes in every epoch); anything else is a one-line UserError."""
    try:
        mib = float(text)
    except ValueError:
        mib = float('nan')
    if not 0 <= mib < float('inf'):
        raise UserError('$%s=%r is not a number of MiB: give a number such as 1024 (0 decodes '
                        'the pictures in every epoch), or unset it' % (BUDGET_ENV, text))
    return int(mib * MIB)


def resized_shape(height, width, short_side):
    """(height, width) after image.resize_short(.., short_side), without the resize."""
    if not short_side:
        return height, width
    if height > width:  # the same integer arithmetic as image.resize_short
        return short_side * height // width, short_side
    return short_side, short_side * width // height


def estimated_bytes(paths, short_side=None, channels=3):
    """Bytes of the decoded (and resized) pictures, from the files' headers only."""
    from PIL import Image  # reads the size from the header, decodes nothing
    total = 0
    for path in paths:
        try:
            with Image.open(path) as img:
                width, height = img.size
        except Exception:  # the decoder names a bad file, in one line, when it meets it
            continue
        h, w = resized_shape(height, width, short_side)
        total += h * w * channels
    return total


class DecodedImages(gluon.data.Dataset):
    """An ImageFolderDataset's pictures as uint8 HWC arrays, decoded and resized (shorter side to
    `short_side`, if given) once, or on each access when `in_memory` is False.

    Keeps `items` and `synsets`, and calls `transform(img, label)` like ImageFolderDataset, so
    it takes its place in the chapters unchanged. as_numpy: the pictures as numpy arrays (for
    utils.data.transforms.RandomResizedCropFlip: reading an NDArray back costs about 0.5 ms).
    """

    def __init__(self, folder, short_side=None, transform=None, in_memory=True, as_numpy=False):
        self._folder = folder
        self.items, self.synsets = folder.items, folder.synsets
        self.short_side = short_side
        self._transform = transform
        self.in_memory, self.as_numpy = in_memory, as_numpy
        self._images = None
        if in_memory:
            self._images = []
            for i in range(len(folder)):
                img = self._decode(i)
                # MXNet works asynchronously: without the wait, the full-size float copies of
                # every picture could be queued at once (a 3.9 GiB peak on the hotdog set).
                if not as_numpy:  # asnumpy has waited
                    img.wait_to_read()
                self._images.append(img)

    def _decode(self, idx):
        img, _ = self._folder[idx]  # the folder's own decoder (and its one-line errors)
        if self.short_side:
            # Resized in float32, as the text's ResizeAug does after transform's astype, then
            # rounded to uint8: within half a level of the per-epoch path, except where the
            # float resize overshoots 0-255 at sharp edges, now clipped. (OpenCV's uint8 area
            # resize takes another route and differs by tens of levels at some pixels.)
            img = image.resize_short(img.astype('float32'), self.short_side, RESIZE_INTERP)
            img = img.round().clip(0, 255).astype('uint8')
        return img.asnumpy() if self.as_numpy else img

    def __len__(self):
        return len(self.items)

    def __getitem__(self, idx):
        img = self._images[idx] if self.in_memory else self._decode(idx)
        label = self.items[idx][1]
        if self._transform is not None:
            return self._transform(img, label)
        return img, label


def decode_once(folder, short_side=None, transform=None, budget_bytes=None, name=None,
                print_fn=print, as_numpy=False):
    """`folder` (an ImageFolderDataset without transform) as DecodedImages: in memory when the
    estimated decoded size fits `budget_bytes` (default: `memory_budget()`), else decoded on
    every access, with one line saying so."""
    budget = memory_budget() if budget_bytes is None else budget_bytes
    need = estimated_bytes([path for path, _ in folder.items], short_side)
    fits = need <= budget
    if not fits:
        print_fn('%s: the decoded pictures would take %.0f MiB, over the %.0f MiB budget (%s): '
                 'decoding them again in every epoch' % (
                     name or 'images', need / MIB, budget / MIB,
                     'set $%s to change it' % BUDGET_ENV))
    start = time.time()
    images = DecodedImages(folder, short_side, transform, in_memory=fits, as_numpy=as_numpy)
    if fits:
        print_fn('%s: %d pictures decoded%s once, %.0f MiB in memory (%.1f s)' % (
            name or 'images', len(images),
            ' and resized to %d px (shorter side)' % short_side if short_side else '',
            need / MIB, time.time() - start))
    return images
