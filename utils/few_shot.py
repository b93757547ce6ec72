"""Few-shot experiments: per-class training subsets, a fixed number of updates, in-memory
images, and learning curves with 95% intervals.

Used by the how-much-data chapter (accuracy against training images per class) and by the
fine-tuning chapter's data-scarce demo (`--per-class`).
"""
import os

import numpy as np
from mxnet import gluon, image, nd

from .errors import UserError
from .plotting import plt, save_figure
from .pretrained import IMAGENET_MEAN, IMAGENET_STD

ALL = 'all'  # a per-class size meaning: every image of the training pool


def parse_per_class(text):
    """'8' -> 8, 'all' -> 'all'; anything else is a one-line error."""
    if str(text).lower() == ALL:
        return ALL
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError('images per class must be a whole number >= 1 or "all", not %r' % text)
    return value


def per_class_subset(labels, per_class, seed):
    """Indices of `per_class` examples of every class of `labels`, drawn with `seed`.

    Each class's pool is shuffled once per seed and its first `per_class` images are taken, so
    for one seed the subsets are nested (the 4 images of a class are among its 8): a curve then
    shows more data, not other data. Another seed draws other images. 'all' (or None) takes
    every index. The result is sorted, so it does not depend on the order of classes.
    """
    labels = np.asarray(labels)
    if per_class in (None, ALL):
        return np.arange(len(labels))
    rng = np.random.RandomState(seed)
    chosen = []
    for cls in np.unique(labels):
        pool = np.flatnonzero(labels == cls)
        if per_class > len(pool):
            raise UserError('%d images per class asked for, but class %s has only %d training '
                            'images: use at most %d or "all"'
                            % (per_class, cls, len(pool), len(pool)))
        chosen.append(rng.permutation(pool)[:per_class])
    return np.sort(np.concatenate(chosen))


def pool_size(labels):
    """Images per class of the smallest class: the x value of 'all' on a curve."""
    return int(np.bincount(np.asarray(labels, dtype=int)).min())


class FixedUpdates(gluon.data.Sampler):
    """A batch sampler that yields exactly `updates` batches drawn from `indices`.

    Gluon's samplers count epochs; with a fixed number of updates every training-set size
    gets the same number of optimizer steps. The indices are reshuffled after each pass
    (seeded), and a batch never straddles two passes, so each image is seen equally often.
    """

    def __init__(self, indices, batch_size, updates, seed=0):
        self._indices = np.asarray(indices)
        self._batch_size = min(batch_size, len(self._indices))
        self._updates = updates
        self._seed = seed

    def __iter__(self):
        rng = np.random.RandomState(self._seed)
        done = 0
        while done < self._updates:
            order = rng.permutation(self._indices)
            for start in range(0, len(order) - self._batch_size + 1, self._batch_size):
                if done == self._updates:
                    return
                yield order[start:start + self._batch_size].tolist()
                done += 1

    def __len__(self):
        return self._updates


# ---------------------------------------------------------------------------------------------
# Images in memory: decoded and resized once, cropped and normalised per batch

def crop_augmentations(size, train):
    """The text's train_augs (flip, random crop) or test_augs (centre crop), at `size` pixels.

    The images are already resized to size * 256 / 224 (see `load_image_folder`), so a crop
    keeps the share of the picture that a 224 crop keeps of a 256-pixel image.
    """
    if train:
        return [image.HorizontalFlipAug(.5), image.RandomCropAug((size, size))]
    return [image.CenterCropAug((size, size))]


_MEAN = np.array(IMAGENET_MEAN, np.float32).reshape((3, 1, 1))
_STD = np.array(IMAGENET_STD, np.float32).reshape((3, 1, 1))


def crop_transform(size, train):
    """transform(img, label) for ArrayImageDataset: augment, HWC -> CHW, ImageNet-normalise."""
    augs = crop_augmentations(size, train)

    def transform(img, label):
        for aug in augs:
            img = aug(img)
        chw = img.asnumpy().transpose(2, 0, 1) / 255
        return nd.array((chw - _MEAN) / _STD), np.float32(label)
    return transform


def load_image_folder(root, side, progress=None):
    """Every image of an ImageFolderDataset-style folder, decoded once and kept in memory.

    Shorter side resized to `side`, centre `side` x `side` square kept, uint8.
    Returns (images (N, side, side, 3), labels (N,), synsets). Decoding and resizing a large
    photo costs far more than a training step at 96 px: done once, not in every epoch.
    """
    from tqdm import tqdm
    from .datasets import image_folder
    folder = image_folder(root)
    images = np.empty((len(folder), side, side, 3), np.uint8)
    labels = np.empty(len(folder), np.int64)
    for i in tqdm(range(len(folder)), desc=os.path.basename(root), leave=False,
                  disable=None if progress is None else not progress):
        img, labels[i] = folder[i]
        img = image.resize_short(img, side)
        images[i] = image.center_crop(img, (side, side))[0].asnumpy()
    return images, labels, list(folder.synsets)


# ---------------------------------------------------------------------------------------------
# Means and intervals

def mean_interval(values, confidence=0.95):
    """(mean, low, high): Student's t interval of the mean of `values`.

    t and not the normal quantile: with 5 seeds t(0.975, 4) = 2.78, not 1.96. Accuracies of
    a few test photos are not normal either, so the interval is a guide, not a guarantee.
    With a single value (or identical values) the interval is the value itself.
    """
    from scipy import stats  # scikit-image's dependency
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError('mean_interval of no values')
    mean = float(values.mean())
    if values.size < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + confidence / 2, values.size - 1)
                 * values.std(ddof=1) / np.sqrt(values.size))
    return mean, mean - half, mean + half


def summarise(accuracies):
    """{method: {size: [accuracy per seed]}} -> {method: {size: {mean, low, high, runs}}}.

    The interval is clipped to [0, 1], where accuracies live (with few seeds and spread-out
    values the t interval reaches beyond).
    """
    summary = {}
    for method, by_size in accuracies.items():
        summary[method] = {}
        for size, values in by_size.items():
            mean, low, high = mean_interval(values)
            summary[method][str(size)] = {'mean': mean, 'low': max(0.0, low),
                                          'high': min(1.0, high),
                                          'runs': [float(v) for v in values]}
    return summary


def curve_table(summary, sizes, x_of):
    """The curve as text: one row per size, 'mean [low, high]' per method."""
    methods = list(summary)
    cells = [['per class'] + methods]
    for size in sizes:
        row = ['%s' % size if size != ALL else 'all (%d)' % x_of(size)]
        for method in methods:
            s = summary[method][str(size)]
            row.append('%.3f [%.3f, %.3f]' % (s['mean'], s['low'], s['high']))
        cells.append(row)
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    return '\n'.join('  '.join(c.rjust(w) for c, w in zip(row, widths)) for row in cells)


def plot_curves(summary, sizes, x_of, path, title=None, chance=None):
    """Mean test accuracy against images per class (log x), a shaded 95% interval per method."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    xs = [x_of(size) for size in sizes]
    for method, by_size in summary.items():
        mean = [by_size[str(s)]['mean'] for s in sizes]
        low = [by_size[str(s)]['low'] for s in sizes]
        high = [by_size[str(s)]['high'] for s in sizes]
        line, = ax.plot(xs, mean, marker='o', label=method)
        ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2)
    if chance is not None:
        ax.axhline(chance, color='grey', linestyle=':', label='chance')
    ax.set_xscale('log')
    ax.set_xticks(xs)
    ax.set_xticklabels(['%d' % x if s != ALL else 'all\n(%d)' % x for s, x in zip(sizes, xs)])
    ax.minorticks_off()
    ax.set(xlabel='training images per class (log scale)', ylabel='test accuracy')
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return save_figure(fig, path)
