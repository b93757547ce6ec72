"""Run one graded test on one submission in this process; write the outcome as JSON.

    python -m assignments.runner TESTS_FILE TEST_NAME SUBMISSION_FILE RESULT_FILE
    python -m assignments.runner --serve    # fork server: a fresh process per test

Used by assignments.grade, one process per test, in a scratch copy of the student's folder
(the current directory). Importing MXNet takes a second or more; the fork server does it once
and forks a process for each test. Everything the grader needs (MXNet, the tests, their data)
is loaded first; then the guards go up, and only then is the student's code imported:

- writes and file changes outside the current directory raise PermissionError and fail the
  test (a Python audit hook: it sees `open`, `os.remove`, `os.rename`, ..., not what C code
  such as `nd.save` writes), and so do starting a process and opening a network connection;
- printing more than the output limit fails the test.

These guard against mistakes, not against a student set on cheating: the student's code runs
in the same process as the test.
"""
import json
import os
import sys
import traceback

import utils  # noqa: F401  (sets OMP_NUM_THREADS before MXNet loads)

import importlib.util
import random
import resource
import signal
import tempfile

import mxnet as mx
import numpy as np

SEED = 12345
OUTPUT_LIMIT = int(os.environ.get('GRADE_OUTPUT_LIMIT', 100000))  # characters
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
PATH_EVENTS = {'os.remove': (0,), 'os.rmdir': (0,), 'os.mkdir': (0,), 'os.rename': (0, 1),
               'os.link': (1,), 'os.symlink': (1,), 'os.truncate': (0,), 'os.chmod': (0,),
               'os.chown': (0,), 'os.utime': (0,), 'shutil.rmtree': (0,),
               'shutil.copyfile': (1,), 'shutil.move': (0, 1)}
PROCESS_EVENTS = {'subprocess.Popen', 'os.system', 'os.exec', 'os.posix_spawn', 'os.spawn',
                  'os.fork', 'os.forkpty'}


class OutputLimitExceeded(BaseException):
    """Raised on the print that crosses the limit (a BaseException: `except Exception` in the
    student's code does not swallow it)."""


class Guards:
    """What the student's code did that fails the test, whether or not it caught the error."""

    def __init__(self, root):
        self.root = os.path.realpath(root)
        self.violations = []
        self.printed = 0
        self.active = False

    def inside(self, path):
        if isinstance(path, int):  # an open file descriptor: its path was checked when opened
            return True
        path = os.path.realpath(os.fsdecode(path))
        return path == os.devnull or path == self.root or path.startswith(self.root + os.sep)

    def deny(self, what):
        self.violations.append(what)
        raise PermissionError('not allowed while grading: %s' % what)

    def audit(self, event, args):
        if not self.active:
            return
        if event == 'open':
            path, mode, flags = args
            writing = (mode is not None and any(c in mode for c in 'wax+')) or \
                (flags or 0) & WRITE_FLAGS
            if writing and path is not None and not self.inside(path):
                self.deny('writing %s (outside the submission folder)' % os.fsdecode(path))
        elif event in PATH_EVENTS:
            for index in PATH_EVENTS[event]:
                path = args[index] if index < len(args) else None
                if path is not None and not self.inside(path):
                    self.deny('%s on %s (outside the submission folder)'
                              % (event, os.fsdecode(path)))
        elif event in PROCESS_EVENTS:
            self.deny('starting a process (%s)' % event)
        elif event == 'socket.connect':
            self.deny('opening a network connection')


class CappedStream:
    """A text stream that passes writes on until `guards.printed` reaches OUTPUT_LIMIT."""

    def __init__(self, stream, guards):
        self._stream, self._guards = stream, guards

    def write(self, text):
        self._guards.printed += len(text)
        if self._guards.printed > OUTPUT_LIMIT:
            self._guards.violations.append('printed more than %d characters' % OUTPUT_LIMIT)
            raise OutputLimitExceeded()
        return self._stream.write(text)

    def flush(self):
        self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def first_line(err):
    text = str(err).strip().splitlines()
    return '%s: %s' % (type(err).__name__, text[0][:200]) if text else type(err).__name__


def run(tests_file, test_name, submission_file):
    """(status, message, traceback text)."""
    tests = load_module(tests_file, 'graded_tests')
    test = getattr(tests, test_name)
    if hasattr(tests, 'prepare'):  # the grader's own set-up (weights, data), before the guards
        tests.prepare()
    random.seed(SEED)
    np.random.seed(SEED)
    mx.random.seed(SEED)
    guards = Guards(os.getcwd())
    sys.dont_write_bytecode = True
    sys.stdout, sys.stderr = CappedStream(sys.stdout, guards), CappedStream(sys.stderr, guards)
    sys.addaudithook(guards.audit)
    guards.active = True
    sys.path.insert(0, os.path.dirname(os.path.abspath(submission_file)))
    try:
        try:
            sub = load_module(submission_file, os.path.splitext(
                os.path.basename(submission_file))[0])
        except NotImplementedError as err:
            return 'not_implemented', 'not implemented yet (%s)' % first_line(err), \
                traceback.format_exc()
        except BaseException as err:
            if guards.violations:
                raise
            return 'import_error', 'does not import: %s' % first_line(err), \
                traceback.format_exc()
        test(sub)
    except OutputLimitExceeded:
        pass
    except NotImplementedError:
        if not guards.violations:
            return 'not_implemented', 'not implemented yet', traceback.format_exc()
    except AssertionError as err:
        if not guards.violations:
            return 'failed', str(err).strip()[:300] or 'a check failed', traceback.format_exc()
    except BaseException as err:
        if not guards.violations:
            return 'error', first_line(err), traceback.format_exc()
    finally:
        guards.active = False
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    if guards.violations:
        return 'not_allowed', guards.violations[0], ''
    return 'passed', '', ''


def set_limits():
    """No core files; a file (the captured output too) growing past the cap kills the process."""
    limit = int(os.environ.get('GRADE_FILE_LIMIT', 64 * 2**20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def run_and_report(tests_file, test_name, submission_file, result_file):
    """Run one test and write its result file; never returns (os._exit)."""
    set_limits()
    result = os.open(result_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    status, message, trace = run(tests_file, test_name, submission_file)
    os.write(result, json.dumps({'status': status, 'message': message,
                                 'traceback': trace}).encode())
    os.close(result)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # threads the student's code may have left running do not hold the exit


# ---------------------------------------------------------------------------------------------
# Fork server: MXNet is imported once, each test runs in a fresh fork of this process

def _write_file(path, text):
    with open(path + '.tmp', 'w') as f:
        f.write(text)
    os.replace(path + '.tmp', path)


def serve():
    """Read one JSON request per line on stdin; fork a process for each test.

    A request names the test, the submission file, the working folder, extra environment
    variables and a scratch folder. The fork runs in a session of its own (so the grader
    can kill everything it starts) and writes `pid` into the scratch folder when it starts;
    this process writes `exit` there with the status when it ends. Nothing is computed with
    MXNet here before forking: only imports, which are safe to fork.
    """
    scratch_of = {}

    def reap(signum, frame):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            scratch = scratch_of.pop(pid, None)
            if scratch:
                code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else \
                    os.WEXITSTATUS(status)
                _write_file(os.path.join(scratch, 'exit'), str(code))

    signal.signal(signal.SIGCHLD, reap)
    for line in sys.stdin:
        request = json.loads(line)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        pid = os.fork()
        if pid == 0:
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
                os.setsid()
                os.chdir(request['cwd'])
                os.environ.update(request['env'])
                tempfile.tempdir = None  # read TMPDIR again
                out = os.open(request['output_file'], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(out, 1)
                os.dup2(out, 2)
                _write_file(os.path.join(request['scratch'], 'pid'), str(os.getpid()))
                run_and_report(request['tests_file'], request['test'],
                               request['submission_file'], request['result_file'])
            finally:
                os._exit(70)
        scratch_of[pid] = request['scratch']
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})


def main():
    if sys.argv[1:] == ['--serve']:
        serve()
    else:
        run_and_report(*sys.argv[1:5])


if __name__ == '__main__':
    main()
