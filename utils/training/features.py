"""Cached features: a frozen base runs once per image, and a head trains on what it output.

Training a new head on a frozen base would otherwise run the base again at every epoch; with
the base's output kept in memory an epoch of the head takes a fraction of a second.
"""
from mxnet import gluon, nd

from .predict import predict_dataset


def cache_features(base, dataset, batch_size=32, ctx=None):
    """The frozen `base`'s output for every (image, label) of `dataset`: (features, labels)."""
    return predict_dataset(base, dataset, batch_size, ctx)


def feature_loader(features, labels, batch_size, shuffle=False):
    """A DataLoader over cached features, for utils.train."""
    return gluon.data.DataLoader(gluon.data.ArrayDataset(nd.array(features), nd.array(labels)),
                                 batch_size, shuffle=shuffle)
