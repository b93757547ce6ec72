"""Getting pictures in: datasets, downloads, splits, decoding, transforms, cameras."""
from .. import _modules_on_first_use

__getattr__, __dir__ = _modules_on_first_use(__name__, __file__)
