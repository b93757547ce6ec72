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
--kvstore; `args.given` names the settings the command line gave. A user error
(utils.errors.UserError) ends a command-line run with one line on stderr and status 2, never a
traceback.
"""
import argparse
import os
import platform
import runpy
import shlex
import sys
import time

from .devices import DEVICES_HELP, parse_devices
from .distributed import KVSTORE_CHOICES
from .errors import main_guard
from .files import write_json

_running = []  # the argument lists of the chapters run_chapter is running, innermost last


def opt(default, help, quick=None, **argparse_kwargs):
    """One setting: its default, what it means, and its value under --quick when different.

    argparse_kwargs go to `add_argument` (choices, nargs, action='append', metavar, type);
    a bool default makes a flag, `positional=True` a positional argument.
    """
    return dict(argparse_kwargs, default=default, help=help, quick=quick)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action):  # no "(default: None)" on settings without a default
        if action.default is None or '%(default)' in (action.help or ''):
            return action.help
        return super()._get_help_string(action)


def chapter_parser(description, default_out):
    """An ArgumentParser with the options every chapter shares."""
    parser = argparse.ArgumentParser(description=description, formatter_class=_HelpFormatter)
    parser.add_argument('--quick', action='store_true',
                        help='a configuration that runs in minutes on a 2-core CPU')
    parser.add_argument('--devices', default=None, help=DEVICES_HELP)
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--out', default=default_out, help='folder for the PNG figures')
    parser.add_argument('--metrics-json', default=None, metavar='PATH',
                        help='write the final metrics to this JSON file')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    parser.add_argument('--kvstore', default='device', choices=KVSTORE_CHOICES,
                        help="how gradients are added up: 'device'/'local' on this machine; "
                             "'dist_sync' across processes and machines, under "
                             "`python -m utils.launch` (docs/several-machines.md)")
    return parser


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
    if 'type' not in spec and 'action' not in spec and spec.get('nargs') is None:
        kind = type(quick if default is None else default)
        if kind in (int, float):
            spec['type'] = kind
    if spec.get('nargs') in ('+', '*') and 'type' not in spec and default:
        spec['type'] = type(default[0])
    parser.add_argument(flag, default=default, **spec)


def settings(chapter, title, **options):
    """The chapter's settings as an argparse Namespace (see the module's docstring)."""
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
    parser = chapter_parser(title, os.path.join('out', chapter))
    for name, spec in options.items():
        _add(parser, name, spec)
    args = parser.parse_args(argv)
    for name, spec in options.items():
        if spec['quick'] is not None and getattr(args, name) is None:
            setattr(args, name, spec['quick'] if args.quick else spec['default'])
    args.given = given_settings(parser, argv)
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
