"""Simple object detection: synthetic scenes, boxes and IoU, heads and the loss."""
from .. import _modules_on_first_use

__getattr__, __dir__ = _modules_on_first_use(__name__, __file__)
