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

This module is the command line. The grader's parts, each importing only those before it:
tests_files (reading the tests), submissions (the student's files), observations (what a
probe hands back), probe_runs (probe processes and their channel), checks (the check
processes), grading (a submission, a class's student, the set-up), reports (what is shown
and written).
"""
import argparse
import os
import sys
import time

from assignments import gradescope, grading, markers, reports, sandbox, shown
from assignments.tests_files import GradeError, read_all_tests
from utils.errors import OneLineParser

HERE = os.path.dirname(os.path.abspath(__file__))


def positive_seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not value > 0:
        raise argparse.ArgumentTypeError('%r: give the seconds allowed per test, more than 0'
                                         % text)
    return value


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
    # The probe processes share the CPUs (utils.threads); the check process runs with a fixed
    # count of its own (assignments.checks), so verdicts do not depend on the load.
    os.environ.update(sandbox.thread_settings(1))  # before MXNet loads
    grading.default_sandbox().jobs = args.jobs
    tests = read_all_tests(args.tests, args.only)
    if args.submission and not os.path.isdir(args.submission):
        raise GradeError('%s is not a folder: give the folder of one student\'s submission'
                         % args.submission)
    if args.class_dir and not os.path.isdir(args.class_dir):
        raise GradeError('--class-dir %s is not a folder' % args.class_dir)
    disposable = True if args.disposable_container else None
    box = grading.setup(tests, grading.default_sandbox(disposable))
    print(box.describe(), file=sys.stderr)
    if args.submission:
        start = time.time()
        results = grading.grade(args.submission, tests, args.jobs, args.timeout, box)
        visible = reports.feedback(results, args.show_hidden, args.verbose)
        reports.report(visible, sys.stdout)
        seconds = reports.shown_seconds(visible, time.time() - start)
        if args.json:
            reports.write_text(args.json, reports.to_json(visible, seconds))
        if args.gradescope:
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
        results, note = grading.grade_student(os.path.join(args.class_dir, student), tests,
                                              args.jobs, args.timeout, box)
        seconds = time.time() - start
        rows.append((student, results, seconds, note))
        per = reports.totals(results or [])
        print('%-20s %5g/%g  (%.1f s)%s' % (shown.line(student), sum(g for g, _ in per.values()),
                                            sum(m for _, m in per.values()), seconds,
                                            '  ' + shown.line(note) if note else ''))
        if (args.verbose or args.show_hidden) and results is not None:  # the teacher's view
            reports.report(reports.feedback(results, args.show_hidden, args.verbose),
                           sys.stdout)
        if args.feedback_dir and results is not None:
            mine = reports.student_feedback(results, args.verbose)
            reports.write_text(os.path.join(args.feedback_dir, student + '.json'),
                               reports.to_json(mine, reports.shown_seconds(mine, seconds)))
        if args.csv:  # rewritten whole after each student: a crash keeps every row so far
            reports.write_text(args.csv, reports.class_csv(rows, assignments))
    if args.csv:
        print('scores written to %s' % args.csv)
    else:
        sys.stdout.write(reports.class_csv(rows, assignments))
    return 0


if __name__ == '__main__':
    sys.exit(main())
