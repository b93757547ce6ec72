"""Grade submissions offline on the CPU: each test in its own process, with its own timeout.

    python -m assignments.grade SUBMISSION_DIR [--json scores.json] [--verbose]
    python -m assignments.grade --class-dir SUBMISSIONS --csv scores.csv [--feedback-dir DIR]

SUBMISSION_DIR holds the student's files as handed out (`a1_data_parallel/data_parallel.py`,
..., directly or under `assignments/`). Every test gets a score and a short reason. Hidden
tests show only passed / failed and their points, unless the teacher asks with --show-hidden.
A test that crashes, loops, prints too much or writes outside the folder scores 0; the other
tests are graded as usual.
"""
import argparse
import ast
import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from assignments import markers

HERE = os.path.dirname(os.path.abspath(__file__))
ASSIGNMENT_DIR = re.compile(r'^a\d+_\w+$')
FILE_LIMIT = 64 * 2**20  # bytes: a larger file (the captured output too) kills the test
OUTPUT_LIMIT = 100000  # characters printed by one test


class GradeError(Exception):
    """Bad command-line input: shown as one line."""


# ---------------------------------------------------------------------------------------------
# What is graded: the tests of each assignment, read without running them

class Test:
    def __init__(self, assignment, name, points, timeout, hidden, tests_file, submission_file):
        self.assignment, self.name, self.points, self.timeout = assignment, name, points, timeout
        self.hidden, self.tests_file, self.submission_file = hidden, tests_file, submission_file


def _literal_kwargs(call):
    args = [ast.literal_eval(a) for a in call.args]
    kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    return args, kwargs


def read_tests(folder):
    """The graded tests of one assignment folder (tests.py, else public_tests.py)."""
    assignment = os.path.basename(folder)
    for name in ('tests.py', 'public_tests.py'):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            break
    else:
        return []
    with open(path) as f:
        text = f.read()
    hidden = markers.hidden_lines(text, path)
    tree = ast.parse(text, path)
    submission_file, tests = None, []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', '') == 'SUBMISSION_FILE'
                                                for t in node.targets):
            submission_file = ast.literal_eval(node.value)
        if not isinstance(node, ast.FunctionDef):
            continue
        for deco in node.decorator_list:
            if isinstance(deco, ast.Call) and getattr(deco.func, 'id', '') == 'graded':
                args, kwargs = _literal_kwargs(deco)
                points = kwargs.get('points', args[0] if args else None)
                timeout = kwargs.get('timeout', args[1] if len(args) > 1 else 30)
                tests.append(Test(assignment, node.name, points, timeout,
                                  node.lineno in hidden, path, submission_file))
    if submission_file is None:
        raise GradeError('%s does not name its SUBMISSION_FILE' % path)
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


def find_submission_file(submission_dir, test):
    """The student's file for `test`: <dir>/<assignment>/<file>, also under assignments/."""
    for candidate in (os.path.join(submission_dir, test.assignment, test.submission_file),
                      os.path.join(submission_dir, 'assignments', test.assignment,
                                   test.submission_file)):
        if os.path.isfile(candidate):
            return candidate
    return None


# ---------------------------------------------------------------------------------------------
# Running one test

def _mxnet_home():
    return os.environ.get('MXNET_HOME', os.path.join(os.path.expanduser('~'), '.mxnet'))


class ForkServer:
    """`python -m assignments.runner --serve`: MXNet imported once, one fork per test."""

    def __init__(self, project_root=None):
        env = dict(os.environ, MXNET_HOME=_mxnet_home(), PYTHONDONTWRITEBYTECODE='1',
                   GRADE_OUTPUT_LIMIT=str(OUTPUT_LIMIT), GRADE_FILE_LIMIT=str(FILE_LIMIT),
                   PYTHONPATH=os.pathsep.join(p for p in (os.path.dirname(HERE), project_root)
                                              if p))
        self._process = subprocess.Popen(
            [sys.executable, '-m', 'assignments.runner', '--serve'], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, env=env, cwd=tempfile.gettempdir(), text=True)
        self._lock = threading.Lock()

    def start(self, request):
        with self._lock:
            if self._process.poll() is not None:
                raise GradeError('the test server stopped (exit status %s): run again with '
                                 '--no-fork to see why' % self._process.returncode)
            self._process.stdin.write(json.dumps(request) + '\n')
            self._process.stdin.flush()

    def close(self):
        if self._process.poll() is None:
            self._process.stdin.close()
            self._process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _read_int(path):
    try:
        with open(path) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def _kill_group(pid):
    """Kill `pid`'s process group: the test and whatever the student's code started."""
    if pid:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _run_forked(server, request, limit):
    """(timed_out, exit status or None) of one test run by the fork server."""
    scratch = request['scratch']
    exit_file, pid_file = os.path.join(scratch, 'exit'), os.path.join(scratch, 'pid')
    server.start(request)
    deadline = time.time() + limit
    while time.time() < deadline and not os.path.exists(exit_file):
        time.sleep(0.02)
    timed_out = not os.path.exists(exit_file)
    if timed_out:
        # the fork writes its pid as it starts: give a fork that has not yet started a moment
        grace = time.time() + 10
        while _read_int(pid_file) is None and not os.path.exists(exit_file) \
                and time.time() < grace:
            time.sleep(0.02)
    _kill_group(_read_int(pid_file))
    grace = time.time() + 10
    while not os.path.exists(exit_file) and time.time() < grace:
        time.sleep(0.02)
    return timed_out, _read_int(exit_file)


def _run_process(command, env, work, output_file, limit):
    """(timed_out, exit status) of one test run as a new Python process."""
    with open(output_file, 'wb') as output:
        child = subprocess.Popen(command, cwd=work, env=env, stdin=subprocess.DEVNULL,
                                 stdout=output, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        try:
            child.wait(timeout=limit)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _kill_group(child.pid)
            child.wait()
    return timed_out, child.returncode


def run_test(test, submission_dir, timeout=None, project_root=None, server=None):
    """A result dict: status, score, reason, traceback, seconds."""
    start = time.time()
    result = {'assignment': test.assignment, 'test': test.name, 'hidden': test.hidden,
              'max_points': test.points, 'points': 0, 'status': None, 'reason': '',
              'traceback': '', 'output': ''}
    source = find_submission_file(submission_dir, test)
    if source is None:
        result.update(status='missing', reason='file missing: expected %s/%s'
                      % (test.assignment, test.submission_file))
        result['seconds'] = 0.0
        return result
    limit = timeout or test.timeout
    with tempfile.TemporaryDirectory(prefix='grade-') as scratch:
        work = os.path.join(scratch, 'work')
        # the student's folder, copied: what the code writes there is thrown away afterwards
        shutil.copytree(os.path.dirname(source), work, symlinks=True,
                        ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        os.makedirs(os.path.join(work, '.tmp'))
        env = {'HOME': work, 'TMPDIR': os.path.join(work, '.tmp'),
               'MPLCONFIGDIR': os.path.join(work, '.tmp')}
        result_file = os.path.join(scratch, 'result.json')
        output_file = os.path.join(scratch, 'output.txt')
        submission_file = os.path.join(work, os.path.basename(source))
        tests_file = os.path.abspath(test.tests_file)
        if server is not None:
            timed_out, status = _run_forked(server, {
                'tests_file': tests_file, 'test': test.name, 'submission_file': submission_file,
                'result_file': result_file, 'output_file': output_file, 'cwd': work,
                'env': env, 'scratch': scratch}, limit)
        else:
            env = dict(os.environ, MXNET_HOME=_mxnet_home(), PYTHONDONTWRITEBYTECODE='1',
                       GRADE_OUTPUT_LIMIT=str(OUTPUT_LIMIT), GRADE_FILE_LIMIT=str(FILE_LIMIT),
                       PYTHONPATH=os.pathsep.join(
                           p for p in (os.path.dirname(HERE), project_root) if p), **env)
            command = [sys.executable, '-m', 'assignments.runner', tests_file, test.name,
                       submission_file, result_file]
            timed_out, status = _run_process(command, env, work, output_file, limit)
        if os.path.exists(output_file):
            with open(output_file, 'rb') as f:
                f.seek(max(0, os.path.getsize(output_file) - 4000))
                result['output'] = f.read().decode('utf-8', 'replace')
        outcome = None
        if os.path.exists(result_file) and not timed_out:
            with open(result_file) as f:
                text = f.read()
            try:
                outcome = json.loads(text) if text else None
            except ValueError:
                outcome = None
    if outcome is not None:
        result.update(status=outcome['status'], reason=outcome['message'],
                      traceback=outcome['traceback'])
    elif timed_out:
        result.update(status='timeout', reason='stopped after the time limit of %g s' % limit)
    elif status == -signal.SIGXFSZ:
        result.update(status='not_allowed',
                      reason='wrote or printed more than %d MB' % (FILE_LIMIT // 2**20))
    else:
        result.update(status='crashed', reason='the test process ended before the test did '
                      '(exit status %s)' % status)
    if result['status'] == 'passed':
        result['points'] = test.points
    result['seconds'] = round(time.time() - start, 2)
    return result


def grade(submission_dir, tests, jobs=1, timeout=None, project_root=None, server=None,
          fork=True):
    """Results of every test, in the order of `tests`.

    server: a ForkServer to reuse (grading a class); with fork=False every test starts a
    new Python process instead (slower: MXNet is imported for each test).
    """
    if not os.path.isdir(submission_dir):
        raise GradeError('%s is not a folder: give the folder of one student\'s submission'
                         % submission_dir)
    own = server is None and fork
    if own:
        server = ForkServer(project_root)
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            return list(pool.map(lambda t: run_test(t, submission_dir, timeout, project_root,
                                                    server), tests))
    finally:
        if own:
            server.close()


# ---------------------------------------------------------------------------------------------
# Feedback

def feedback(results, show_hidden=False, verbose=False):
    """Results as shown to a student: a hidden test keeps only its name, status and points."""
    shown = []
    for r in results:
        r = dict(r)
        if r['hidden'] and not show_hidden:
            r['status'] = 'passed' if r['status'] == 'passed' else 'failed'
            r['reason'] = 'hidden test'
            r['traceback'] = r['output'] = ''
        elif not verbose:
            r['traceback'] = r['output'] = ''
        shown.append(r)
    return shown


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
                stream.write('    ' + r[key].rstrip().replace('\n', '\n    ') + '\n')
    per = totals(results)
    for name, (got, most) in per.items():
        stream.write('%-18s total %g/%g\n' % (name, got, most))
    stream.write('TOTAL %g/%g\n' % (sum(g for g, _ in per.values()),
                                    sum(m for _, m in per.values())))


def write_atomic(path, text):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(path))
    try:
        with os.fdopen(fd, 'w', newline='') as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def to_json(results, seconds):
    per = totals(results)
    return json.dumps({'tests': results, 'assignments': {
        k: {'points': g, 'max_points': m} for k, (g, m) in per.items()},
        'total': sum(g for g, _ in per.values()), 'max_total': sum(m for _, m in per.values()),
        'seconds': round(seconds, 1)}, indent=1) + '\n'


def class_csv(rows, assignments):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(['student'] + assignments + ['total', 'max_total', 'seconds'])
    for student, results, seconds in rows:
        per = totals(results)
        writer.writerow([student] + ['%g' % per[a][0] for a in assignments] + [
            '%g' % sum(g for g, _ in per.values()), '%g' % sum(m for _, m in per.values()),
            '%.1f' % seconds])
    return out.getvalue()


# ---------------------------------------------------------------------------------------------

def build_parser():
    parser = argparse.ArgumentParser(prog='python -m assignments.grade',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('submission', nargs='?', help="one student's folder")
    parser.add_argument('--class-dir', help='a folder holding one folder per student')
    parser.add_argument('--csv', help='with --class-dir: write the scores here, one row per '
                        'student')
    parser.add_argument('--feedback-dir', help='with --class-dir: one feedback JSON per student')
    parser.add_argument('--json', help='write the scores and reasons to this JSON file')
    parser.add_argument('--tests', default=HERE,
                        help='folder with the assignments and their tests (default: this '
                             'package: public and hidden tests in the sources, public only in '
                             'a student copy)')
    parser.add_argument('--only', nargs='+', metavar='ASSIGNMENT',
                        help='grade only these assignments (e.g. a4_iou_loss)')
    parser.add_argument('--jobs', type=int, default=1,
                        help='tests run at the same time (default 1; each uses '
                             'OMP_NUM_THREADS threads)')
    parser.add_argument('--timeout', type=float,
                        help='seconds allowed per test, instead of each test\'s own limit')
    parser.add_argument('--no-fork', action='store_true',
                        help='start a new Python process for every test instead of forking '
                             'one that has MXNet imported already (slower)')
    parser.add_argument('--verbose', action='store_true',
                        help='show (and write to the JSON files) tracebacks and output of the '
                             'public tests that failed')
    parser.add_argument('--show-hidden', action='store_true',
                        help='for the teacher: reasons (and with --verbose, tracebacks) of '
                             'hidden tests too')
    return parser


def project_root():
    """Where `utils` is imported from, for the test processes (they run elsewhere)."""
    import utils
    return os.path.dirname(os.path.dirname(os.path.abspath(utils.__file__)))


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if bool(args.submission) == bool(args.class_dir):
            raise GradeError('give one submission folder, or --class-dir with one folder per '
                             'student')
        if not os.path.isdir(args.tests):
            raise GradeError('--tests %s is not a folder' % args.tests)
        tests = read_all_tests(args.tests, args.only)
        root = project_root()
        if args.submission:
            start = time.time()
            results = grade(args.submission, tests, args.jobs, args.timeout, root,
                            fork=not args.no_fork)
            shown = feedback(results, args.show_hidden, args.verbose)
            report(shown, sys.stdout)
            if args.json:
                write_atomic(args.json, to_json(feedback(results, args.show_hidden, args.verbose),
                                                time.time() - start))
            return 0
        if not os.path.isdir(args.class_dir):
            raise GradeError('--class-dir %s is not a folder' % args.class_dir)
        students = sorted(d for d in os.listdir(args.class_dir)
                          if os.path.isdir(os.path.join(args.class_dir, d))
                          and not d.startswith('.'))
        if not students:
            raise GradeError('%s holds no student folder' % args.class_dir)
        assignments = sorted({t.assignment for t in tests})
        rows = []
        server = None if args.no_fork else ForkServer(root)
        for student in students:
            start = time.time()
            results = grade(os.path.join(args.class_dir, student), tests, args.jobs,
                            args.timeout, root, server, fork=not args.no_fork)
            seconds = time.time() - start
            rows.append((student, results, seconds))
            per = totals(results)
            print('%-20s %5g/%g  (%.1f s)' % (student, sum(g for g, _ in per.values()),
                                              sum(m for _, m in per.values()), seconds))
            if args.feedback_dir:
                write_atomic(os.path.join(args.feedback_dir, student + '.json'),
                             to_json(feedback(results, args.show_hidden, args.verbose), seconds))
        if server is not None:
            server.close()
        text = class_csv(rows, assignments)
        if args.csv:
            write_atomic(args.csv, text)
            print('scores written to %s' % args.csv)
        else:
            sys.stdout.write(text)
        return 0
    except (GradeError, markers.MarkerError) as err:
        print('error: %s' % err, file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
