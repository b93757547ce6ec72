"""Grade submissions offline on the CPU: probes in a sandbox, checks in the grader.

    python -m assignments.grade SUBMISSION_DIR [--json scores.json] [--verbose]
    python -m assignments.grade --class-dir SUBMISSIONS --csv scores.csv [--feedback-dir DIR]

SUBMISSION_DIR holds the student's files as handed out (`a1_data_parallel/data_parallel.py`,
..., directly or under `assignments/`; or the notebook handed out, `boxes.ipynb` for `boxes.py`,
of which only the cells marked as graded are taken). The student's code runs only in sandboxed probe
processes (assignments.sandbox), which hand back data; every verdict is computed by the
tests' checks on that data, in the grader's check processes (assignments.checks), bounded in
time and memory. Every test gets a score and a short reason, escaped (assignments.shown).
Hidden tests show only passed / failed and their points, unless the teacher asks with
--show-hidden; the per-student feedback files never show more. A test whose probe crashes,
loops, prints or writes too much, or whose check crashes, loops or blows up on its data,
scores 0; the other tests and students are graded as usual.
"""
import argparse
import ast
import csv
import importlib.util
import io
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor

from assignments import checks, markers, notebooks, sandbox, shown

HERE = os.path.dirname(os.path.abspath(__file__))
ASSIGNMENT_DIR = re.compile(r'^a\d+_\w+$')
UNPACKED_LIMIT = 256 * 2**20  # bytes: the arrays of one probe's observations, unpacked
TRACEBACK_LIMIT = 8000  # characters of a check's traceback kept for the teacher


class GradeError(Exception):
    """Bad command-line input, or a set-up that cannot grade: shown as one line."""


# ---------------------------------------------------------------------------------------------
# What is graded: the tests of each assignment, read without running them

class Test:
    """One graded check and the probe whose observations it judges."""

    def __init__(self, assignment, name, points, probe, timeout, hidden, probe_hidden,
                 tests_file, submission_file):
        self.assignment, self.name, self.points = assignment, name, points
        self.probe, self.timeout, self.hidden, self.probe_hidden = probe, timeout, hidden, \
            probe_hidden
        self.tests_file, self.submission_file = tests_file, submission_file


def _decorator(node, name):
    for deco in node.decorator_list:
        if isinstance(deco, ast.Call) and getattr(deco.func, 'id', '') == name:
            args = [a.id if isinstance(a, ast.Name) else ast.literal_eval(a)
                    for a in deco.args]
            kwargs = {k.arg: k.value.id if isinstance(k.value, ast.Name)
                      else ast.literal_eval(k.value) for k in deco.keywords}
            return args, kwargs
    return None


def tests_path(folder):
    for name in ('tests.py', 'public_tests.py'):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    return None


def read_tests(folder):
    """The graded tests of one assignment folder (tests.py, else public_tests.py)."""
    assignment = os.path.basename(folder)
    path = tests_path(folder)
    if path is None:
        return []
    with open(path) as f:
        text = f.read()
    hidden = markers.hidden_lines(text, path)
    tree = ast.parse(text, path)
    submission_file, probes, checks = None, {}, []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', '') == 'SUBMISSION_FILE'
                                                for t in node.targets):
            submission_file = ast.literal_eval(node.value)
        if not isinstance(node, ast.FunctionDef):
            continue
        found = _decorator(node, 'probe')
        if found is not None:
            args, kwargs = found
            probes[node.name] = (kwargs.get('timeout', args[0] if args else 30),
                                 node.lineno in hidden)
        found = _decorator(node, 'graded')
        if found is not None:
            args, kwargs = found
            checks.append((node, kwargs.get('points', args[0] if args else None),
                           kwargs.get('probe', args[1] if len(args) > 1 else None)))
    if submission_file is None:
        raise GradeError('%s does not name its SUBMISSION_FILE' % path)
    tests = []
    for node, points, probe in checks:
        if probe not in probes:
            raise GradeError('%s:%d: %s judges %r, which is no @probe of the file'
                             % (path, node.lineno, node.name, probe))
        timeout, probe_hidden = probes[probe]
        tests.append(Test(assignment, node.name, points, probe, timeout,
                          node.lineno in hidden, probe_hidden, path, submission_file))
    return tests


def read_all_tests(tests_root, only=None):
    folders = sorted(d for d in os.listdir(tests_root) if ASSIGNMENT_DIR.match(d)
                     and os.path.isdir(os.path.join(tests_root, d)))
    if only:
        unknown = set(only) - set(folders)
        if unknown:
            raise GradeError('no assignment %s in %s (there are: %s)'
                             % (', '.join(sorted(unknown)), tests_root, ', '.join(folders)))
        folders = [f for f in folders if f in only]
    tests = [t for f in folders for t in read_tests(os.path.join(tests_root, f))]
    if not tests:
        raise GradeError('no graded tests found in %s' % tests_root)
    return tests


_parse_lock = threading.Lock()  # ast.parse from several threads at once fails in Python 3.11


def probe_source(text, names, path='<tests>'):
    """The part of a tests file that the probes `names` need: the imports and, transitively,
    the top-level definitions they use. Checks, and helpers only checks use, stay out."""
    with _parse_lock:
        tree = ast.parse(text, path)
    lines = text.splitlines(keepends=True)
    defined, imports = {}, []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(node)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        defined[leaf.id] = node
    needed, stack = set(), list(names)
    while stack:
        node = defined.get(stack.pop())
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        stack += [n.id for n in ast.walk(node) if isinstance(n, ast.Name)]
    out = []
    for node in tree.body:
        if node in imports or id(node) in needed:
            first = min([node.lineno] + [d.lineno for d in getattr(node, 'decorator_list', [])])
            out.append(''.join(lines[first - 1:node.end_lineno]))
    return '\n\n'.join(out) + '\n'


# ---------------------------------------------------------------------------------------------
# The student's files

class Missing(Exception):
    """The student's folder lacks the file to grade (the message says which)."""


class Refused(Exception):
    """The student's folder holds a symbolic link (the message names it)."""


WALK_LIMIT = 10000  # entries looked at for links in one assignment folder


def first_link(submission_dir, folder):
    """The first symbolic link on the way from submission_dir to `folder` or inside it; None
    when there is none. A link could make another student's folder, or the teacher's, pass
    for this one."""
    relative = os.path.relpath(folder, submission_dir)
    path = submission_dir
    for part in relative.split(os.sep):
        path = os.path.join(path, part)
        if os.path.islink(path):
            return path
        if not os.path.isdir(path):
            return None
    seen = 0
    for root, dirs, files in os.walk(folder):
        for name in sorted(dirs + files):
            seen += 1
            if os.path.islink(os.path.join(root, name)):
                return os.path.join(root, name)
        if seen > WALK_LIMIT:
            raise sandbox.FolderTooLarge('%s holds more than %d files' % (
                os.path.relpath(folder, submission_dir), WALK_LIMIT))
    return None


def submission_source(submission_dir, assignment, submission_file, target):
    """Copy the student's folder of `assignment` into `target`, ready to grade: the one
    place where a student's folder becomes the source file(s) the probes import.

    Looks for <dir>/<assignment>/<file>, also under <dir>/assignments/, or its notebook
    (<file> as .ipynb) when the file is absent or still as handed out: then the notebook's
    graded cells, read here as text and never run, become <file> in `target`. Copies regular
    files only (no links, pipes or devices), never the notebook. Raises Missing,
    sandbox.FolderTooLarge, or notebooks.NotebookError (one line naming the notebook)."""
    for folder in (os.path.join(submission_dir, assignment),
                   os.path.join(submission_dir, 'assignments', assignment)):
        link = first_link(submission_dir, folder)
        if link:
            raise Refused('%s is a symbolic link: hand in the files themselves, not links'
                          % link)
        path = notebooks.pick_submission(folder, submission_file)
        if path is None:
            continue
        with _parse_lock:  # the magics are found by parsing the cells
            graded_text = notebooks.graded_text(path)  # None for the .py itself
        notebook = os.path.join(folder, notebooks.notebook_name(submission_file))
        sandbox.copy_folder(folder, target, skip=[notebook])
        if graded_text is not None:
            write_atomic(os.path.join(target, submission_file), graded_text)
        return os.path.join(target, submission_file)
    raise Missing('file missing: expected %s/%s (or %s)' % (
        assignment, submission_file, notebooks.notebook_name(submission_file)))


# ---------------------------------------------------------------------------------------------
# Probes: run in the sandbox, a process per group, again alone after a failure

class Observation:
    """What one probe handed back (status 'ok' and its npz bytes), or why it handed back
    nothing. The grader never decodes the bytes itself: a check process does (`data` is for
    tests and tools that look at them)."""

    def __init__(self, status, message='', payload=b'', output='', seconds=0.0, calls=()):
        self.status, self.message, self.payload, self.output = status, message, payload, output
        self.seconds, self.calls = seconds, list(calls)

    @property
    def data(self):
        return decode(self.payload) if self.status == 'ok' else None


MEMBER_LIMIT = 10000  # arrays in one probe's observations


def check_npz(payload):
    """Check a probe's npz bytes without unpacking them: at most MEMBER_LIMIT arrays,
    UNPACKED_LIMIT bytes in all by the archive's own sizes (which the reading then holds to),
    no array larger than its member, no pickled object. Raises ValueError."""
    import numpy as np
    from numpy.lib import format as npy
    if payload.count(b'PK\x01\x02') > MEMBER_LIMIT:  # before zipfile lists the members
        raise ValueError('more than %d arrays' % MEMBER_LIMIT)
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        members = archive.infolist()
        if len(members) > MEMBER_LIMIT:
            raise ValueError('more than %d arrays' % MEMBER_LIMIT)
        if sum(i.file_size for i in members) > UNPACKED_LIMIT:
            raise ValueError('more than %d MB of arrays' % (UNPACKED_LIMIT // 2**20))
        for member in members:
            with archive.open(member) as f:
                version = npy.read_magic(f)
                if version not in ((1, 0), (2, 0)):
                    raise ValueError('%s: npy format %s' % (member.filename[:40], version))
                shape, _, dtype = (npy.read_array_header_1_0 if version == (1, 0)
                                   else npy.read_array_header_2_0)(f)
                size = dtype.itemsize
                for n in shape:
                    size *= n
                if dtype.hasobject or size > member.file_size:
                    raise ValueError('%s: an array of %s %s in %d bytes' % (
                        member.filename[:40], shape, dtype, member.file_size))
    return np


def decode(payload):
    """A probe's npz bytes as a dict of numpy arrays and JSON values (never pickles), once
    check_npz() has found them within the limits."""
    np = check_npz(payload)
    with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
        data = {key: npz[key] for key in npz.files}
    text = json.loads(bytes(data.pop('__text__', np.zeros(0, np.uint8)).tobytes()) or b'{}')
    if not isinstance(text, dict):
        raise ValueError('malformed observations')
    data.update(text)
    return data


class Job:
    """One student's assignment: its copied folder and the probes to run on it."""

    def __init__(self, assignment, tests_file, submission_file, folder, box, slots, timeout,
                 record_calls=False):
        self.assignment, self.tests_file, self.submission_file = assignment, tests_file, \
            submission_file
        self.folder, self.box, self.slots, self.timeout = folder, box, slots, timeout
        self.record_calls = record_calls
        with open(tests_file) as f:
            self.text = f.read()


def _run_once(job, probes, slot):
    """One probe process for `probes` (name -> timeout), in order.

    (observations of the probes it finished, the probe it was in when it stopped or None,
    how it stopped, whether that probe was the first it started, output)."""
    zygote = job.box.zygote()
    scratch = zygote.new_job() if zygote else sandbox.new_scratch()
    try:
        sandbox.prepare_lib(scratch, probe_source(job.text, list(probes), job.tests_file),
                            _utils_dir())
        shutil.copytree(job.folder, os.path.join(scratch, 'submission'))
        sandbox._readable(os.path.join(scratch, 'submission'))
        output_file = os.path.join(scratch, 'output.txt')
        cpu = sum(job.timeout or t for t in probes.values()) * 2 + 60
        request = {'probes': list(probes), 'submission_file': job.submission_file,
                   'record_calls': job.record_calls}
        if zygote:
            process, channel = job.box.start_forked(request, scratch, slot, cpu)
        else:
            process, channel = job.box.start(request, scratch, slot, cpu, output_file)
            sandbox.track(process, True)
        try:
            return _follow(process, channel, probes, job.timeout) + (
                sandbox.tail(output_file),)
        finally:
            sandbox.kill_tree(process)
            process.wait()
            sandbox.track(process, False)
            os.close(channel)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


START_LIMIT = 120  # seconds for the probe process to import MXNet and the student's module


def _follow(process, channel, probes, timeout):
    reader = sandbox.ChannelReader()
    done, current, started, first = {}, None, 0, False
    deadline = sandbox.now() + START_LIMIT
    began = sandbox.now()
    handled = 0
    while True:
        left = deadline - sandbox.now()
        if left <= 0:
            return done, current, 'timeout', first
        if sandbox.wait_readable(channel, min(left, 0.5)):
            try:
                chunk = os.read(channel, 2**20)
            except BlockingIOError:
                chunk = None
            if not chunk:  # a FIFO reads empty until its writer opens it, and at the end
                if process.poll() is not None:
                    return done, current, _ended(process), first
                time.sleep(0.02)
                chunk = b''
            reader.feed(chunk)
            if reader.overflow:
                return done, current, 'channel', first
        for header, payload in reader.records[handled:]:
            handled += 1
            event = header.get('event')
            if event == 'ready':  # importing the student's module: a probe's time at most
                deadline = sandbox.now() + (timeout or max(probes.values()))
            elif event == 'import_failed':
                status = str(header.get('status'))
                status = status if status in ('not_implemented', 'import_error') \
                    else 'import_error'
                for name in probes:
                    done[name] = Observation(status, str(header.get('message', ''))[:300])
                return done, None, 'finished', False
            elif event == 'start' and header.get('probe') in probes and current is None:
                current = header['probe']
                started += 1
                first = started == 1
                began = sandbox.now()
                deadline = began + (timeout or probes[current])
            elif event == 'done' and header.get('probe') == current:
                status = header.get('status')
                message = str(header.get('message', ''))[:300]
                seconds = round(sandbox.now() - began, 2)
                calls = header.get('calls') or []
                if status == 'ok':
                    try:
                        check_npz(payload)
                        done[current] = Observation('ok', payload=payload,
                                                    seconds=seconds, calls=calls)
                    except Exception as err:
                        done[current] = Observation('error', 'unreadable observations (%s)'
                                                    % sandbox_first_line(err), seconds=seconds)
                else:
                    done[current] = Observation(
                        status if status in ('not_implemented', 'error') else 'error',
                        message, seconds=seconds)
                current = None
                deadline = sandbox.now() + START_LIMIT
                if len(done) == len(probes):
                    return done, None, 'finished', False
        if process.poll() is not None and not sandbox.wait_readable(channel, 0):
            return done, current, _ended(process), first


def sandbox_first_line(err):
    text = str(err).strip().splitlines()
    return '%s: %s' % (type(err).__name__, text[0][:200]) if text else type(err).__name__


def _ended(process):
    return 'exit %s' % process.returncode


def _failure(how, limit):
    """(status, reason) of a probe process that stopped during a probe."""
    import signal
    if how == 'timeout':
        return 'timeout', 'stopped after the time limit of %g s' % limit
    if how == 'channel':
        return 'not_allowed', 'handed back more than %d MB' % (sandbox.CHANNEL_LIMIT // 2**20)
    code = int(how.split()[1]) if how.startswith('exit ') and how[5:].lstrip('-').isdigit() \
        else None
    if code == -signal.SIGXFSZ:
        return 'not_allowed', 'wrote or printed more than %d MB' % (
            sandbox.FILE_LIMIT // 2**20)
    if code == -signal.SIGXCPU:
        return 'timeout', 'used up its CPU time'
    return 'crashed', 'the probe process ended during this test (exit status %s)' % code


def run_probes(job, probes):
    """Observations of every probe (name -> timeout) of one job.

    One process runs them all, in order. When it stops during a probe (a crash, a time
    limit, too much output), that probe gets the failure only if it was the first the
    process ran; otherwise it runs again alone, as something an earlier probe left behind
    may have caused it. The probes after it run in a new process."""
    results, pending, alone = {}, list(probes), None
    while pending:
        batch = [alone] if alone else pending
        slot = job.slots.get()
        try:
            done, current, how, first, output = _run_once(
                job, {name: probes[name] for name in batch}, slot)
        finally:
            job.slots.put(slot)
        for name, observation in done.items():
            observation.output = output
            results[name] = observation
        if current is not None:
            if first or alone:
                status, reason = _failure(how, job.timeout or probes[current])
                results[current] = Observation(status, reason, output=output)
                alone = None
            else:
                alone = current
        elif how != 'finished':  # ended between probes, or before the first
            status, reason = _failure(how, job.timeout or max(probes.values()))
            if how != 'timeout':
                reason = 'the probe process ended before this test ran (exit status %s)' % (
                    how.split()[-1])
            for name in batch:
                if name not in results:
                    results[name] = Observation(status, reason, output=output)
        pending = [name for name in pending if name not in results]
        if alone and alone not in pending:
            alone = None
    return results


# ---------------------------------------------------------------------------------------------
# Checks: in this process, on the observations

_modules = {}


def tests_module(path):
    """The tests file as a module of the grader (never given student code)."""
    path = os.path.realpath(path)
    with _parse_lock:  # compiling it races with probe_source's ast.parse in Python 3.11
        if path not in _modules:
            import utils  # noqa: F401  (before the tests import MXNet: the numpy names it needs)
            name = 'graded_tests_%d' % len(_modules)
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            _modules[path] = module
    return _modules[path]


def new_result(test):
    """The record of one test: a single function can write any number of them out."""
    return {'assignment': test.assignment, 'test': test.name, 'hidden': test.hidden,
            'max_points': test.points, 'points': 0, 'status': None, 'reason': '',
            'traceback': '', 'output': '', 'seconds': 0.0}


def check(test, observation):
    result = new_result(test)
    result['output'] = observation.output
    if observation.status != 'ok':
        result.update(status=observation.status, reason=observation.message,
                      seconds=observation.seconds)
        return result
    start = time.time()
    passed, reason, trace = checkers().run(test.tests_file, test.name, observation.payload)
    result.update(status='passed' if passed else 'failed', points=test.points if passed else 0,
                  reason=reason, traceback=trace)
    result['seconds'] = round(observation.seconds + time.time() - start, 2)
    return result


_checkers = []


def checkers(size=1):
    """The processes that run the checks (assignments.checks), at least `size` of them."""
    if not _checkers:
        import atexit
        _checkers.append(checks.Checkers(size))
        atexit.register(_checkers[0].close)
    _checkers[0].grow(size)
    return _checkers[0]


WRONG_FORM = 'the results do not have the expected form'


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
            return False, '%s (%s)' % (WRONG_FORM, sandbox_first_line(err)), \
                traceback.format_exc()[-TRACEBACK_LIMIT:]


# ---------------------------------------------------------------------------------------------
# One submission

_box = {}


def default_sandbox(disposable=None):
    """The grader's sandbox (disposable: see sandbox.Sandbox; None: from the environment)."""
    if disposable not in _box:
        import atexit
        _box[disposable] = sandbox.Sandbox(hide=[HERE], disposable=disposable)
        atexit.register(_box[disposable].close)
    return _box[disposable]


def _utils_dir():
    import utils
    return os.path.dirname(os.path.abspath(utils.__file__))


class Slots:
    """Numbers for the probe processes running at once (each gets a user of its own)."""

    def __init__(self, n):
        import queue
        self._queue = queue.Queue()
        for i in range(max(1, n)):
            self._queue.put(i)

    def get(self):
        return self._queue.get()

    def put(self, slot):
        self._queue.put(slot)


def grade(submission_dir, tests, jobs=1, timeout=None, box=None, record_calls=False):
    """Results of every test, in the order of `tests` (records, see new_result)."""
    if not os.path.isdir(submission_dir):
        raise GradeError('%s is not a folder: give the folder of one student\'s submission'
                         % submission_dir)
    box = box or default_sandbox()
    slots = Slots(jobs)
    results = {}
    scratch = tempfile.mkdtemp(prefix='grade-copy-')
    try:
        groups = []
        for assignment in sorted({t.assignment for t in tests}, key=[
                t.assignment for t in tests].index):
            mine = [t for t in tests if t.assignment == assignment]
            target = os.path.join(scratch, assignment)
            try:
                submission_source(submission_dir, assignment, mine[0].submission_file, target)
            except (Missing, Refused, sandbox.FolderTooLarge, notebooks.NotebookError) as err:
                status = 'bad_notebook' if isinstance(err, notebooks.NotebookError) \
                    else 'not_allowed' if isinstance(err, Refused) else 'missing'
                for t in mine:
                    results[t.name, assignment] = dict(new_result(t), status=status,
                                                       reason=str(err))
                continue
            job = Job(assignment, mine[0].tests_file, mine[0].submission_file, target, box,
                      slots, timeout, record_calls)
            for hidden in (False, True):  # a public probe process never holds hidden probes
                probes = {}
                for t in mine:
                    if t.probe_hidden == hidden:
                        probes[t.probe] = max(probes.get(t.probe, 0), t.timeout)
                if probes:
                    groups.append((job, probes, [t for t in mine
                                                 if t.probe_hidden == hidden]))

        def run_group(group):
            job, probes, group_tests = group
            observations = run_probes(job, probes)
            return [(t, check(t, observations[t.probe]), observations[t.probe])
                    for t in group_tests]

        pool = ThreadPoolExecutor(max_workers=max(1, jobs))
        try:
            for graded in pool.map(run_group, groups):
                for t, result, observation in graded:
                    if record_calls:
                        result['calls'] = observation.calls
                    results[t.name, t.assignment] = result
        except KeyboardInterrupt:  # stop every probe process before waiting for the threads
            sandbox.kill_all()
            raise
        finally:
            pool.shutdown(wait=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return [shown.record(results[t.name, t.assignment]) for t in tests]


def refused(tests, reason):
    """Every test's record for a submission refused as a whole (reason: one line)."""
    return [shown.record(dict(new_result(t), status='not_allowed', reason=reason))
            for t in tests]


def grade_student(folder, tests, jobs=1, timeout=None, box=None):
    """(results or None, note) of one student of a class: a folder that is a link is refused
    (it could name another student's folder), a fault of the grader's marked in the note."""
    try:
        if os.path.islink(folder):
            note = 'refused: the folder is a symbolic link'
            return refused(tests, note + ': hand in the files themselves'), note
        return grade(folder, tests, jobs, timeout, box), ''
    except (KeyboardInterrupt, GradeError):
        raise
    except Exception as err:  # a fault of the grader's: this student is marked, not lost
        return None, 'ungradable: %s' % sandbox_first_line(err)


def setup(tests, box=None):
    """The grader's own set-up, before any student is scored: each tests file's prepare()
    (weights, data) and a probe process that starts. Raises GradeError naming the cause."""
    box = box or default_sandbox()
    if box.refusal():  # fail closed: without a sandbox, nothing of the student's runs
        raise GradeError(box.refusal())
    for path in sorted({t.tests_file for t in tests}):
        what = os.path.basename(os.path.dirname(path))
        try:  # in a check process, where the checks will run
            checkers().load(path)
        except checks.SetupError as err:
            raise GradeError('setting up %s failed, nobody was graded: %s' % (what, err))
    problem = box.self_test()
    if problem:
        raise GradeError('the sandbox does not work here, nobody was graded: %s' % problem)
    return box


# ---------------------------------------------------------------------------------------------
# Feedback

def feedback(results, show_hidden=False, verbose=False):
    """Results as shown: a hidden test keeps only its name, status and points unless
    show_hidden; tracebacks and output only with verbose."""
    out = []
    for r in results:
        r = dict(r)
        r.pop('calls', None)
        if r['hidden'] and not show_hidden:
            r['status'] = 'passed' if r['status'] == 'passed' else 'failed'
            r['reason'] = 'hidden test'
            r['traceback'] = r['output'] = ''
            r['seconds'] = None  # its time could carry what the student's code saw
        elif not verbose:
            r['traceback'] = r['output'] = ''
        out.append(r)
    return out


def student_feedback(results, verbose=False):
    """What a student may see: never a hidden test's reason, traceback or output."""
    return feedback(results, show_hidden=False, verbose=verbose)


def totals(results):
    per = {}
    for r in results:
        got, most = per.get(r['assignment'], (0, 0))
        per[r['assignment']] = (got + r['points'], most + r['max_points'])
    return per


def report(results, stream):
    for r in results:
        stream.write('%-18s %-34s %5g/%-3g %-7s %s\n' % (
            r['assignment'], r['test'] + (' (hidden)' if r['hidden'] else ''), r['points'],
            r['max_points'], 'PASS' if r['status'] == 'passed' else 'FAIL', r['reason']))
        for key in ('traceback', 'output'):
            if r.get(key):
                stream.write('    | ' + r[key].rstrip().replace('\n', '\n    | ') + '\n')
    per = totals(results)
    for name, (got, most) in per.items():
        stream.write('%-18s total %g/%g\n' % (name, got, most))
    stream.write('TOTAL %g/%g\n' % (sum(g for g, _ in per.values()),
                                    sum(m for _, m in per.values())))


def write_atomic(path, text):
    """Write through a temporary file in the same folder; readable by others (0644 less the
    umask), as a teacher's web server or a TA may need to read it."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(path))
    try:
        with os.fdopen(fd, 'w', newline='') as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o644 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def to_json(results, seconds):
    """seconds None: not told (a student's view of a run with hidden tests)."""
    per = totals(results)
    return json.dumps({'tests': results, 'assignments': {
        k: {'points': g, 'max_points': m} for k, (g, m) in per.items()},
        'total': sum(g for g, _ in per.values()), 'max_total': sum(m for _, m in per.values()),
        'seconds': None if seconds is None else round(seconds, 1)}, indent=1) + '\n'


def shown_seconds(shown_results, seconds):
    """The run's seconds as the results shown may tell them: none when a hidden test's time
    is hidden (the run's time adds it up)."""
    return None if any(r['seconds'] is None for r in shown_results) else seconds


def class_csv(rows, assignments):
    """rows: (student, results or None, seconds, note)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(['student'] + assignments + ['total', 'max_total', 'seconds', 'note'])
    for student, results, seconds, note in rows:
        per = totals(results or [])
        writer.writerow([shown.csv_cell(student)] + [
            '%g' % per.get(a, (0, 0))[0] for a in assignments] + [
            '%g' % sum(g for g, _ in per.values()), '%g' % sum(m for _, m in per.values()),
            '%.1f' % seconds, shown.csv_cell(note)])
    return out.getvalue()


# ---------------------------------------------------------------------------------------------

def positive_seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not value > 0:
        raise argparse.ArgumentTypeError('%r: give the seconds allowed per test, more than 0'
                                         % text)
    return value


class OneLineParser(argparse.ArgumentParser):
    """Bad options get one line, not the usage text."""

    def error(self, message):
        self.exit(2, 'error: %s (see %s --help)\n' % (message, self.prog))


def build_parser():
    parser = OneLineParser(prog='python -m assignments.grade',
                           description=__doc__.splitlines()[0])
    parser.add_argument('submission', nargs='?', help="one student's folder")
    parser.add_argument('--class-dir', help='a folder holding one folder per student')
    parser.add_argument('--csv', help='with --class-dir: write the scores here, a row added as '
                        'each student is graded')
    parser.add_argument('--feedback-dir', help='with --class-dir: one feedback JSON per student, '
                        'to hand back (hidden tests: pass / fail and points only, always)')
    parser.add_argument('--json', help='write the scores and reasons to this JSON file (the '
                        'teacher\'s view: with --show-hidden, hidden reasons too)')
    parser.add_argument('--gradescope', metavar='RESULTS_JSON',
                        help="one submission: also write Gradescope's results.json here "
                        '(hidden tests visible once the grades are published)')
    parser.add_argument('--tests', default=HERE,
                        help='folder with the assignments and their tests (default: this '
                             'package: public and hidden tests in the sources, public only in '
                             'a student copy)')
    parser.add_argument('--only', nargs='+', metavar='ASSIGNMENT',
                        help='grade only these assignments (e.g. a4_iou_loss)')
    parser.add_argument('--jobs', type=int, default=1,
                        help='probe processes at the same time (default 1; they share the '
                             'CPUs: each gets CPUs / N OpenMP threads, at least 1, unless '
                             'OMP_NUM_THREADS is set; the checks keep every CPU)')
    parser.add_argument('--timeout', type=positive_seconds,
                        help='seconds allowed per test, instead of each test\'s own limit')
    parser.add_argument('--verbose', action='store_true',
                        help='show tracebacks of the checks and output of the probes that '
                             'failed (public tests)')
    parser.add_argument('--show-hidden', action='store_true',
                        help='for the teacher: reasons (and with --verbose, tracebacks) of '
                             'hidden tests too, in the terminal and --json; never in '
                             '--feedback-dir')
    parser.add_argument(sandbox.DISPOSABLE_FLAG, action='store_true',
                        help='grade even without bubblewrap, where student code could read '
                        'the hidden tests and write what the grader may: only in a container '
                        'thrown away after grading, such as Gradescope\'s (also '
                        '%s=1; see docs/teachers.md)' % sandbox.DISPOSABLE_ENV)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    for stream in (sys.stdout, sys.stderr):  # a terminal that cannot show a character
        if hasattr(stream, 'reconfigure'):
            stream.reconfigure(errors='backslashreplace')
    try:
        return _main(args)
    except (KeyboardInterrupt, sandbox.Stopped):
        sandbox.kill_all()
        print('interrupted: every probe process stopped', file=sys.stderr)
        return 130
    except (GradeError, markers.MarkerError) as err:
        print('error: %s' % err, file=sys.stderr)
        return 2


def _main(args):
    if bool(args.submission) == bool(args.class_dir):
        raise GradeError('give one submission folder, or --class-dir with one folder per '
                         'student')
    if not os.path.isdir(args.tests):
        raise GradeError('--tests %s is not a folder' % args.tests)
    if args.jobs < 1:
        raise GradeError('--jobs %d: give 1 or more' % args.jobs)
    if args.gradescope and args.class_dir:
        raise GradeError('--gradescope writes the results of one submission: give its '
                         'folder instead of --class-dir')
    # The probe processes share the CPUs; this process's checks keep every usable CPU,
    # whatever the load: a2's few-shot check scores 0.78 with one thread, 0.80 with two.
    os.environ.update(sandbox.thread_settings(1))  # before MXNet loads
    default_sandbox().jobs = args.jobs
    tests = read_all_tests(args.tests, args.only)
    if args.submission and not os.path.isdir(args.submission):
        raise GradeError('%s is not a folder: give the folder of one student\'s submission'
                         % args.submission)
    if args.class_dir and not os.path.isdir(args.class_dir):
        raise GradeError('--class-dir %s is not a folder' % args.class_dir)
    box = setup(tests, default_sandbox(True if args.disposable_container else None))
    print(box.describe(), file=sys.stderr)
    if args.submission:
        start = time.time()
        results = grade(args.submission, tests, args.jobs, args.timeout, box)
        visible = feedback(results, args.show_hidden, args.verbose)
        report(visible, sys.stdout)
        seconds = shown_seconds(visible, time.time() - start)
        if args.json:
            write_atomic(args.json, to_json(visible, seconds))
        if args.gradescope:
            from assignments import gradescope
            gradescope.write_results(args.gradescope, visible, seconds)
        return 0
    # a link among the students is listed, to be refused: it could name another's folder
    students = sorted(d for d in os.listdir(args.class_dir)
                      if os.path.isdir(os.path.join(args.class_dir, d))
                      and not d.startswith('.'))
    if not students:
        raise GradeError('%s holds no student folder' % args.class_dir)
    assignments = sorted({t.assignment for t in tests})
    rows = []
    for student in students:
        start = time.time()
        results, note = grade_student(os.path.join(args.class_dir, student), tests,
                                      args.jobs, args.timeout, box)
        seconds = time.time() - start
        rows.append((student, results, seconds, note))
        per = totals(results or [])
        print('%-20s %5g/%g  (%.1f s)%s' % (shown.line(student), sum(g for g, _ in per.values()),
                                            sum(m for _, m in per.values()), seconds,
                                            '  ' + shown.line(note) if note else ''))
        if (args.verbose or args.show_hidden) and results is not None:  # the teacher's view
            report(feedback(results, args.show_hidden, args.verbose), sys.stdout)
        if args.feedback_dir and results is not None:
            mine = student_feedback(results, args.verbose)
            write_atomic(os.path.join(args.feedback_dir, student + '.json'),
                         to_json(mine, shown_seconds(mine, seconds)))
        if args.csv:  # rewritten whole after each student: a crash keeps every row so far
            write_atomic(args.csv, class_csv(rows, assignments))
    if args.csv:
        print('scores written to %s' % args.csv)
    else:
        sys.stdout.write(class_csv(rows, assignments))
    return 0


if __name__ == '__main__':
    sys.exit(main())
