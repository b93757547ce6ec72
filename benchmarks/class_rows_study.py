"""The ImageNet-row exercise, measured: does a new output row that starts from the ImageNet row
of the same class help a few-shot fine-tuning?

    python -m benchmarks.class_rows_study [--quick] [--data fashion-mnist|faces|auto]
        [--shots 4 16] [--seeds 0 1 2] [--train output|all] [--metrics-json PATH]

Fashion-MNIST (Debian's dataset-fashion-mnist; `make fashion-mnist`): sandal, sneaker and ankle
boot, whose ImageNet rows are found by name (sandal 774, running shoe 770, cowboy boot 514).
Images inverted to dark on white and resized to --image-size. Starts compared on the same
few-shot subsets (a different subset per seed):

  ImageNet rows    class k's weight row and bias copied from its ImageNet row
  row 713 for all  every class from row 713 (the text's index; 'photocopier'): no class prior
  random rows      distinct random rows, none of the named ones
  fresh layer      Xavier weights, zero bias (the chapter's finetune_net)
  best AUC rows    per class, the row whose logit alone best separates it on the training subset

Without Fashion-MNIST, the faces of scikit-image stand in: no ImageNet class is 'face', so the
1000 rows are ranked by their AUC on the training subset, the top 5 are printed, and the best
is used. --train output (the quick setting) trains only the output layer on cached features;
--train all fine-tunes the whole network with BatchNorm on its ImageNet statistics.
"""
import argparse
import os
import platform
import time

import utils  # sets OMP_NUM_THREADS before MXNet loads
from utils.data import fashion_mnist
from utils.pretrained import class_rows
from utils.data.datasets import load_faces
from utils.pretrained.imagenet import preprocess_batch as to_input
from utils.errors import UserError, main_guard
from utils.files import write_json

FASHION_CLASSES = ('Sandal', 'Sneaker', 'Ankle boot')
MODEL = 'mobilenetv2_1.0'


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--quick', action='store_true',
                        help='600 test images, 4 and 16 shots, 3 seeds, output layer only')
    parser.add_argument('--data', choices=['auto', 'fashion-mnist', 'faces'], default='auto',
                        help='auto: Fashion-MNIST where it is found, else the faces')
    parser.add_argument('--fashion-dir', default=None,
                        help='folder of the four Fashion-MNIST IDX files (default: $%s, '
                             'data/fashion-mnist, %s)' % (fashion_mnist.ENV_VAR,
                                                          fashion_mnist.DEBIAN_FOLDER))
    parser.add_argument('--shots', type=int, nargs='+', default=None,
                        help='training images per class (default 4 16; full: 2 4 8 16 32)')
    parser.add_argument('--seeds', type=int, nargs='+', default=None,
                        help='one few-shot subset per seed (default 0 1 2; full: 0-4)')
    parser.add_argument('--test-per-class', type=int, default=None,
                        help='Fashion-MNIST test images per class (default 200; full: 1000)')
    parser.add_argument('--train', choices=['output', 'all'], default='output',
                        help='output: only the output layer, on cached features; all: the whole '
                             'network, BatchNorm statistics kept')
    parser.add_argument('--image-size', type=int, default=96)
    parser.add_argument('--epochs', type=int, default=20)
    parser.add_argument('--batch-size', type=int, default=16)
    parser.add_argument('--learning-rate', type=float, default=None,
                        help='default: 0.01 with --train output, 1e-4 with --train all')
    parser.add_argument('--output-lr-mult', type=float, default=None,
                        help='learning-rate multiplier of the output layer; default: 1 with '
                             '--train output, 100 with --train all (the same 0.01 for the '
                             'output layer)')
    parser.add_argument('--metrics-json', default=None, metavar='PATH')
    return parser


def fashion_data(args):
    """(train pool, test set, to_inputs, named rows, class names) of the three shoe classes."""
    pool = fashion_mnist.load_classes('train', FASHION_CLASSES, folder=args.fashion_dir)
    test = fashion_mnist.load_classes('test', FASHION_CLASSES, args.test_per_class,
                                      folder=args.fashion_dir)
    rows = fashion_mnist.imagenet_rows(FASHION_CLASSES)

    def to_inputs(images):
        return to_input(fashion_mnist.as_product_photos(images), args.image_size).asnumpy()

    return pool, test, to_inputs, [rows[c] for c in FASHION_CLASSES], list(FASHION_CLASSES)


def faces_data(args):
    """scikit-image's 25-pixel faces: 80 + 80 training photos to draw from, 20 + 20 test."""
    (train_x, train_y), (test_x, test_y), synsets = load_faces(args.image_size, seed=0)

    def to_inputs(images):
        return to_input(images.clip(0, 255).astype('uint8'), args.image_size).asnumpy()

    return (train_x, train_y), (test_x, test_y), to_inputs, None, synsets


def choose_data(args):
    if args.data == 'faces':
        return 'faces', faces_data(args)
    try:
        return 'fashion-mnist', fashion_data(args)
    except UserError as err:
        if args.data == 'fashion-mnist':
            raise
        print('%s\nRunning the analogue on the faces instead.' % err)
        return 'faces', faces_data(args)


def load():
    one, five, _ = os.getloadavg()
    return 'load average %.2f (1 min), %.2f (5 min)' % (one, five)


@main_guard
def main(argv=None):
    args = build_parser().parse_args(argv)
    full = not args.quick
    args.shots = args.shots or ([2, 4, 8, 16, 32] if full else [4, 16])
    args.seeds = args.seeds or (list(range(5)) if full else [0, 1, 2])
    args.test_per_class = args.test_per_class or (1000 if full else 200)
    whole = args.train == 'all'
    if args.learning_rate is None:
        args.learning_rate = 1e-4 if whole else 0.01
    if args.output_lr_mult is None:
        args.output_lr_mult = 100.0 if whole else 1.0
    start = time.time()
    print('%s, %d cores, OMP_NUM_THREADS=%s, %s'
          % (platform.machine(), os.cpu_count() or 1, os.environ.get('OMP_NUM_THREADS'), load()))
    data_name, (pool, test, to_inputs, named_rows, classes) = choose_data(args)
    print('%s: classes %s; %d training images to draw from, %d test images; %s, %d px, '
          'train %s, %d epochs, batch %d, lr %g (output x%g)'
          % (data_name, ', '.join(classes), len(pool[1]), len(test[1]), MODEL, args.image_size,
             args.train, args.epochs, args.batch_size, args.learning_rate,
             args.output_lr_mult))
    names = utils.imagenet_classes()
    if named_rows:
        print('ImageNet rows by name: %s' % ', '.join(
            '%s -> %d %s' % (c, r, names[r]) for c, r in zip(classes, named_rows)))
    study = class_rows.compare_initialisations(
        MODEL, pool, test, to_inputs, named_rows=named_rows, shots=args.shots, seeds=args.seeds,
        train_what=args.train, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, output_lr_mult=args.output_lr_mult)
    most = max(args.shots)  # with few images many rows separate them perfectly (AUC 1)
    print('\nTop 5 rows by training AUC, ties by margin (%d per class, seed %d): '
          'row name AUC/margin' % (most, args.seeds[0]))
    for cls, top in zip(classes, study['top_rows'][most][0]):
        print('  %-11s %s' % (cls, ', '.join('%d %s %.3f/%.1f' % t for t in top)))
    print()
    print(class_rows.summary_table(study['results'], args.seeds))
    wall = time.time() - start
    print('wall time %.1f s; %s' % (wall, load()))
    if named_rows is None:
        print('Fashion-MNIST, whose classes have ImageNet rows: %s' % fashion_mnist.HOW_TO_GET)
    metrics = {'data': data_name, 'classes': classes, 'named_rows': named_rows,
               'settings': {k: v for k, v in vars(args).items() if k != 'metrics_json'},
               'results': {str(k): v for k, v in study['results'].items()},
               'top_rows': {str(k): v for k, v in study['top_rows'].items()},
               'wall_seconds': round(wall, 1)}
    if args.metrics_json:
        write_json(args.metrics_json, metrics)
    return metrics


if __name__ == '__main__':
    main()
