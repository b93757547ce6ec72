"""Build the student and autograder versions of the assignments; check the reference solutions.

    python -m assignments.build [--out dist] [--check] [--jobs N]

OUT/student/assignments/     the grader, and per assignment: statement.md, the file to complete
                             (solutions replaced by `raise NotImplementedError()`), public_tests.py
OUT/autograder/assignments/  the grader, and per assignment: statement.md, the reference
                             solution, tests.py (public and hidden tests)

With --check, the reference solutions in OUT/autograder are graded with every test and the
build fails unless they score full marks. Both folders are written next to their final place
and renamed into it, so an interrupted build leaves the previous one whole.
"""
import argparse
import os
import shutil
import sys
import tempfile

from assignments import grade, markers

HERE = os.path.dirname(os.path.abspath(__file__))
FRAMEWORK = ('__init__.py', 'grade.py', 'runner.py', 'sandbox.py', 'testing.py', 'markers.py',
             'build.py')
STUDENT_README = """# Assignments

Each folder holds a statement (statement.md), the file to complete and its public tests.
Replace every `raise NotImplementedError()` with your code. Check your work with

    python -m assignments.grade .

run from this folder, in the project's Python environment (it needs `utils` and MXNet).
Your teacher grades with more tests than the public ones.
"""


class BuildError(Exception):
    """Shown as one line."""


def assignment_folders(source=HERE):
    return sorted(d for d in os.listdir(source) if grade.ASSIGNMENT_DIR.match(d)
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
    hidden_names = []
    for name in assignment_folders(source):
        folder = os.path.join(source, name)
        tests = grade.read_tests(folder)
        submission_file = tests[0].submission_file
        hidden_names += [t.name for t in tests if t.hidden]
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
        _write(os.path.join(autograder, submission_file),
               markers.reference_version(solution, where))
        shutil.copy2(os.path.join(folder, 'tests.py'), autograder)
        for extra in sorted(os.listdir(folder)):  # reference data files, if any
            if extra.endswith(('.npz', '.npy', '.json', '.csv')):
                shutil.copy2(os.path.join(folder, extra), autograder)
    leaks = [n for n in hidden_names if _mentions(os.path.join(out, 'student'), n)]
    if leaks:
        raise BuildError('hidden tests found in the student version: %s' % ', '.join(leaks))
    return os.path.join(out, 'student'), os.path.join(out, 'autograder')


def _mentions(folder, word):
    for root, _, files in os.walk(folder):
        for name in files:
            if name.endswith(('.py', '.md')) and word in _read(os.path.join(root, name)):
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
    """Grade the reference solutions with every test; the results that are not full marks."""
    root = os.path.join(autograder, 'assignments')
    tests = grade.read_all_tests(root)
    results = grade.grade(root, tests, jobs, timeout, grade.project_root())
    return results, [r for r in results if r['status'] != 'passed']


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
    except (BuildError, markers.MarkerError, grade.GradeError, OSError) as err:
        print('error: %s' % err, file=sys.stderr)
        return 2
    print('built %s and %s' % (student, autograder))
    if args.check:
        results, failed = check_reference(autograder, args.jobs)
        grade.report(results, sys.stdout)
        if failed:
            print('error: the reference solutions fail %d test(s): %s' % (
                len(failed), ', '.join('%s/%s' % (r['assignment'], r['test']) for r in failed)),
                file=sys.stderr)
            return 1
        print('reference solutions: full marks on all %d tests' % len(results))
    return 0


if __name__ == '__main__':
    sys.exit(main())
