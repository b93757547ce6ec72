"""torchvision's MobileNetV2 written out in numpy, in float64, from its state_dict: a reference
that shares nothing with the Gluon network or its weight conversion.

The architecture as torchvision's mobilenetv2.py defines it: features.0 a 3x3 stride-2 conv to
32 channels; then inverted residual blocks (expansion t, channels c, repeats n, first stride s)
1,16,1,1 / 6,24,2,2 / 6,32,3,2 / 6,64,4,2 / 6,96,3,1 / 6,160,3,2 / 6,320,1,1, each a 1x1
expansion (absent when t = 1), a 3x3 depthwise conv, a linear 1x1 projection, with the input
added when the stride is 1 and the channels stay; features.18 a 1x1 conv to 1280; every conv
followed by BatchNorm (eps 1e-5) and ReLU6 except the projection; global average pooling and
classifier.1, a linear layer.
"""
import numpy as np

SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1)]


def _bn(x, state, key):
    scale = state[key + '.weight'] / np.sqrt(state[key + '.running_var'] + 1e-5)
    shift = state[key + '.bias'] - state[key + '.running_mean'] * scale
    return x * scale[:, None, None] + shift[:, None, None]


def _relu6(x):
    return np.clip(x, 0, 6)


def _pointwise(x, weight):  # x (C, H, W), weight (O, C, 1, 1)
    return np.tensordot(weight[:, :, 0, 0], x, axes=1)


def _conv3x3(x, weight, stride, groups):
    """3x3 convolution, padding 1, as a sum over the 9 kernel taps."""
    channels, height, width = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    out_h, out_w = (height - 1) // stride + 1, (width - 1) // stride + 1
    out = 0
    for i in range(3):
        for j in range(3):
            tap = padded[:, i:i + stride * (out_h - 1) + 1:stride,
                         j:j + stride * (out_w - 1) + 1:stride]
            if groups == 1:
                out = out + np.tensordot(weight[:, :, i, j], tap, axes=1)
            else:  # depthwise
                out = out + weight[:, 0, i, j][:, None, None] * tap
    return out


def logits(state, image):
    """The 1000 logits of one normalised (3, 224, 224) image."""
    state = {k: np.asarray(v, np.float64) for k, v in state.items()}
    x = np.asarray(image, np.float64)
    x = _relu6(_bn(_conv3x3(x, state['features.0.0.weight'], 2, 1), state, 'features.0.1'))
    index, channels = 1, 32
    for t, c, n, s in SETTINGS:
        for repeat in range(n):
            stride = s if repeat == 0 else 1
            key = 'features.%d.conv.' % index
            h, part = x, 0
            if t != 1:
                h = _relu6(_bn(_pointwise(h, state[key + '0.0.weight']), state, key + '0.1'))
                part = 1
            h = _relu6(_bn(_conv3x3(h, state[key + '%d.0.weight' % part], stride, groups=-1),
                           state, key + '%d.1' % part))
            h = _bn(_pointwise(h, state[key + '%d.weight' % (part + 1)]), state,
                    key + '%d' % (part + 2))
            x = x + h if stride == 1 and channels == c else h
            index, channels = index + 1, c
    x = _relu6(_bn(_pointwise(x, state['features.18.0.weight']), state, 'features.18.1'))
    pooled = x.mean(axis=(1, 2))
    return state['classifier.1.weight'] @ pooled + state['classifier.1.bias']
