"""Options every chapter shares, and the metrics file each one writes."""
import argparse
import os
import platform
import time

from .devices import DEVICES_HELP, parse_devices
from .files import write_json


def chapter_parser(description, default_out):
    """An ArgumentParser with --quick, --devices, --seed, --out, --metrics-json, --no-progress,
    --kvstore."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--quick', action='store_true',
                        help='a configuration that runs in minutes on a 2-core CPU')
    parser.add_argument('--devices', default=None, help=DEVICES_HELP)
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--out', default=default_out, help='folder for the PNG figures')
    parser.add_argument('--metrics-json', default=None, metavar='PATH',
                        help='write the final metrics to this JSON file')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    parser.add_argument('--kvstore', default='device',
                        choices=['device', 'local', 'dist_sync', 'dist_device_sync'],
                        help="how gradients are added up: 'device'/'local' on this machine; "
                             "'dist_sync' across processes and machines, under "
                             "`python -m utils.launch` (README: Several machines)")
    return parser


def devices_from(args):
    return parse_devices(args.devices)


def progress_from(args):
    """The `progress` argument of utils.train: off when asked, else only on a terminal."""
    return False if args.no_progress else None


class Run:
    """Wall time and metrics of one chapter run; `finish` prints and writes them."""

    def __init__(self, args, chapter):
        self.args = args
        self.start = time.time()
        self.metrics = {'chapter': chapter, 'quick': bool(args.quick),
                        'machine': '%s, %d cores' % (platform.machine(), os.cpu_count() or 1),
                        'omp_num_threads': os.environ.get('OMP_NUM_THREADS')}
        os.makedirs(args.out, exist_ok=True)

    def figure(self, name):
        """Path of a PNG in the output folder."""
        return os.path.join(self.args.out, name)

    def finish(self):
        self.metrics['wall_seconds'] = round(time.time() - self.start, 1)
        print('Figures in %s; wall time %.1f sec'
              % (os.path.abspath(self.args.out), self.metrics['wall_seconds']))
        if self.args.metrics_json:
            write_json(self.args.metrics_json, self.metrics)
            print('Metrics written to %s' % self.args.metrics_json)
        return self.metrics
