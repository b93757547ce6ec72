"""How much faster a head epoch is on cached features than with the frozen base recomputed.

    python -m benchmarks.feature_cache [--repeat 3] [chapter options, e.g. --quick]

Runs chapters.feature_extraction (by default its tiny offline configuration: faces, 32 px,
2 + 1 epochs, no BatchNorm comparison) and prints the seconds per head epoch it measured both
ways, with the machine's load. A timing, so printed here, not asserted by a test.
"""
import argparse
import json
import os
import tempfile

import utils

TINY = ['--dataset', 'faces', '--image-size', '32', '--initial-epochs', '2',
        '--fine-tune-epochs', '1', '--no-bn-comparison', '--no-progress']


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeat', type=utils.cli.positive_int, default=1,
                        help='chapter runs (each prints its own figures)')
    args, chapter_args = parser.parse_known_args(argv)
    print('load average at start: %.2f %.2f %.2f' % os.getloadavg())
    rows = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as folder:
            metrics = os.path.join(folder, 'metrics.json')
            utils.run_chapter('chapters.feature_extraction', (chapter_args or TINY) + [
                '--out', os.path.join(folder, 'out'), '--metrics-json', metrics])
            with open(metrics) as f:
                rows.append(json.load(f)['head_epoch_seconds'])
    print('\n%-10s %12s %14s %8s' % ('run', 'cached s', 'recomputed s', 'speedup'))
    for i, row in enumerate(rows):
        print('%-10d %12.4f %14.3f %7.0fx' % (i, row['cached'], row['recomputed'],
                                              row['speedup']))
    print('load average at end: %.2f %.2f %.2f' % os.getloadavg())


if __name__ == '__main__':
    main()
