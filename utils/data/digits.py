"""scikit-learn's digits, cut into two halves for transfer between them (0-4, then 5-9).

    images, labels = load_digits()             # float32 (1797, 1, 8, 8) in [0, 1], labels 0-9
    (x04, y04), (x59, y59) = halves(images, labels)   # y59 shifted to 0-4, as y04

The data set (1797 8x8 images with 17 grey levels, about 180 per digit, from UCI's optical
recognition of handwritten digits) ships inside scikit-learn's wheel, so it needs no network.
MNIST's 28x28 digits, which the text's mnist-transfer-cnn example uses, ship in no package the
project installs.
"""
import warnings

import numpy as np

from ..errors import UserError


def load_digits():
    """All 1797 digits as NCHW float32 in [0, 1] (the 0-16 grey levels / 16) and int labels."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise UserError('scikit-learn is not installed, and its digits data set comes with it: '
                        '`make venv` installs it, or `pip install scikit-learn`') from None
    with warnings.catch_warnings():
        # scikit-learn 1.7 sets an array's shape, which numpy 2.5 deprecates: not ours to fix
        warnings.simplefilter('ignore', DeprecationWarning)
        digits = sklearn_digits()
    images = (digits.images[:, None, :, :] / 16.0).astype(np.float32)
    return images, digits.target.astype(np.int64)


def halves(images, labels, first=5):
    """((images, labels) of the digits below `first`, those of the others with `first`
    subtracted from their labels): two tasks with the same label numbers."""
    low = labels < first
    return (images[low], labels[low]), (images[~low], labels[~low] - first)
