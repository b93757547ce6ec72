"""Build the student and autograder versions of the assignments; check the reference solutions.

    python -m assignments.build [--out dist] [--check] [--jobs N]

OUT/student/assignments/     the grader, and per assignment: statement.md, the file to complete
                             (solutions replaced by `raise NotImplementedError()`), public_tests.py,
                             and the same as a notebook (`boxes.ipynb` next to `boxes.py`)
OUT/autograder/assignments/  the grader, and per assignment: statement.md, the reference
                             solution, tests.py (public and hidden tests)

The build fails when anything defined in a hidden-test block (a probe, a check, a helper, a
table of inputs) is named in the student version. With --check, the reference solutions in
OUT/autograder are graded with every test and the build fails unless they score full marks,
or when a hidden probe calls a student function with the same arguments as a public probe
(hidden tests must use inputs the student build does not hold). Both folders are written
next to their final place and renamed into it, so an interrupted build leaves the previous
one whole.
"""
import argparse
import json
import os
import re
import shutil
import sys
import tempfile

from assignments import grading, markers, notebooks, reports
from assignments.tests_files import ASSIGNMENT_DIR, GradeError, read_all_tests, read_tests

HERE = os.path.dirname(os.path.abspath(__file__))
FRAMEWORK = ('__init__.py', 'grade.py', 'tests_files.py', 'submissions.py', 'observations.py',
             'probe_runs.py', 'checks.py', 'grading.py', 'reports.py', 'runner.py',
             'sandbox.py', 'testing.py', 'markers.py', 'build.py', 'notebooks.py',
             'gradescope.py', 'shown.py')
STUDENT_README = """# Assignments

Each folder holds a statement (statement.md), the file to complete and its public tests.
Replace every `raise NotImplementedError()` with your code. Each file to complete also comes as
a notebook of the same name (`boxes.ipynb` next to `boxes.py`): work in either one; the notebook
says how it is graded. Check your work with

    python -m assignments.grade .

run from this folder, in the project's Python environment (it needs `utils` and MXNet).
Your teacher grades with more tests than the public ones.
"""


class BuildError(Exception):
    """Shown as one line."""


def assignment_folders(source=HERE):
    return sorted(d for d in os.listdir(source) if ASSIGNMENT_DIR.match(d)
                  and os.path.isdir(os.path.join(source, d)))


def _read(path):
    with open(path) as f:
        return f.read()


def _write(path, text):
    with open(path, 'w') as f:
        f.write(text)


def build_into(out, source=HERE):
    """Write student/ and autograder/ under `out` (which must not exist yet)."""
    student_root = os.path.join(out, 'student', 'assignments')
    grader_root = os.path.join(out, 'autograder', 'assignments')
    for root in (student_root, grader_root):
        os.makedirs(root)
        for name in FRAMEWORK:
            if name != 'build.py' or root == grader_root:
                shutil.copy2(os.path.join(source, name), root)
    _write(os.path.join(out, 'student', 'README.md'), STUDENT_README)
    leaks = []
    for name in assignment_folders(source):
        folder = os.path.join(source, name)
        tests = read_tests(folder)
        submission_file = tests[0].submission_file
        hidden_names = [t.name for t in tests if t.hidden] + hidden_definitions(
            os.path.join(folder, 'tests.py'))
        solution = _read(os.path.join(folder, submission_file))
        tests_text = _read(os.path.join(folder, 'tests.py'))
        student, autograder = (os.path.join(r, name) for r in (student_root, grader_root))
        for path in (student, autograder):
            os.makedirs(path)
            shutil.copy2(os.path.join(folder, 'statement.md'), path)
        where = os.path.join(folder, submission_file)
        _write(os.path.join(student, submission_file), markers.student_version(solution, where))
        _write(os.path.join(student, 'public_tests.py'),
               markers.public_tests(tests_text, os.path.join(folder, 'tests.py')))
        notebooks.write_notebook(student)  # the statement, the file and public tests as one
        _write(os.path.join(autograder, submission_file),
               markers.reference_version(solution, where))
        shutil.copy2(os.path.join(folder, 'tests.py'), autograder)
        for extra in sorted(os.listdir(folder)):  # reference data files, if any
            if extra.endswith(('.npz', '.npy', '.json', '.csv')):
                shutil.copy2(os.path.join(folder, extra), autograder)
        leaks += ['%s/%s' % (name, n) for n in hidden_names if _mentions(student, n)]
    if leaks:
        raise BuildError('hidden tests found in the student version: %s' % ', '.join(leaks))
    return os.path.join(out, 'student'), os.path.join(out, 'autograder')


def hidden_definitions(path):
    """Names of the top-level functions, classes and constants in hidden-test blocks."""
    import ast
    text = _read(path)
    hidden = markers.hidden_lines(text, path)
    names = []
    for node in ast.parse(text, path).body:
        if node.lineno not in hidden:
            continue
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return names


def _mentions(folder, word):
    """Whether a Python file in `folder` uses the name `word`, or another file holds it."""
    import ast
    for root, _, files in os.walk(folder):
        for name in files:
            text = _read(os.path.join(root, name))
            if name.endswith('.py'):
                tree = ast.parse(text)
                used = {getattr(n, 'id', None) or getattr(n, 'name', None) or
                        getattr(n, 'attr', None) for n in ast.walk(tree)}
                if word in used:
                    return True
            elif re.search(r'\b%s\b' % re.escape(word), text):
                return True
    return False


def build(out, source=HERE):
    """Build under `out`, replacing the previous student/ and autograder/ only when done."""
    os.makedirs(out, exist_ok=True)
    staging = tempfile.mkdtemp(prefix='.build-', dir=out)
    try:
        os.rmdir(staging)
        build_into(staging, source)
        for part in ('student', 'autograder'):
            final = os.path.join(out, part)
            if os.path.exists(final):
                old = final + '.old'
                shutil.rmtree(old, ignore_errors=True)
                os.rename(final, old)
                os.rename(os.path.join(staging, part), final)
                shutil.rmtree(old)
            else:
                os.rename(os.path.join(staging, part), final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return os.path.join(out, 'student'), os.path.join(out, 'autograder')


def check_reference(autograder, jobs=1, timeout=None):
    """Grade the reference solutions with every test: (results, those not full marks,
    hidden probes that call with a public probe's arguments)."""
    root = os.path.join(autograder, 'assignments')
    tests = read_all_tests(root)
    grading.setup(tests)
    results = grading.grade(root, tests, jobs, timeout, record_calls=True)
    return results, [r for r in results if r['status'] != 'passed'], \
        repeated_inputs(tests, results)


def repeated_inputs(tests, results):
    """'assignment/probe' of each hidden probe whose call of a student function (name and
    argument fingerprints, recorded by the probe process) a public probe also makes."""
    public, hidden = {}, {}
    for t, r in zip(tests, results):
        for name, args in r.get('calls', []):
            key = (t.assignment, name, json.dumps(args))
            (hidden if t.probe_hidden else public).setdefault(key, set()).add(t.probe)
    return sorted('%s/%s' % (key[0], p) for key in hidden if key in public
                  for p in hidden[key])


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m assignments.build',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='dist', help='where student/ and autograder/ go')
    parser.add_argument('--check', action='store_true',
                        help='grade the reference solutions with every test: full marks or fail')
    parser.add_argument('--jobs', type=int, default=1, help='tests run at the same time')
    args = parser.parse_args(argv)
    try:
        student, autograder = build(args.out)
    except (BuildError, markers.MarkerError, GradeError, OSError) as err:
        print('error: %s' % err, file=sys.stderr)
        return 2
    except ImportError as err:  # nbformat missing: one line; another import error is a bug
        if err.name != 'nbformat':
            raise
        print('error: %s' % err, file=sys.stderr)
        return 2
    print('built %s and %s' % (student, autograder))
    if args.check:
        try:
            results, failed, repeated = check_reference(autograder, args.jobs)
        except GradeError as err:
            print('error: %s' % err, file=sys.stderr)
            return 2
        reports.report(results, sys.stdout)
        if repeated:
            print('error: these hidden probes call the student\'s code with a public '
                  'probe\'s inputs: %s' % ', '.join(repeated), file=sys.stderr)
            return 1
        if failed:
            print('error: the reference solutions fail %d test(s): %s' % (
                len(failed), ', '.join('%s/%s' % (r['assignment'], r['test']) for r in failed)),
                file=sys.stderr)
            return 1
        print('reference solutions: full marks on all %d tests' % len(results))
    return 0


if __name__ == '__main__':
    sys.exit(main())
