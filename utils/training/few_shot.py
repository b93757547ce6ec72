"""Few-shot experiments: per-class training subsets, a fixed number of updates, a pool of
images kept in memory, and learning curves with 95% intervals.

Used by the how-much-data chapter (accuracy against training images per class); the
per-class subsets (from utils.data.split) also serve the fine-tuning chapter's `--per-class`.
"""
import os

import numpy as np
from mxnet import gluon, image

from ..data.datasets import ArrayImageDataset, hotdog_folder, image_folder, load_faces
from ..display.plotting import plt, save_figure
from ..data.split import ALL, parse_per_class, per_class_subset  # noqa: F401  (this module's API)
from ..display.tables import format_table
from ..data.transforms import augmentations, transform


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
# The pool: images decoded and resized once, kept in memory, cropped and normalised per batch

def load_image_folder(root, side, progress=None):
    """Every image of an ImageFolderDataset-style folder, decoded once and kept in memory.

    Shorter side resized to `side`, centre `side` x `side` square kept, uint8.
    Returns (images (N, side, side, 3), labels (N,), synsets). Decoding and resizing a large
    photo costs far more than a training step at 96 px: done once, not in every run.
    """
    from tqdm import tqdm
    folder = image_folder(root)
    images = np.empty((len(folder), side, side, 3), np.uint8)
    labels = np.empty(len(folder), np.int64)
    for i in tqdm(range(len(folder)), desc=os.path.basename(root), leave=False,
                  disable=None if progress is None else not progress):
        img, labels[i] = folder[i]
        img = image.resize_short(img, side)
        images[i] = image.center_crop(img, (side, side))[0].asnumpy()
    return images, labels, list(folder.synsets)


def load_pool(args, side, progress=None):
    """((train_x, train_y), (test_x, test_y), synsets, data set name), uint8 HWC images of
    `side` pixels, from HOTDOG_SETTINGS: hotdog when it can be had, else the faces, whose test
    photos are the same (split seed 0) whatever the seed."""
    folder = hotdog_folder(args)
    if folder:
        train = load_image_folder(os.path.join(folder, 'train'), side, progress)
        test = load_image_folder(os.path.join(folder, 'test'), side, progress)
        return train[:2], test[:2], train[2], 'hotdog'
    (train_x, train_y), (test_x, test_y), synsets = load_faces(side, seed=0)
    return ((train_x.astype(np.uint8), train_y), (test_x.astype(np.uint8), test_y), synsets,
            'faces')


def pool_datasets(train, test, synsets, size):
    """{'train', 'test'}: the pool's images with the text's train_augs / test_augs at `size`
    (the images are already resized to size * 256 / 224, so no resize step)."""
    train_augs, test_augs = augmentations(size, resize=False)
    return {'train': ArrayImageDataset(*train, synsets,
                                       transform=lambda X, y: transform(X, y, train_augs)),
            'test': ArrayImageDataset(*test, synsets,
                                      transform=lambda X, y: transform(X, y, test_augs))}


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


def size_label(size, x_of):
    return '%s' % size if size != ALL else 'all (%d)' % x_of(size)


def curve_table(summary, sizes, x_of):
    """The curve as text: one row per size, 'mean [low, high]' per method."""
    rows = [[size_label(size, x_of)]
            + ['%.3f [%.3f, %.3f]' % tuple(summary[m][str(size)][k]
                                           for k in ('mean', 'low', 'high'))
               for m in summary] for size in sizes]
    return format_table(['per class'] + list(summary), rows)


def plot_curves(summary, sizes, x_of, path, title=None, chance=None):
    """Mean test accuracy against images per class (log x), a shaded 95% interval per method,
    and every run as a small dot, so that one run far from the others (a collapse to chance)
    shows as itself and not only as a lower mean."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    xs = [x_of(size) for size in sizes]
    for method, by_size in summary.items():
        mean = [by_size[str(s)]['mean'] for s in sizes]
        low = [by_size[str(s)]['low'] for s in sizes]
        high = [by_size[str(s)]['high'] for s in sizes]
        line, = ax.plot(xs, mean, marker='o', label=method)
        ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2)
        runs = [(x, run) for x, s in zip(xs, sizes) for run in by_size[str(s)]['runs']]
        ax.scatter(*zip(*runs), s=10, color=line.get_color(), alpha=0.6, zorder=3)
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
