"""The textbook's helper module: `import utils`, then `utils.train(...)`, `utils.try_all_gpus()`.

Before anything imports MXNet, OMP_NUM_THREADS is chosen (see utils.threads) and numpy gets back
the names MXNet 1.9.1 reads that newer numpy releases removed (see utils.numpy_compat); once
MXNet is imported, the Python thread gets no OpenMP team of its own (see utils.threads). Each
module has one job; what the chapters call is exported here.
"""
from .numpy_compat import patch_mxnet, restore_numpy_names
from .threads import ThreadPolicy, serial_openmp_in_this_thread

_thread_policy = ThreadPolicy()  # starts watching the other processes' use of the cores
restore_numpy_names()  # imports numpy meanwhile
_thread_policy.apply()
patch_mxnet()  # imports MXNet: after the lines above
_thread_policy.refine_after_import()
serial_openmp_in_this_thread()

from .bbox import iou  # noqa: E402
from .block import (batchnorms, first_conv, freeze, freeze_batchnorm, running_stats,  # noqa: E402
                    release_graph, set_bn_momentum, set_trainable, trainable_params)
from .cli import Run, opt, run_chapter, settings  # noqa: E402
from .datasets import (HOTDOG_SETTINGS, hotdog_or_faces, image_folder,  # noqa: E402
                       with_transform)
from .devices import try_gpu, try_all_gpus, parse_devices  # noqa: E402
from .download import download, extract  # noqa: E402
from .errors import UserError  # noqa: E402
from .features import cache_features, feature_loader  # noqa: E402
from .finetune import (FINE_TUNING_SETTINGS, pretrained_for, train_fine_tuning,  # noqa: E402
                       train_settings)
from .imagenet import (IMAGENET_MEAN, IMAGENET_STD, centre_crop, denormalise,  # noqa: E402
                       imagenet_classes, imagenet_synsets, imagenet_transform, load_image,
                       preprocess, preprocess_batch)
from .model_store import get_pretrained, new_classifier  # noqa: E402
from .plotting import show_images, plot_history  # noqa: E402
from .predict import (predict_arrays, predict_batches, predict_dataset,  # noqa: E402
                      predict_loader)
from .scenes import make_scenes  # noqa: E402
from .split import split_per_class, split_validation  # noqa: E402
from .tables import format_table, print_table  # noqa: E402
from .training import evaluate_accuracy, seed_everything, train, train_arrays  # noqa: E402
from .transforms import augmentations, transform  # noqa: E402

__all__ = [
    # devices and the command line
    'try_gpu', 'try_all_gpus', 'parse_devices', 'settings', 'opt', 'run_chapter', 'Run',
    'UserError',
    # data
    'download', 'extract', 'HOTDOG_SETTINGS', 'hotdog_or_faces', 'image_folder',
    'with_transform', 'augmentations', 'transform', 'split_per_class', 'split_validation',
    'make_scenes',
    # pretrained networks and ImageNet
    'get_pretrained', 'new_classifier', 'pretrained_for', 'imagenet_classes',
    'imagenet_synsets', 'imagenet_transform', 'load_image', 'preprocess', 'preprocess_batch',
    'centre_crop', 'denormalise', 'IMAGENET_MEAN', 'IMAGENET_STD',
    # freezing
    'batchnorms', 'freeze', 'freeze_batchnorm', 'set_trainable', 'trainable_params',
    'running_stats', 'set_bn_momentum', 'first_conv', 'release_graph',
    # training, predicting, cached features
    'train', 'evaluate_accuracy', 'seed_everything', 'train_arrays', 'train_fine_tuning',
    'FINE_TUNING_SETTINGS', 'train_settings',
    'predict_batches', 'predict_arrays', 'predict_dataset', 'predict_loader', 'cache_features',
    'feature_loader',
    # results
    'show_images', 'plot_history', 'format_table', 'print_table', 'iou',
]
