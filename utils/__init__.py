"""The textbook's helper module: `import utils`, then `utils.train(...)`, `utils.try_all_gpus()`.

Before anything imports MXNet, OMP_NUM_THREADS is set (see utils.threads) and numpy gets back
the names MXNet 1.9.1 reads that newer numpy releases removed (see utils.numpy_compat).
"""
from .numpy_compat import patch_mxnet, restore_numpy_names
from .threads import default_omp_threads

default_omp_threads()
restore_numpy_names()
patch_mxnet()  # imports MXNet: after the two lines above

from .devices import try_gpu, try_all_gpus, parse_devices  # noqa: E402
from .download import download, extract  # noqa: E402
from .errors import UserError  # noqa: E402
from .plotting import show_images, plot_history  # noqa: E402
from .pretrained import (get_pretrained, imagenet_classes, load_image, preprocess,  # noqa: E402
                         IMAGENET_MEAN, IMAGENET_STD)
from .scenes import make_scenes  # noqa: E402
from .detection import iou  # noqa: E402
from .training import train, evaluate_accuracy  # noqa: E402

__all__ = ['try_gpu', 'try_all_gpus', 'parse_devices', 'download', 'extract', 'UserError',
           'show_images', 'plot_history', 'train', 'evaluate_accuracy', 'get_pretrained',
           'imagenet_classes', 'load_image', 'preprocess', 'IMAGENET_MEAN', 'IMAGENET_STD',
           'make_scenes', 'iou']
