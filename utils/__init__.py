"""The textbook's helper module: `import utils`, then `utils.train(...)`, `utils.try_all_gpus()`.

`import utils` itself is light: it starts the thread policy's look at the machine (see
utils.threads) and arranges what must happen around MXNet's import, without importing MXNet or
numpy. The helpers the chapters call (`utils.train`, `utils.settings`, ...) are imported on
first use (PEP 562), so a helper that needs only the standard library (`import utils.files`,
`utils.errors`) costs no MXNet.

Whoever imports MXNet first in the process (`utils.train`, or a chapter's own `from mxnet
import gluon` after `import utils`), MXNet is prepared the same way. Before MXNet's code runs,
numpy gets back the names MXNet 1.9.1 reads that newer numpy releases removed (see
utils.numpy_compat) and OMP_NUM_THREADS is chosen (see utils.threads); once it has run, MXNet
is adapted to numpy 2, the Python thread gets no OpenMP team of its own, and the helpers are
imported. Each module has one job; what the chapters call is listed in `_EXPORTS`.
"""
import importlib
import os
import sys
import types

from .threads import ThreadPolicy

# Starts sampling how busy the other processes keep the cores; the count is chosen when MXNet is
# about to load (it reads OMP_NUM_THREADS once, at import).
_thread_policy = ThreadPolicy()


def _before_mxnet():
    from .numpy_compat import restore_numpy_names
    restore_numpy_names()  # imports numpy: part of the policy's sampling window
    _thread_policy.apply()


def _after_mxnet():
    from .numpy_compat import patch_mxnet
    from .threads import serial_openmp_in_this_thread
    patch_mxnet()
    _thread_policy.refine_after_import()
    serial_openmp_in_this_thread()
    if not _half_imported_helper():
        # MXNet's cost is paid: the helpers come now, as one import did before they came on
        # first use (a forked grader's probe, or a chapter, then finds them all loaded)
        for module in sorted(set(_EXPORTS.values())):
            importlib.import_module('.' + module, __name__)


def _half_imported_helper():
    """Is a module of utils being imported (MXNet's import came from inside it)? Importing
    the other helpers then would find it half done: they come on first use instead."""
    return any(getattr(getattr(module, '__spec__', None), '_initializing', False)
               for name, module in list(sys.modules.items())
               if name.startswith(__name__ + '.'))


class _MXNetLoader:
    """MXNet's own loader, with _before_mxnet and _after_mxnet around running its code."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):  # get_data, get_resource_reader, ...: MXNet's loader's
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        _before_mxnet()
        self._loader.exec_module(module)
        _after_mxnet()


class _PrepareMXNet:
    """An import hook that finds nothing itself: it wraps MXNet's loader, once."""

    def find_spec(self, name, path=None, target=None):
        if name != 'mxnet':
            return None
        sys.meta_path.remove(self)  # the other finders locate MXNet; this one is done
        import importlib.util
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _MXNetLoader(spec.loader)
        return spec


# name -> the module of utils that defines it
_EXPORTS = {}
for _module, _names in {
        'cli': 'Run opt run_chapter settings',
        'devices': 'try_gpu try_all_gpus parse_devices',
        'errors': 'UserError',
        'data.datasets': 'HOTDOG_SETTINGS hotdog_or_faces image_folder with_transform',
        'data.download': 'download extract',
        'data.split': 'split_per_class split_validation',
        'data.transforms': 'augmentations transform',
        'detection.bbox': 'iou',
        'detection.scenes': 'make_scenes',
        'display.plotting': 'show_images plot_history',
        'display.tables': 'format_table print_table',
        'pretrained.block': 'batchnorms first_conv freeze freeze_batchnorm running_stats '
                            'release_graph set_bn_momentum set_trainable trainable_params',
        'pretrained.finetune': 'FINE_TUNING_SETTINGS pretrained_for train_fine_tuning '
                               'train_settings',
        'pretrained.imagenet': 'IMAGENET_MEAN IMAGENET_STD centre_crop denormalise '
                               'imagenet_classes imagenet_synsets imagenet_transform load_image '
                               'preprocess preprocess_batch',
        'pretrained.model_store': 'get_pretrained new_classifier',
        'training.features': 'cache_features feature_loader',
        'training.loop': 'evaluate_accuracy seed_everything train train_arrays',
        'training.predict': 'predict_arrays predict_batches predict_dataset '
                            'predict_loader'}.items():
    _EXPORTS.update(dict.fromkeys(_names.split(), _module))
del _module, _names

__all__ = sorted(_EXPORTS)


def _modules_on_first_use(package, init_file):
    """__getattr__ and __dir__ of a package of utils: its modules and sub-packages
    (`utils.detection`, `utils.detection.heads`) are imported on first use."""
    here = os.path.dirname(os.path.abspath(init_file))

    def module_names():
        return [f[:-3] if f.endswith('.py') else f for f in os.listdir(here)
                if f[0] != '_' and (f.endswith('.py')
                                    or os.path.isfile(os.path.join(here, f, '__init__.py')))]

    def __getattr__(name):
        if not name.startswith('_') and name in module_names():
            return importlib.import_module('.' + name, package)
        raise AttributeError('module %r has no attribute %r' % (package, name))

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(module_names()))

    return __getattr__, __dir__


_module_getattr, _module_dir = _modules_on_first_use(__name__, __file__)


def __getattr__(name):
    """A helper of _EXPORTS, or a module of utils (`utils.detection.heads`), imported on first
    use."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module('.' + _EXPORTS[name], __name__), name)
        setattr(sys.modules[__name__], name, value)
        return value
    return _module_getattr(name)


def __dir__():
    return sorted(set(_module_dir()) | set(_EXPORTS))


class _Package(types.ModuleType):
    """A helper of _EXPORTS is never hidden by a module of the same name (utils.download is
    the function, as it was when this package imported every helper; its module is now
    utils.data.download, so no module of utils shares a helper's name today)."""

    def __setattr__(self, name, value):
        if (name in _EXPORTS and isinstance(value, types.ModuleType)
                and value.__name__ == '%s.%s' % (__name__, name)):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

if 'mxnet' in sys.modules:  # imported before utils: only numpy 1 gets this far
    _before_mxnet()
    _after_mxnet()
elif not any(isinstance(finder, _PrepareMXNet) for finder in sys.meta_path):
    sys.meta_path.insert(0, _PrepareMXNet())
