"""Errors caused by the user's input or machine, shown as one line instead of a traceback.

Standard library only: the book builder and the grader use it without loading MXNet.
"""
import argparse
import functools
import sys


class UserError(Exception):
    """A problem the user can fix: the message names the file or value and says what to do."""


def main_guard(main):
    """Run a command-line entry point, turning a UserError into one line on stderr and status 2."""
    @functools.wraps(main)
    def guarded(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print('error: %s' % err, file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print('interrupted', file=sys.stderr)
            sys.exit(130)
    return guarded


def one_line(err, limit=160, named=False):
    """An exception as one short line: MXNet puts its reason on the last line, others on the
    first. named: the exception's type in front (`KeyError: 'x'`), as the grader's reasons
    show it."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    text = lines[-1] if type(err).__name__ == 'MXNetError' else lines[0]
    text = text.replace('MXNetError: ', '')[:limit]
    return '%s: %s' % (type(err).__name__, text) if named else text


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, `prog: error: message (hint)`, status 2
    (argparse prints the whole usage before its error)."""

    def __init__(self, *args, hint='see --help', **kwargs):
        super().__init__(*args, **kwargs)
        self.hint = hint

    def error(self, message):
        self.exit(2, '%s: error: %s (%s)\n' % (self.prog, message, self.hint))
