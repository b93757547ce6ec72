"""Which new head finds the box on the frozen base: detection's phase 1 alone, head by head.

    python -m benchmarks.detection_heads [--scenes 12000] [--epochs 30[,20...]]
        [--test-scenes 1000] [--heads text,conv,one_3x3,two_3x3,two_3x3_dropout,conv3x3]
        [--seed 0]

Runs MobileNetV2 `features[:16]` (the chapter's base, frozen, 128 px) once over the scenes,
then trains each head on those features with the chapter's phase-1 settings (RMSProp 5e-3,
batch 128, the rate divided by 5 after half the steps, the output bias at the mean target,
15% of the scenes for validation) and prints its last training and validation loss, shape
accuracy and mean IoU on fresh scenes (seed + 1; also on the first 200 alone, the chapter's
test scenes for the same seed), and CPU seconds per epoch. `text`, `conv` and `conv3x3` are
the chapter's heads (utils.detection.heads); the others take `conv3x3` apart.
"""
import utils  # sets OMP_NUM_THREADS before MXNet loads

import argparse
import os
import time

import mxnet as mx
import numpy as np
from mxnet import gluon, init
from mxnet.gluon import nn

from utils.detection.bbox import detection_metrics
from utils.cli import positive_int
from utils.errors import main_guard
from utils.detection.heads import build_new_head, conv3x3_head, conv_head
from utils.detection.loss import ScaledMSELoss
from utils.detection.scenes import CANVAS_SIZE, make_scenes


def conv_then_text_head(layers, dropout):
    """3x3 convolutions (32 channels) on the grid, then the text's head."""
    head = nn.HybridSequential(prefix='head_')
    with head.name_scope():
        for _ in range(layers):
            head.add(nn.Conv2D(32, 3, padding=1, activation='relu'))
        head.add(nn.Flatten())
        if dropout:
            head.add(nn.Dropout(dropout))
        head.add(nn.Dense(200, activation='relu'), nn.Dense(5))
    return head


HEADS = {
    'text': build_new_head,
    'conv': lambda: conv_head(16),
    'one_3x3': lambda: conv_then_text_head(1, 0),
    'two_3x3': lambda: conv_then_text_head(2, 0),
    'two_3x3_dropout': lambda: conv_then_text_head(2, 0.5),
    'conv3x3': lambda: conv3x3_head(32),
}


def base_features(features, n, seed, size):
    """Frozen features[:16] of scenes 0 .. n-1 of `seed`, 64 at a time, and their labels."""
    base = utils.freeze(features[:16])
    base.hybridize(static_alloc=True, static_shape=True)
    feats, labels = [], []
    for i in range(0, n, 64):
        images, lab = make_scenes(min(64, n - i), seed=seed, start=i)
        feats.append(utils.predict_batches(base, [utils.preprocess_batch(images, size)]))
        labels.append(lab)
    return np.concatenate(feats), np.concatenate(labels)


def train_head(name, x, y, x_test, y_test, epochs, seed):
    """One head trained as the chapter's phase 1: a row of the table."""
    mx.random.seed(seed)
    split = int(round(len(x) * 0.85))
    head = HEADS[name]()
    head.initialize(init.Xavier())
    head(mx.nd.array(x[:2]))
    means = np.concatenate([[y[:split, 0].mean() * CANVAS_SIZE], y[:split, 1:5].mean(axis=0)])
    head[-1].bias.set_data(mx.nd.array(means))
    head.hybridize(static_alloc=True, static_shape=True)
    trainer = gluon.Trainer(head.collect_params(), 'rmsprop', {'learning_rate': 5e-3})
    cpu = time.process_time()
    history = utils.train_arrays(head, ScaledMSELoss(CANVAS_SIZE), trainer,
                                 (x[:split], y[:split]), (x[split:], y[split:]), 128, epochs,
                                 seed=seed, lr_drop=0.5, print_fn=lambda line: None)
    cpu = time.process_time() - cpu
    out = utils.predict_arrays(head, x_test)
    metrics = detection_metrics(out, y_test)
    first = detection_metrics(out[:200], y_test[:200])
    return [name, epochs, history['loss'][-1], history['val_loss'][-1], metrics['shape_acc'],
            metrics['mean_iou'], first['shape_acc'], first['mean_iou'], cpu / epochs]


@main_guard
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--scenes', type=positive_int, default=12000)
    parser.add_argument('--epochs', default='30', help='one or more, comma-separated')
    parser.add_argument('--test-scenes', type=positive_int, default=1000)
    parser.add_argument('--heads', default=','.join(HEADS))
    parser.add_argument('--size', type=positive_int, default=128)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--random-base', action='store_true', help='random weights (tests)')
    args = parser.parse_args(argv)
    heads = args.heads.split(',')
    try:
        epochs = [positive_int(e) for e in args.epochs.split(',')]
    except argparse.ArgumentTypeError as err:
        parser.error('--epochs: %s' % err)
    unknown = [h for h in heads if h not in HEADS]
    if unknown:
        parser.error('unknown head %s: choose among %s' % (', '.join(unknown), ', '.join(HEADS)))
    print('load: %.2f %.2f %.2f' % os.getloadavg(),
          'OMP_NUM_THREADS', os.environ.get('OMP_NUM_THREADS'))
    if args.random_base:
        net = gluon.model_zoo.vision.mobilenet_v2_1_0()
        net.initialize(init.Xavier())
    else:
        net = utils.get_pretrained('mobilenetv2_1.0')
    x, y = base_features(net.features, args.scenes, args.seed, args.size)
    x_test, y_test = base_features(net.features, args.test_scenes, args.seed + 1, args.size)
    rows = [train_head(name, x, y, x_test, y_test, n, args.seed)
            for n in epochs for name in heads]
    print('phase 1 alone: %d scenes of seed %d; shape accuracy and mean IoU on %d fresh scenes '
          'and on the first 200 of them' % (args.scenes, args.seed, args.test_scenes))
    utils.print_table(['head', 'epochs', 'train loss', 'val loss', 'shape acc', 'mean IoU',
                       'shape acc, 200', 'mean IoU, 200', 'CPU s/epoch'], rows,
                      [None, '%d', '%.1f', '%.1f', '%.3f', '%.3f', '%.3f', '%.3f', '%.2f'],
                      markdown=True)
    print('load: %.2f %.2f %.2f' % os.getloadavg())
    return rows


if __name__ == '__main__':
    main()
