"""Subsets of a data set: by index, a share of every class, n images of every class, a test set
out of validation."""
import numpy as np
from mxnet import gluon

from ..errors import UserError


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


def split_per_class(labels, fraction, seed):
    """(indices, rest): a random `fraction` of every class, class by class, and the others."""
    rng = np.random.RandomState(seed)
    chosen, rest = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        cut = int(round(fraction * len(idx)))
        chosen.extend(idx[:cut])
        rest.extend(idx[cut:])
    return chosen, rest


class IndexSampler(gluon.data.Sampler):
    """The given indices, in order (for Dataset.sample: a subset of a dataset)."""

    def __init__(self, indices):
        self._indices = [int(i) for i in indices]

    def __iter__(self):
        return iter(self._indices)

    def __len__(self):
        return len(self._indices)


def split_validation(dataset, seed, fraction=5):
    """(validation, test): a random 1/fraction of `dataset` becomes the test set."""
    if len(dataset) < 2:
        raise UserError('%d validation image(s): at least two are needed to carve out a test '
                        'set' % len(dataset))
    order = np.random.RandomState(seed).permutation(len(dataset))
    cut = max(1, len(dataset) // fraction)
    return (dataset.sample(IndexSampler(sorted(order[cut:]))),
            dataset.sample(IndexSampler(sorted(order[:cut]))))
