"""Peak resident memory of one hybridized MobileNetV2 graph, by hybridize flags and batch.

    python -m benchmarks.graph_memory [--task train|predict] [--batch 32] [--size 96]
        [--cut 24] [--epochs 3] [--modes static_shape,static_alloc,plain]

Each mode runs in its own process (a peak cannot go down): `static_shape` is
hybridize(static_alloc=True, static_shape=True), `static_alloc` is static_alloc alone, `plain`
is hybridize(). `train`: SGD steps on `--batch` random pictures, then, like utils.train's
test pass, a prediction on a full and on a smaller batch, `--epochs` times; `predict`: forward
passes of features[:cut] only. Prints the process's peak RSS (VmHWM) after each epoch and the
CPU seconds (user + system) of the whole loop: the figure to compare on a busy machine.
Random input and ImageNet weights (offline): memory does not depend on them.
"""
import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = {'static_shape': dict(static_alloc=True, static_shape=True),
         'static_alloc': dict(static_alloc=True), 'plain': {}}


def peak_mib():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) // 1024
    return 0


def measure(mode, task, batch, size, cut, epochs):
    import utils
    import mxnet as mx
    from mxnet import autograd, gluon
    net = utils.get_pretrained('mobilenetv2_1.0')
    block = net if task == 'train' else utils.freeze(net.features[:cut])
    block.hybridize(**FLAGS[mode])
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.001})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

    def predict(n):
        with autograd.predict_mode():
            block(mx.nd.random.normal(shape=(n, 3, size, size))).wait_to_read()
    start = time.process_time()
    peaks = []
    for _ in range(epochs):
        for _ in range(5):
            if task == 'train':
                x, y = mx.nd.random.normal(shape=(batch, 3, size, size)), mx.nd.zeros(batch)
                with autograd.record():
                    loss = loss_fn(block(x), y)
                loss.backward()
                trainer.step(batch)
                loss.wait_to_read()
            else:
                predict(batch)
        if task == 'train':
            predict(batch)
            predict(max(1, batch // 4))
        peaks.append(peak_mib())
    return peaks, time.process_time() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--task', choices=['train', 'predict'], default='train')
    p.add_argument('--batch', type=int, default=32)
    p.add_argument('--size', type=int, default=96)
    p.add_argument('--cut', type=int, default=24, help='predict: features[:cut]')
    p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--modes', default='static_shape,static_alloc,plain')
    p.add_argument('--child', default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        peaks, cpu = measure(args.child, args.task, args.batch, args.size, args.cut,
                             args.epochs)
        print('%-13s %s  %.1f' % (args.child, ' '.join('%6d' % v for v in peaks), cpu))
        return
    print('%s, batch %d, %d px, OMP_NUM_THREADS=%s, load %.1f' % (
        args.task, args.batch, args.size, os.environ.get('OMP_NUM_THREADS'),
        os.getloadavg()[0]))
    print('%-13s %s  CPU s' % ('mode', 'peak MiB after each epoch'))
    for mode in args.modes.split(','):
        if mode not in FLAGS:
            p.error('unknown mode %s: choose from %s' % (mode, ', '.join(FLAGS)))
        subprocess.run([sys.executable, '-m', 'benchmarks.graph_memory', '--child', mode,
                        '--task', args.task, '--batch', str(args.batch), '--size',
                        str(args.size), '--cut', str(args.cut), '--epochs', str(args.epochs)],
                       cwd=ROOT, check=True)


if __name__ == '__main__':
    main()
