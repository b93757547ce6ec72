"""How a chapter gets its settings, and how it runs as a command.

A chapter is a script read top to bottom, cells marked `# %%`. Near its top, a settings cell:

    args = utils.settings('fine_tuning', 'Fine-tuning: ...',
                          epochs=opt(10, 'training epochs'),
                          batch_size=opt(64, 'images per batch', quick=32))

- `python -m chapters.fine_tuning --epochs 3` fills the settings from the command line
  (`--help` lists them); `--quick` picks each setting's `quick` value unless it is given.
- In a notebook (`make notebooks`) there is no command line: the settings take their `--quick`
  values (or the arguments in $GLUON_TRANSFER_NOTEBOOK_ARGS, default `--quick`), and the
  reader edits the cell to try others.
- `run_chapter('chapters.fine_tuning', argv)` runs a chapter with the given arguments and
  returns its namespace (what tests use).

Every chapter also takes --quick, --devices, --seed, --out, --metrics-json, --no-progress and
--kvstore; only a chapter that passes `distributed=True` accepts a 'dist_*' kvstore, and
`args.given` names the settings the command line gave. Every value is checked when it is
parsed (the types below: positive_int, size_in, readable_file, image_file, writable_dir,
data_dir, ...), so a bad one ends the run in one line, before any work. A user error later on
(utils.errors.UserError) also ends it with one line on stderr and status 2, never a
traceback.
"""
import argparse
import os
import platform
import runpy
import shlex
import sys
import time

from . import threads
from .devices import DEVICES_HELP, device_spec, most_processes, usable_cores
from .training.distributed import KVSTORE_CHOICES
from .errors import OneLineParser, UserError, main_guard
from .files import can_write_in, write_json

_running = []  # the argument lists of the chapters run_chapter is running, innermost last


def opt(default, help, quick=None, **argparse_kwargs):
    """One setting: its default, what it means, and its value under --quick when different.

    argparse_kwargs go to `add_argument` (choices, nargs, action='append', metavar, type);
    a bool default makes a flag, `positional=True` a positional argument. Without a `type`,
    an int setting takes positive_int and a float setting positive_float: give another type
    (e.g. non_negative_int, fraction(), size_in(32, 1024)) where 0 or a range is meant.
    """
    return dict(argparse_kwargs, default=default, help=help, quick=quick)


# %% Option types: argparse calls them on each value, and turns their ArgumentTypeError into
# the one-line error of `OneLineParser.error`. argparse has only int/float/FileType; FileType opens
# (and for writing, creates) the file at parse time, which these must not.

def _number(text, kind):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not a%s number' % (
            text, 'n integer' if kind is int else '')) from None


def positive_int(text):
    """An integer of 1 or more (epochs, batch sizes, counts)."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError('%d: give a whole number of 1 or more' % value)
    return value


def non_negative_int(text):
    """An integer of 0 or more (worker counts, indices)."""
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError('%d: give a whole number of 0 or more' % value)
    return value


def process_count(text):
    """A number of worker processes, 0 or more, that this machine can hold
    (utils.devices.most_processes)."""
    value = non_negative_int(text)
    if value > most_processes():
        raise argparse.ArgumentTypeError('%d: at most %d worker processes on this machine (%d '
                                         'cores)' % (value, most_processes(), usable_cores()))
    return value


def positive_float(text):
    """A number above 0 (learning rates, multipliers)."""
    value = _number(text, float)
    if not value > 0 or value == float('inf'):
        raise argparse.ArgumentTypeError('%s: give a number above 0' % text)
    return value


def non_negative_float(text):
    """A number of 0 or more (weight decay)."""
    value = _number(text, float)
    if not 0 <= value < float('inf'):
        raise argparse.ArgumentTypeError('%s: give a number of 0 or more' % text)
    return value


def fraction(low=0.0, high=1.0, include_low=True, include_high=False):
    """A number between `low` and `high` (shares, momenta)."""
    def parse(text):
        value = _number(text, float)
        above = value >= low if include_low else value > low
        below = value <= high if include_high else value < high
        if not (above and below):
            raise argparse.ArgumentTypeError('%s: give a number in %s%g, %g%s' % (
                text, '[' if include_low else '(', low, high, ']' if include_high else ')'))
        return value
    parse.__name__ = 'fraction'
    return parse


def size_in(low, high):
    """An integer number of pixels (or items) from `low` to `high`."""
    def parse(text):
        value = _number(text, int)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError('%d: give a size from %d to %d' % (value, low, high))
        return value
    parse.__name__ = 'size'
    return parse


PIXELS = size_in(32, 1024)  # image sizes: below 32 the nets' feature maps vanish


def sha1_hex(text):
    """A sha1 digest: 40 hexadecimal digits."""
    if len(text) != 40 or any(c not in '0123456789abcdefABCDEF' for c in text):
        raise argparse.ArgumentTypeError('%r is not a sha1 (40 hexadecimal digits)' % text)
    return text.lower()


def readable_file(path):
    """A file that exists and can be read."""
    if not os.path.exists(path):
        raise argparse.ArgumentTypeError('%s: no such file' % path)
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError('%s is a folder: give a file' % path)
    try:
        with open(path, 'rb') as f:
            f.read(1)
    except OSError as err:
        raise argparse.ArgumentTypeError('%s cannot be read (%s)' % (path, err.strerror)) from None
    return path


def image_file(path):
    """A readable file that decodes as an image (read in full: a few ms per photo)."""
    # imports gluoncv's tables: only when an image is given
    from .pretrained.imagenet import load_image
    readable_file(path)
    try:
        load_image(path)
    except UserError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return path


def readable_dir(path):
    """A folder that exists and can be listed."""
    if not os.path.isdir(path):
        raise argparse.ArgumentTypeError('%s: no such folder' % path)
    if not os.access(path, os.R_OK | os.X_OK):
        raise argparse.ArgumentTypeError('%s: this folder cannot be read' % path)
    return path


def image_path(path):
    """An image file, or a folder of them."""
    return readable_dir(path) if os.path.isdir(path) else image_file(path)


def writable_dir(path):
    """A folder that exists and is writable, or can be created: checked without creating it."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise argparse.ArgumentTypeError('%s: %s is a file, not a folder' % (path, existing))
    if not can_write_in(existing):
        raise argparse.ArgumentTypeError('%s: cannot write in %s; give a folder you can write to'
                                         % (path, existing))
    return path


def data_dir(path):
    """A data folder: one that exists and can be read (a read-only share is used as it is,
    when it holds everything), or one that can be created."""
    if os.path.isdir(path):
        return readable_dir(path)
    return writable_dir(path)


def writable_file(path):
    """A file path whose folder is writable (or can be created); the file may exist."""
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError('%s is a folder: give a file name' % path)
    writable_dir(os.path.dirname(path) or '.')
    return path


def devices(text):
    """A --devices value this machine can serve (utils.devices.device_spec), kept as text:
    utils.parse_devices makes the contexts."""
    try:
        device_spec(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def one_of(names, what):
    """One of `names` (too many for `choices` in --help); the error lists them."""
    def parse(text):
        if text not in names:
            raise argparse.ArgumentTypeError('unknown %s %r; known: %s'
                                             % (what, text, ', '.join(sorted(names))))
        return text
    parse.__name__ = what
    return parse


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action):  # no "(default: None)" on settings without a default
        if action.default is None or '%(default)' in (action.help or ''):
            return action.help
        return super()._get_help_string(action)


def chapter_parser(description, default_out, prog=None, distributed=False):
    """An ArgumentParser with the options every chapter shares. Without `distributed`, a
    'dist_*' kvstore is refused: the chapter would train alone under utils.training.launch."""
    parser = OneLineParser(prog=prog, description=description, formatter_class=_HelpFormatter,
                           hint='--help lists the settings')
    parser.add_argument('--quick', action='store_true',
                        help='a configuration that runs in minutes on a 2-core CPU')
    parser.add_argument('--devices', default=None, type=devices, help=DEVICES_HELP)
    parser.add_argument('--seed', type=non_negative_int, default=0, help='random seed')
    parser.add_argument('--out', type=writable_dir, default=default_out,
                        help='folder for the PNG figures')
    parser.add_argument('--metrics-json', type=writable_file, default=None, metavar='PATH',
                        help='write the final metrics to this JSON file')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    if distributed:
        parser.add_argument('--kvstore', default='device', choices=KVSTORE_CHOICES,
                            help="how gradients are added up: 'device'/'local' on this machine; "
                                 "'dist_sync' (or asynchronous SGD: 'dist_async') across "
                                 "processes and machines, under `python -m utils.training.launch` "
                                 "(docs/several-machines.md)")
    else:
        parser.add_argument('--kvstore', default='device', type=_local_kvstore,
                            help="how gradients are added up on this machine: 'device' or "
                                 "'local' (this chapter does not train across processes)")
    return parser


def _local_kvstore(text):
    if text in ('device', 'local'):
        return text
    if text in KVSTORE_CHOICES:
        raise argparse.ArgumentTypeError(
            "%s: this chapter trains in one process; only train_basics trains across "
            "processes (docs/several-machines.md). Give 'device' or 'local'" % text)
    raise argparse.ArgumentTypeError("%r: give 'device' or 'local'" % text)


def _add(parser, name, spec):
    spec = dict(spec)
    default, quick = spec.pop('default'), spec.pop('quick')
    if spec.pop('positional', False):
        parser.add_argument(name, default=default, **spec)
        return
    flag = '--' + name.replace('_', '-')
    if isinstance(default, bool):
        parser.add_argument(flag, action='store_true', help=spec['help'])
        return
    if quick is not None:
        spec['help'] += ' (default %s; --quick: %s)' % (default, quick)
        default = None
    if 'type' not in spec and 'action' not in spec:
        example = quick if default is None else default
        if spec.get('nargs') in ('+', '*') and example:
            example = example[0]
        spec['type'] = _POSITIVE.get(type(example), spec.get('type'))
        if spec['type'] is None:
            del spec['type']
    parser.add_argument(flag, default=default, **spec)


_POSITIVE = {int: positive_int, float: positive_float}


class _ParsedOnly(Exception):
    def __init__(self, args):
        super().__init__('settings parsed')
        self.settings = args


def settings(chapter, title, distributed=False, **options):
    """The chapter's settings as an argparse Namespace (see the module's docstring).

    distributed: the chapter trains across processes with a 'dist_*' --kvstore (under
    utils.training.launch); other chapters refuse such a kvstore in one line.
    """
    caller = sys._getframe(1).f_globals
    if '__file__' in caller and caller.get('__name__') == '__main__' and not _running:
        # `python -m chapters.<name>`: run the chapter again under run_chapter, whose guard
        # turns a user error anywhere in it into one line and status 2.
        spec = caller.get('__spec__')
        run_chapter(spec.name if spec else caller['__file__'], sys.argv[1:])
        sys.exit(0)
    if _running:
        argv = _running[-1]
    elif '__file__' not in caller:  # a notebook or an interactive session
        argv = shlex.split(os.environ.get('GLUON_TRANSFER_NOTEBOOK_ARGS', '--quick'))
    else:
        raise RuntimeError('%s is a chapter: run it with `python -m %s` or '
                           'utils.cli.run_chapter, not import it'
                           % (caller.get('__name__'), caller.get('__name__')))
    parser = chapter_parser(title, os.path.join('out', chapter), prog=chapter,
                            distributed=distributed)
    for name, spec in options.items():
        _add(parser, name, spec)
    args = parser.parse_args(argv)
    for name, spec in options.items():
        if spec['quick'] is not None and getattr(args, name) is None:
            setattr(args, name, spec['quick'] if args.quick else spec['default'])
    args.given = given_settings(parser, argv)
    if _parse_only:
        raise _ParsedOnly(args)
    print(threads.describe())  # how many OpenMP threads, how they wait, and why
    return args


def given_settings(parser, argv):
    """The names of the settings `argv` gives (what a chapter's own defaults must not
    override): parsed again with every default suppressed."""
    saved = [(action, action.default) for action in parser._actions]
    for action, _ in saved:
        action.default = argparse.SUPPRESS
    try:
        return set(vars(parser.parse_args(argv)))
    finally:
        for action, default in saved:
            action.default = default


_parse_only = []


def parse_chapter(chapter, argv=()):
    """Only the settings a chapter would run with: runs the chapter up to its settings cell
    and stops there (what the option tests use: no data, no training)."""
    _parse_only.append(True)
    _running.append([str(a) for a in argv])
    try:
        if chapter.endswith('.py'):
            runpy.run_path(chapter, run_name='__main__')
        else:
            runpy.run_module(chapter, run_name='__main__', alter_sys=True)
    except _ParsedOnly as parsed:
        return parsed.settings
    finally:
        _running.pop()
        _parse_only.pop()
    raise RuntimeError('%s has no utils.settings cell' % chapter)


@main_guard
def run_chapter(chapter, argv=()):
    """Run a chapter (module name, or path of its file) with the command-line arguments
    `argv`; return its namespace. A UserError ends it with one line and SystemExit(2)."""
    _running.append([str(a) for a in argv])
    try:
        if chapter.endswith('.py'):
            return runpy.run_path(chapter, run_name='__main__')
        return runpy.run_module(chapter, run_name='__main__', alter_sys=True)
    finally:
        _running.pop()


class Run:
    """Wall time and metrics of one chapter run; `finish` prints and writes them."""

    def __init__(self, args, chapter):
        self.args = args
        self.start = time.time()
        self.metrics = {'chapter': chapter, 'quick': bool(args.quick),
                        'machine': '%s, %d cores' % (platform.machine(), os.cpu_count() or 1),
                        'omp_num_threads': os.environ.get('OMP_NUM_THREADS'),
                        'threads': threads.describe()}
        os.makedirs(args.out, exist_ok=True)

    def figure(self, name):
        """Path of a PNG in the output folder."""
        return os.path.join(self.args.out, name)

    def finish(self, **metrics):
        """Add `metrics` (the run's results), say where the figures are and the wall time;
        write the metrics when asked. Returns nothing: a notebook's last cell would otherwise
        show the whole metrics dict."""
        self.metrics.update(metrics)
        self.metrics['wall_seconds'] = round(time.time() - self.start, 1)
        print('Figures in %s; wall time %.1f sec'
              % (os.path.abspath(self.args.out), self.metrics['wall_seconds']))
        if self.args.metrics_json:
            write_json(self.args.metrics_json, self.metrics)
            print('Metrics written to %s' % self.args.metrics_json)
