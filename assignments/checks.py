"""Checks in processes of their own, with time and memory limits.

A check judges what a probe handed back, and that data is the student's: a graph that
crashes MXNet when it is rebuilt, arrays that take gigabytes once cast, a network that takes
minutes to run. So the grader never runs a check itself: a worker process (`python -m
assignments.checks`, a fresh interpreter started by the grader) loads the tests files, decodes
each probe's observations and runs the check on them. A check that crashes its worker, runs
past CHECK_SECONDS of CPU time (or WALL_FACTOR times that in all) or past CHECK_MEMORY fails
its test alone, with a reason; the worker is replaced and the class goes on. A worker runs
one check at a time (MXNet's front end is not thread-safe).
"""
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
import warnings

from utils.errors import one_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECK_SECONDS = 60  # CPU seconds for one check (a2's few-shot check takes about 7 s)
WALL_FACTOR = 5  # and at most this many times as long in all: a busy machine, or a hang
CHECK_MEMORY = int(os.environ.get('GRADE_CHECK_MEMORY', 4 * 2**30))  # bytes of address space
CHECK_THREADS = 2  # OpenMP threads of a check process
START_SECONDS = 180  # a worker's start, and loading a tests file (its prepare(): weights)
REASON_LIMIT = 300
TRACEBACK_LIMIT = 8000  # characters of a check's traceback kept for the teacher
WRONG_FORM = 'the results do not have the expected form'


class SetupError(Exception):
    """A tests file that does not load, or whose prepare() fails (the message says why)."""


# ---------------------------------------------------------------------------------------------
# Frames on a pipe: 8 bytes of length, then the bytes

def _send(fd, data):
    data = struct.pack('<Q', len(data)) + data
    while data:
        data = data[os.write(fd, data):]


def _read_exactly(fd, n, within=None):
    """n bytes from fd; while waiting, within() (when given) says whether to wait on."""
    import select
    chunks, left = [], n
    while left:
        while within is not None and not select.select([fd], [], [], 0.25)[0]:
            if not within():
                raise TimeoutError()
        chunk = os.read(fd, min(left, 2**20))
        if not chunk:
            raise EOFError()
        chunks.append(chunk)
        left -= len(chunk)
    return b''.join(chunks)


def _receive(fd, within=None):
    size, = struct.unpack('<Q', _read_exactly(fd, 8, within))
    return _read_exactly(fd, size, within)


# ---------------------------------------------------------------------------------------------
# The grader's side

class Worker:
    """One worker process and the tests files it has loaded."""

    def __init__(self):
        to_child, self._out = os.pipe()
        self._in, from_child = os.pipe()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [ROOT] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
        # A fixed thread count: a check's sums, so its verdicts, do not depend on the teacher's
        # setting (a2's few-shot accuracy was 0.78 with one thread, 0.80 with two); threads
        # that sleep while they wait, as the probe processes run beside (a2's few-shot check:
        # 4.3 s instead of 7.9 s); and few malloc arenas, which the address-space limit counts.
        env.update(OMP_NUM_THREADS=str(CHECK_THREADS), OMP_WAIT_POLICY='PASSIVE')
        env.setdefault('MALLOC_ARENA_MAX', '4')
        self.process = subprocess.Popen(
            [sys.executable, '-m', 'assignments.checks', str(to_child), str(from_child)],
            pass_fds=(to_child, from_child), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
            start_new_session=True)
        os.close(to_child)
        os.close(from_child)
        from assignments import sandbox
        sandbox.track(self.process, True)
        self.loaded = set()

    def cpu_seconds(self):
        """CPU time the worker used so far (0 where /proc cannot tell)."""
        try:
            with open('/proc/%d/stat' % self.process.pid) as f:
                fields = f.read().rsplit(')', 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
        except (OSError, IndexError, ValueError):
            return 0.0

    def ask(self, request, payload=b'', seconds=None):
        """The worker's answer (a dict) to one request, within `seconds` (CHECK_SECONDS) of
        its CPU time and WALL_FACTOR times that in all; raises TimeoutError or EOFError."""
        seconds = seconds or CHECK_SECONDS
        _send(self._out, json.dumps(request).encode())
        _send(self._out, payload)
        cpu, start = self.cpu_seconds(), time.monotonic()

        def within():
            return time.monotonic() - start < seconds * WALL_FACTOR and \
                self.cpu_seconds() - cpu < seconds
        return json.loads(_receive(self._in, within).decode())

    def stop(self):
        """Kill the worker (it may be running a check that will never end)."""
        from assignments import sandbox
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except OSError:
            pass
        self.process.kill()
        self.process.wait()
        sandbox.track(self.process, False)
        for fd in (self._in, self._out):
            try:
                os.close(fd)
            except OSError:
                pass

    def how_it_ended(self):
        code = self.process.poll()
        if code is None:
            return 'still running'
        if code < 0:
            try:
                return 'signal %s' % signal.Signals(-code).name
            except ValueError:
                return 'signal %d' % -code
        return 'exit status %d' % code


class Checkers:
    """Up to `size` workers, started when needed, each running one check at a time. The
    grader keeps one: checks then run one at a time beside the probe processes, as many
    OpenMP processes as before checks had processes of their own (more, on two cores, slow
    every one of them down)."""

    def __init__(self, size=1):
        self.size, self._idle, self._count = max(1, size), [], 0
        self._free = threading.Condition()

    def grow(self, size):
        with self._free:
            self.size = max(self.size, size)
            self._free.notify_all()

    def _take(self):
        with self._free:
            while not self._idle and self._count >= self.size:
                self._free.wait()
            if self._idle:
                return self._idle.pop()
            self._count += 1
        try:
            return Worker()
        except BaseException:
            self._give(None)
            raise

    def _give(self, worker):
        with self._free:
            if worker is None:
                self._count -= 1
            else:
                self._idle.append(worker)
            self._free.notify()

    def load(self, tests_file, worker=None):
        """Load a tests file (its prepare() too) in a worker; raises SetupError."""
        own = worker is None
        worker = worker or self._take()
        try:
            try:
                answer = worker.ask({'load': tests_file}, seconds=START_SECONDS)
            except (TimeoutError, EOFError, OSError):
                answer = {'error': 'the check process ended while loading it (%s)'
                          % worker.how_it_ended()}
            if answer.get('error'):
                worker.stop()
                worker = None
                raise SetupError(answer['error'])
            worker.loaded.add(tests_file)
        finally:
            if own:
                self._give(worker)

    def run(self, tests_file, test_name, payload):
        """(passed, reason, traceback) of one check on a probe's npz bytes."""
        worker = self._take()
        try:
            if tests_file not in worker.loaded:
                try:
                    self.load(tests_file, worker)
                except SetupError as err:
                    worker = None
                    return False, 'the grader could not load its tests (%s)' % err, ''
            try:
                answer = worker.ask({'file': tests_file, 'test': test_name}, payload)
                if answer.get('retire'):
                    worker.stop()
                    worker = None
                return bool(answer['passed']), str(answer['reason'])[:REASON_LIMIT], \
                    str(answer.get('traceback', ''))
            except TimeoutError:
                worker.stop()
                worker = None
                return False, 'the check on these results ran past its time limit (%d s of ' \
                    'CPU time, %d s in all)' % (CHECK_SECONDS, CHECK_SECONDS * WALL_FACTOR), ''
            except (EOFError, OSError, ValueError, KeyError, TypeError):
                time.sleep(0.05)  # let it end, to say how
                worker.stop()
                why = worker.how_it_ended()
                worker = None
                return False, 'the check on these results crashed (%s) or ran out of its ' \
                    '%d MB' % (why, CHECK_MEMORY // 2**20), ''
        finally:
            self._give(worker)

    def close(self):
        with self._free:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for worker in idle:
            worker.stop()


_checkers = []


def checkers(size=1):
    """The grader's check processes, at least `size` of them: one pool for the process,
    closed when it exits."""
    if not _checkers:
        import atexit
        _checkers.append(Checkers(size))
        atexit.register(_checkers[0].close)
    _checkers[0].grow(size)
    return _checkers[0]


# ---------------------------------------------------------------------------------------------
# The worker's side

def judge(function, data):
    """One check on a probe's observations: (passed, reason, traceback). The public tests
    in a notebook give their feedback lines through it too."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        try:
            function(data)
            return True, '', ''
        except AssertionError as err:
            return False, str(err).strip()[:300] or 'a check failed', \
                traceback.format_exc()[-TRACEBACK_LIMIT:]
        except Exception as err:  # observations of the wrong form, or too large (MemoryError)
            return False, '%s (%s)' % (WRONG_FORM, one_line(err, 200, named=True)), \
                traceback.format_exc()[-TRACEBACK_LIMIT:]


def _limits():
    import resource
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = CHECK_MEMORY if hard == resource.RLIM_INFINITY else min(CHECK_MEMORY, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _end_with_the_grader():
    """A grader killed outright leaves its workers to this: they end within a second."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def serve(read_fd, write_fd):
    _limits()
    _end_with_the_grader()
    sys.dont_write_bytecode = True  # nothing written next to the teacher's tests
    import utils  # noqa: F401  (before MXNet: the numpy names it needs)
    from assignments.observations import decode
    from assignments.tests_files import tests_module
    while True:
        try:
            request = json.loads(_receive(read_fd).decode())
            payload = _receive(read_fd)
        except EOFError:
            return
        if 'load' in request:
            try:
                module = tests_module(request['load'])
                if hasattr(module, 'prepare'):
                    module.prepare()
                answer = {}
            except Exception as err:
                answer = {'error': one_line(err, 200, named=True)}
        else:
            function = getattr(tests_module(request['file']), request['test'])
            try:
                data = decode(payload)
            except Exception as err:
                answer = {'passed': False, 'reason': 'unreadable observations (%s)'
                          % one_line(err, 200, named=True), 'traceback': ''}
            else:
                passed, reason, trace = judge(function, data)
                # an error other than a failed assertion (MemoryError, MXNetError, ...) may
                # leave MXNet in a state the next student's check should not meet
                answer = {'passed': passed, 'reason': reason, 'traceback': trace,
                          'retire': not passed and reason.startswith(WRONG_FORM)}
            del payload
        _send(write_fd, json.dumps(answer).encode())


if __name__ == '__main__':
    serve(int(sys.argv[1]), int(sys.argv[2]))
