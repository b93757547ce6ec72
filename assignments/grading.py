"""Grading a submission: the grader's set-up, then per student a copy of each assignment's
folder, its probes run in the sandbox (assignments.probe_runs) and each test's check run on
what they handed back, in a check process (assignments.checks). Every test gets a record
(`new_result`), which assignments.reports writes out."""
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from assignments import checks, notebooks, sandbox, shown
from assignments.probe_runs import Job, probe_slots, run_probes
from assignments.submissions import Missing, Refused, submission_source
from assignments.tests_files import GradeError
from utils.errors import one_line

HERE = os.path.dirname(os.path.abspath(__file__))


def new_result(test):
    """The record of one test: a single function can write any number of them out."""
    return {'assignment': test.assignment, 'test': test.name, 'hidden': test.hidden,
            'max_points': test.points, 'points': 0, 'status': None, 'reason': '',
            'traceback': '', 'output': '', 'seconds': 0.0}


def check(test, observation):
    """The record of `test`, its check run in a check process on the probe's observation."""
    result = new_result(test)
    result['output'] = observation.output
    if observation.status != 'ok':
        result.update(status=observation.status, reason=observation.message,
                      seconds=observation.seconds)
        return result
    start = time.time()
    passed, reason, trace = checks.checkers().run(test.tests_file, test.name,
                                                  observation.payload)
    result.update(status='passed' if passed else 'failed', points=test.points if passed else 0,
                  reason=reason, traceback=trace)
    result['seconds'] = round(observation.seconds + time.time() - start, 2)
    return result


_box = {}


def default_sandbox(disposable=None):
    """The grader's sandbox (disposable: see sandbox.Sandbox; None: from the environment)."""
    if disposable not in _box:
        import atexit
        _box[disposable] = sandbox.Sandbox(hide=[HERE], disposable=disposable)
        atexit.register(_box[disposable].close)
    return _box[disposable]


def grade(submission_dir, tests, jobs=1, timeout=None, box=None, record_calls=False):
    """Results of every test, in the order of `tests` (records, see new_result)."""
    if not os.path.isdir(submission_dir):
        raise GradeError('%s is not a folder: give the folder of one student\'s submission'
                         % submission_dir)
    box = box or default_sandbox()
    slots = probe_slots(jobs)
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
        return None, 'ungradable: %s' % one_line(err, 200, named=True)


def setup(tests, box=None):
    """The grader's own set-up, before any student is scored: each tests file's prepare()
    (weights, data) and a probe process that starts. Raises GradeError naming the cause."""
    box = box or default_sandbox()
    if box.refusal():  # fail closed: without a sandbox, nothing of the student's runs
        raise GradeError(box.refusal())
    for path in sorted({t.tests_file for t in tests}):
        what = os.path.basename(os.path.dirname(path))
        try:  # in a check process, where the checks will run
            checks.checkers().load(path)
        except checks.SetupError as err:
            raise GradeError('setting up %s failed, nobody was graded: %s' % (what, err))
    problem = box.self_test()
    if problem:
        raise GradeError('the sandbox does not work here, nobody was graded: %s' % problem)
    return box
