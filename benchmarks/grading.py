"""How long the grader takes: a generated class graded as a teacher would, with the sandbox on.

    python -m benchmarks.grading [--students 3] [--jobs 2] [--json grading.json]

Builds the assignments into a temporary folder, then a class of N copies of the reference
solutions, the untouched student version and one submission per planted mistake (the
mistakes of tests/test_assignments.py), and grades it with `python -m assignments.grade
--class-dir ... --feedback-dir ...` in a child process. Prints seconds per submission, per
assignment and per test (from the feedback files), the sandbox guards that were up, the load
average before and after and the peak memory of the grader and of its probe processes.
A timing, so printed here, not asserted by a test.
"""
import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def planted():
    sys.path.insert(0, ROOT)
    from tests.test_assignments import PLANTED
    return PLANTED


def make_class(out, students):
    from assignments import build
    student, autograder = build.build(os.path.join(out, 'dist'))
    root = os.path.join(autograder, 'assignments')
    class_dir = os.path.join(out, 'class')
    for i in range(students):
        shutil.copytree(root, os.path.join(class_dir, 'reference%02d' % i, 'assignments'))
    shutil.copytree(student, os.path.join(class_dir, 'untouched'))
    for name, (assignment, (old, new), _) in sorted(planted().items()):
        folder = os.path.join(class_dir, 'planted_' + name, 'assignments')
        shutil.copytree(root, folder)
        path = os.path.join(folder, assignment, [
            f for f in os.listdir(os.path.join(folder, assignment))
            if f.endswith('.py') and f != 'tests.py'][0])
        with open(path) as f:
            text = f.read()
        with open(path, 'w') as f:
            f.write(text.replace(old, new))
    return class_dir, root


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--students', type=int, default=3,
                        help='copies of the reference solutions in the class')
    parser.add_argument('--jobs', type=int, default=2, help="the grader's --jobs")
    parser.add_argument('--json', help='write the figures here')
    args = parser.parse_args(argv)
    threads = os.environ.get('OMP_NUM_THREADS', '(unset)')
    print('load average at start: %.2f %.2f %.2f' % os.getloadavg())
    with tempfile.TemporaryDirectory() as out:
        class_dir, root = make_class(out, args.students)
        scores, feedback = os.path.join(out, 'scores.csv'), os.path.join(out, 'feedback')
        start = time.time()
        run = subprocess.run(
            [sys.executable, '-m', 'assignments.grade', '--class-dir', class_dir, '--csv',
             scores, '--feedback-dir', feedback, '--jobs', str(args.jobs), '--tests', root],
            cwd=ROOT, capture_output=True, text=True)
        wall = time.time() - start
        if run.returncode != 0:
            sys.exit('the grader failed: %s' % run.stderr.strip()[-500:])
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(scores) as f:
            rows = list(csv.DictReader(f))
        tests = {}
        for row in rows:
            with open(os.path.join(feedback, row['student'] + '.json')) as f:
                tests[row['student']] = json.load(f)['tests']
    guards = [line for line in run.stderr.splitlines() if line.startswith('sandbox guards')]
    print(guards[0] if guards else 'no guards line')
    print('\n%-26s %8s %8s' % ('submission', 'points', 'seconds'))
    for row in rows:
        print('%-26s %5s/%-3s %8s' % (row['student'], row['total'], row['max_total'],
                                      row['seconds']))
    full = [float(r['seconds']) for r in rows if r['student'].startswith('reference')]
    per_assignment, per_test = {}, {}
    for student, results in tests.items():
        if not student.startswith('reference'):
            continue
        for r in results:
            if r['seconds'] is None:  # a hidden test: its time is not in the student's file
                continue
            per_assignment.setdefault(r['assignment'], []).append(r['seconds'])
            per_test.setdefault((r['assignment'], r['test']), []).append(r['seconds'])
    print('\nfull correct submission: %.1f s (mean of %d), whole class %.1f s for %d '
          'submissions' % (sum(full) / len(full), len(full), wall, len(rows)))
    print('\nper assignment of a full correct submission (its public tests\' seconds added up; '
          'the feedback files keep no time of a hidden test):')
    for assignment, seconds in sorted(per_assignment.items()):
        print('  %-18s %6.2f' % (assignment, sum(seconds) / len(full)))
    print('\nper test of a full correct submission (probe + check seconds; a probe shared by '
          'several checks counts for each, and probes run %d at a time):' % args.jobs)
    for (assignment, test), seconds in sorted(per_test.items()):
        print('  %-18s %-48s %6.2f' % (assignment, test, sum(seconds) / len(seconds)))
    peak = children.ru_maxrss / 1024
    print('\npeak memory: %.0f MB (the largest process among the grader and its children)'
          % peak)
    print('OMP_NUM_THREADS=%s; load average at end: %.2f %.2f %.2f'
          % ((threads,) + os.getloadavg()))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'wall_seconds': wall, 'rows': rows, 'full_submission_seconds': full,
                       'per_test_seconds': {'%s/%s' % k: sum(v) / len(v)
                                            for k, v in per_test.items()},
                       'peak_memory_mb': peak, 'guards': guards, 'jobs': args.jobs,
                       'omp_num_threads': threads, 'load_at_end': os.getloadavg()},
                      f, indent=1)
            f.write('\n')


if __name__ == '__main__':
    main()
