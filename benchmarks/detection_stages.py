"""Where detection's --quick time goes: wall and CPU seconds per stage, per image.

    python -m benchmarks.detection_stages [--scenes 1000] [--batch 64]

Stages: scene generation, resizing and normalising, the frozen prefix features[:13] of
MobileNetV2 at 128 px (hybridized), and one phase-2 training pass (blocks 13-15 + the head)
on the cached features, split into forward+backward, optimizer step and input copies.
CPU seconds (time.process_time, user + system) are printed next to wall seconds because a
shared machine's wall time says little on its own. `--hybridize` compares MXNet's memory
planning: `static_shape` (the chapter's), `static_alloc` alone, or neither.
"""
import utils  # sets OMP_NUM_THREADS before MXNet loads

import argparse
import os
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, init, nd

from utils.detection.heads import conv3x3_head, conv_head
from utils.detection.loss import ScaledMSELoss
from utils.detection.scenes import make_scenes


class Clock:
    def __init__(self):
        self.wall, self.cpu = {}, {}

    def __call__(self, name):
        clock = self

        class _Stage:
            def __enter__(self):
                self.w, self.c = time.time(), time.process_time()

            def __exit__(self, *exc):
                clock.wall[name] = clock.wall.get(name, 0) + time.time() - self.w
                clock.cpu[name] = clock.cpu.get(name, 0) + time.process_time() - self.c
        return _Stage()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--scenes', type=int, default=1000)
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--size', type=int, default=128)
    parser.add_argument('--unfrozen', choices=['blocks', 'pointwise'], default='blocks',
                        help='phase 2 trains whole blocks 13-15, or only their 1x1 convolutions '
                             'and BatchNorms (not the depthwise ones)')
    parser.add_argument('--hybridize', choices=['static_shape', 'static_alloc', 'plain'],
                        default='static_shape', help='static_shape: static_alloc and '
                        'static_shape (the chapter); static_alloc: that alone; plain: neither')
    parser.add_argument('--head', choices=['conv', 'conv3x3'], default='conv3x3')
    args = parser.parse_args()
    print('load:', os.getloadavg(), 'OMP_NUM_THREADS', os.environ.get('OMP_NUM_THREADS'),
          'hybridize', args.hybridize, 'head', args.head)
    clock = Clock()
    features = utils.get_pretrained('mobilenetv2_1.0').features
    prefix = utils.freeze(features[:13])
    flags = {'static_shape': dict(static_alloc=True, static_shape=True),
             'static_alloc': dict(static_alloc=True), 'plain': {}}[args.hybridize]
    prefix.hybridize(**flags)
    prefix(nd.zeros((args.batch, 3, args.size, args.size))).wait_to_read()
    feats, labels = [], []
    for i in range(0, args.scenes, args.batch):
        n = min(args.batch, args.scenes - i)
        with clock('scenes'):
            images, lab = make_scenes(n, seed=0, start=i)
        with clock('preprocess'):
            x = utils.preprocess_batch(images, args.size)
            x.wait_to_read()
        with clock('prefix forward'):
            with autograd.predict_mode():
                feats.append(prefix(x).asnumpy())
        labels.append(lab)
    x_pre, y = np.concatenate(feats), np.concatenate(labels)

    tail = utils.freeze(features[13:16])
    head = conv3x3_head(32, 5) if args.head == 'conv3x3' else conv_head(16, 5)
    head.initialize(init.Xavier())
    trainee = gluon.nn.HybridSequential()
    trainee.add(tail, head)
    for block in tail:
        utils.set_trainable(block, True)
        if args.unfrozen == 'pointwise':
            for conv in block.out:
                if getattr(conv, '_kwargs', {}).get('num_group', 1) > 1:
                    utils.set_trainable(conv, False)
    print('phase 2 trains %d arrays' % len(utils.trainable_params(trainee)))
    trainee.hybridize(**flags)
    loss_fn = ScaledMSELoss(224)
    trainee(nd.array(x_pre[:2]))
    trainer = gluon.Trainer(utils.trainable_params(trainee), 'rmsprop',
                            {'learning_rate': 2e-4})
    batch = args.batch // 2
    steps = 0
    for i in range(0, len(x_pre) - batch + 1, batch):
        with clock('phase 2 input copy'):
            xb, yb = nd.array(x_pre[i:i + batch]), nd.array(y[i:i + batch])
        with clock('phase 2 forward+backward'):
            with autograd.record():
                loss = loss_fn(trainee(xb), yb)
            loss.backward()
            loss.wait_to_read()
            mx.nd.waitall()
        with clock('phase 2 step'):
            trainer.step(batch)
            mx.nd.waitall()
        steps += 1
    with clock('phase 2 validation forward'):
        utils.predict_arrays(trainee, x_pre, batch_size=256)
    per = {'scenes': args.scenes, 'preprocess': args.scenes, 'prefix forward': args.scenes,
           'phase 2 input copy': steps * batch, 'phase 2 forward+backward': steps * batch,
           'phase 2 step': steps * batch, 'phase 2 validation forward': len(x_pre)}
    print('%-28s %8s %8s %10s' % ('stage', 'wall s', 'cpu s', 'img/s wall'))
    for name in clock.wall:
        print('%-28s %8.2f %8.2f %10.1f' % (name, clock.wall[name], clock.cpu[name],
                                            per[name] / clock.wall[name]))
    print('load:', os.getloadavg())


if __name__ == '__main__':
    main()
