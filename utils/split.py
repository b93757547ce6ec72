"""Subsets of a data set: by index, a share of every class, a test set out of validation."""
import numpy as np
from mxnet import gluon

from .errors import UserError


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
