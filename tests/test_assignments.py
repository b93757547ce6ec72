"""The classroom assignments: build, reference solutions, blanks, planted mistakes, and a class
run that never breaks.

The student's code runs in sandboxed probe processes (forked from one prepared process where
bubblewrap runs as root); the checks run in the grader. Submissions are graded only on the
assignments a case is about.
"""
import csv
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest

from assignments import build, grade, grading, markers, tests_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOBS = 2
EXPECTED_POINTS = {'a1_data_parallel': 10, 'a2_finetune_net': 10, 'a3_imagenet_row': 7,
                   'a4_iou_loss': 9, 'a5_freeze_base': 10}


@pytest.fixture(scope='module')
def dist(tmp_path_factory):
    """What `make assignments` builds, in a temporary folder."""
    out = tmp_path_factory.mktemp('dist')
    student, autograder = build.build(str(out))
    return {'out': str(out), 'student': student, 'autograder': autograder,
            'root': os.path.join(autograder, 'assignments'),
            'tests': tests_files.read_all_tests(os.path.join(autograder, 'assignments'))}


def read(path):
    with open(path) as f:
        return f.read()


def by_test(results):
    return {r['test']: r for r in results}


def score(results):
    return sum(r['points'] for r in results)


def replace(path, old, new):
    text = path.read_text()
    assert old in text, '%s does not contain %r' % (path, old)
    path.write_text(text.replace(old, new))


def reference_with(dist, tmp_path, name, assignment, old, new):
    """The reference solutions with one mistake planted in one assignment's file."""
    folder = tmp_path / name
    shutil.copytree(dist['root'], str(folder))
    tests = [t for t in dist['tests'] if t.assignment == assignment]
    replace(folder / assignment / tests[0].submission_file, old, new)
    return folder, tests


def grader(*args, **kwargs):
    return subprocess.run([sys.executable, '-m', 'assignments.grade'] + [str(a) for a in args],
                          cwd=ROOT, capture_output=True, text=True, timeout=900, **kwargs)


def test_build_student_and_autograder_versions(dist):
    student = os.path.join(dist['student'], 'assignments')
    assert sorted(EXPECTED_POINTS) == build.assignment_folders(dist['root'])
    hidden = [t for t in dist['tests'] if t.hidden]
    assert len({t.assignment for t in hidden}) == 5, 'every assignment has hidden tests'
    for name in EXPECTED_POINTS:
        tests = [t for t in dist['tests'] if t.assignment == name]
        assert sum(t.points for t in tests) == EXPECTED_POINTS[name]
        blank = read(os.path.join(student, name, tests[0].submission_file))
        solution = read(os.path.join(ROOT, 'assignments', name, tests[0].submission_file))
        assert 'raise NotImplementedError()' in blank and 'BEGIN SOLUTION' not in blank
        assert blank == markers.student_version(solution)
        public = read(os.path.join(student, name, 'public_tests.py'))
        assert not os.path.exists(os.path.join(student, name, 'tests.py'))
        for t in tests:
            assert (t.name in public) != t.hidden, t.name
            assert (('def %s(' % t.probe) in public) != t.probe_hidden, t.probe
        for hidden_name in build.hidden_definitions(os.path.join(ROOT, 'assignments', name,
                                                                 'tests.py')):
            assert not build._mentions(os.path.join(student, name), hidden_name), hidden_name
    assert not os.path.exists(os.path.join(student, 'build.py'))


def test_build_refuses_hidden_names_and_repeated_inputs(tmp_path):
    source = tmp_path / 'source'
    shutil.copytree(os.path.join(ROOT, 'assignments'), str(source),
                    ignore=shutil.ignore_patterns('__pycache__'))
    tests = source / 'a4_iou_loss' / 'tests.py'
    # a public probe that uses a hidden table of inputs would carry it to the students
    replace(tests, "    return {'iou': sub.iou(SAME_BOX, SAME_BOX)}",
            "    return {'iou': sub.iou(SAME_BOX, SAME_BOX), 'n': len(EDGE_CASES)}")
    with pytest.raises(build.BuildError, match='EDGE_CASES'):
        build.build_into(str(tmp_path / 'out'), str(source))
    # a hidden probe calling with a public probe's arguments is found from the recorded calls
    folder = os.path.join(ROOT, 'assignments', 'a4_iou_loss')
    probes = {t.probe: t for t in tests_files.read_tests(folder)}
    same = [['iou', ['array[1, 4]:abc', 'array[1, 4]:abc']]]
    results = [{'calls': same}, {'calls': same}, {'calls': [['iou', ['other']]]}]
    chosen = [probes['iou_same_box'], probes['iou_edge_cases'], probes['iou_unseen']]
    assert build.repeated_inputs(chosen, results) == ['a4_iou_loss/iou_edge_cases']


def test_probe_source_holds_no_check():
    text = read(os.path.join(ROOT, 'assignments', 'a4_iou_loss', 'tests.py'))
    source = tests_files.probe_source(text, ['iou_unseen', 'loss_unseen'])
    assert 'def iou_unseen' in source and 'def unseen_boxes' in source
    for absent in ('def test_', 'reference_iou', 'check_loss', 'def iou_edge_cases',
                   'assert_close(seen'):
        assert absent not in source, absent
    public = tests_files.probe_source(text, ['iou_same_box'])
    assert 'HIDDEN' not in public and '2024' not in public


def test_markers_pair_up():
    with pytest.raises(markers.MarkerError, match='x.py:2: ### END SOLUTION without'):
        markers.student_version('a = 1\n### END SOLUTION\n### BEGIN SOLUTION\n', 'x.py')
    text = 'def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n'
    assert markers.student_version(text) == \
        'def f():\n    # YOUR CODE HERE\n    raise NotImplementedError()\n'
    assert markers.reference_version(text) == 'def f():\n    return 1\n'


def test_class_reference_full_marks_untouched_zero(dist, tmp_path):
    """One CSV for a class: the reference solutions, the untouched student version and a copy
    holding a named pipe. Teacher's options on, the feedback files still student views."""
    class_dir = tmp_path / 'class'
    shutil.copytree(dist['root'], str(class_dir / 'reference' / 'assignments'))
    shutil.copytree(dist['student'], str(class_dir / 'untouched'))
    shutil.copytree(dist['student'], str(class_dir / 'with_a_pipe'))
    os.mkfifo(str(class_dir / 'with_a_pipe' / 'assignments' / 'a4_iou_loss' / 'pipe'))
    scores, feedback = tmp_path / 'scores.csv', tmp_path / 'feedback'
    run = grader('--class-dir', class_dir, '--csv', scores, '--feedback-dir', feedback,
                 '--jobs', JOBS, '--tests', dist['root'], '--show-hidden', '--verbose')
    assert run.returncode == 0, run.stderr
    rows = {row['student']: row for row in csv.DictReader(scores.read_text().splitlines())}
    assert set(rows) == {'reference', 'untouched', 'with_a_pipe'}
    for name, points in EXPECTED_POINTS.items():
        assert float(rows['reference'][name]) == points, (name, run.stdout)
        assert float(rows['untouched'][name]) == float(rows['with_a_pipe'][name]) == 0, name
    assert float(rows['reference']['total']) == float(rows['reference']['max_total']) == 46
    for name in ('untouched', 'reference'):
        data = json.loads((feedback / (name + '.json')).read_text())
        for r in data['tests']:
            if r['hidden']:  # only pass / fail and points, whatever the teacher asked to see
                assert r['reason'] == 'hidden test' and r['traceback'] == r['output'] == '', r
            elif name == 'untouched':
                assert r['status'] == 'not_implemented' and r['points'] == 0, r
    # the teacher's terminal did get the hidden reasons
    assert 'not implemented yet' in run.stdout
    for path in [scores] + list(feedback.iterdir()):
        assert stat.S_IMODE(os.stat(str(path)).st_mode) & 0o044 == 0o044, path


PLANTED = {
    # a stale gradient for the idle device: no zeroing, stale gradients ignored
    'a1_stale_gradient': ('a1_data_parallel', (
        "    for ctx in ctx_list[len(xs):]:\n"
        "        with autograd.record():\n"
        "            zero = nd.add_n(*[(p.data(ctx) * 0).sum() for p in params])\n"
        "        zero.backward()\n"
        "    trainer.step(X.shape[0])",
        "    trainer.step(X.shape[0], ignore_stale_grad=True)"),
        {'test_train_unseen_last_batch_smaller_than_devices',
         'test_train_without_update_on_kvstore'}),
    # not data-parallel: the whole batch on the first device, zeros backpropagated elsewhere
    'a1_one_device': ('a1_data_parallel', (
        "    xs, ys = split_batch(X, y, ctx_list)\n"
        "    with autograd.record():\n"
        "        losses = [loss(net(x), t) for x, t in zip(xs, ys)]",
        "    xs, ys = [X.as_in_context(ctx_list[0])], [y.as_in_context(ctx_list[0])]\n"
        "    with autograd.record():\n"
        "        losses = [loss(net(x), t) for x, t in zip(xs, ys)]"),
        {'test_train_step_two_devices', 'test_train_unseen_last_batch_smaller_than_devices',
         'test_train_without_update_on_kvstore'}),
    # features trained from scratch instead of reused
    'a2_scratch_features': ('a2_finetune_net', (
        "    finetune_net.features = pretrained_net.features\n"
        "    finetune_net.output.initialize(init.Xavier())",
        "    finetune_net.initialize(init.Xavier())"),
        {'test_features_reused', 'test_other_classes_and_multiplier', 'test_few_shot_faces'}),
    # the text's row 713
    'a3_text_row': ('a3_imagenet_row', (
        "index = class_index(utils.imagenet_classes(), 'hotdog')", "index = 713"),
        {'test_hotdog_row_and_bias'}),
    # an intersection that assumes box a starts first and ends inside b: wrong for containment
    'a4_containment': ('a4_iou_loss', (
        "width = np.minimum(a[..., 1], b[..., 1]) - np.maximum(a[..., 0], b[..., 0])",
        "width = a[..., 1] - b[..., 0]"),
        {'test_iou_edge_cases', 'test_iou_unseen_boxes'}),
    # grad_req alone: BatchNorm keeps updating its statistics in training
    'a5_grad_req_only': ('a5_freeze_base', (
        "            b._kwargs['use_global_stats'] = True", "            pass"),
        {'test_step_leaves_base_unchanged', 'test_step_nested_and_hybridized',
         'test_training_output_equals_inference_output'}),
    # not a mistake: float32 arithmetic, which the statement allows, loses nothing
    'a4_float32': ('a4_iou_loss', (
        "    a = np.asarray(boxes_a, dtype=np.float64)\n"
        "    b = np.asarray(boxes_b, dtype=np.float64)",
        "    a = np.asarray(boxes_a, dtype=np.float32)\n"
        "    b = np.asarray(boxes_b, dtype=np.float32)"), set()),
}


@pytest.mark.parametrize('case', sorted(PLANTED))
def test_planted_mistake_loses_exactly_its_points(dist, tmp_path, case):
    """Only the tests the mistake breaks fail. The other assignments' files are the reference
    ones, which score full marks (test above): grading is per file."""
    assignment, (old, new), breaks = PLANTED[case]
    folder, tests = reference_with(dist, tmp_path, 'planted', assignment, old, new)
    grading.setup(tests)
    results = grading.grade(str(folder), tests, JOBS)
    failed = {r['test'] for r in results if r['status'] != 'passed'}
    assert failed == breaks, by_test(results)
    lost = sum(t.points for t in tests if t.name in breaks)
    assert score(results) == EXPECTED_POINTS[assignment] - lost


def a4_student(dist, class_dir, name, in_iou=''):
    folder = class_dir / name
    shutil.copytree(dist['student'], str(folder))
    path = folder / 'assignments' / 'a4_iou_loss' / 'boxes.py'
    text = read(os.path.join(dist['root'], 'a4_iou_loss', 'boxes.py'))
    if in_iou:
        text = 'import os, time\n' + text.replace(
            '    a = np.asarray(boxes_a', in_iou + '\n    a = np.asarray(boxes_a')
    path.write_text(text)


SLEEPER = ('    if os.fork() == 0:\n        os.setsid()\n        time.sleep(3600)\n'
           '    time.sleep(3600)')


def test_csv_rows_are_written_as_students_finish(dist, tmp_path):
    """The grader killed while grading the second student: the first one's row is kept."""
    class_dir = tmp_path / 'class'
    a4_student(dist, class_dir, 'a_first')
    a4_student(dist, class_dir, 'b_slow', '    time.sleep(3600)')
    scores = tmp_path / 'scores.csv'
    process = subprocess.Popen(
        [sys.executable, '-m', 'assignments.grade', '--class-dir', str(class_dir), '--csv',
         str(scores), '--only', 'a4_iou_loss', '--tests', dist['root'], '--timeout', '300'],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.time() + 600
        while time.time() < end and not scores.exists() and process.poll() is None:
            time.sleep(0.5)
        assert process.poll() is None, 'the grader ended before the slow student'
        process.kill()
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    rows = list(csv.DictReader(scores.read_text().splitlines()))
    assert [(r['student'], r['total']) for r in rows] == [('a_first', '9')]


def test_one_failing_student_is_marked_and_the_run_goes_on(dist, tmp_path, monkeypatch):
    """A fault while grading one student (here: made to happen) marks that row ungradable."""
    class_dir = tmp_path / 'class'
    for name in ('a', 'b', 'c'):
        (class_dir / name).mkdir(parents=True)
    real = grading.grade

    def faulty(folder, *args, **kwargs):
        if os.path.basename(folder) == 'b':
            raise RuntimeError('disk on fire')
        return real(folder, *args, **kwargs)
    monkeypatch.setattr(grading, 'grade', faulty)
    scores = tmp_path / 'scores.csv'
    assert grade.main(['--class-dir', str(class_dir), '--csv', str(scores), '--only',
                       'a4_iou_loss', '--tests', dist['root']]) == 0
    rows = {r['student']: r for r in csv.DictReader(scores.read_text().splitlines())}
    assert set(rows) == {'a', 'b', 'c'}
    assert rows['b']['note'] == 'ungradable: RuntimeError: disk on fire'
    assert rows['a']['note'] == rows['c']['note'] == ''


def test_setup_failure_stops_the_run_before_scoring(dist, tmp_path):
    # Neither $MXNET_HOME nor the per-user cache a read-only $MXNET_HOME falls back to is usable.
    class_dir = tmp_path / 'class'
    shutil.copytree(dist['root'], str(class_dir / 'reference' / 'assignments'))
    not_a_folder = tmp_path / 'file'
    not_a_folder.write_text('')
    scores = tmp_path / 'scores.csv'
    run = grader('--class-dir', class_dir, '--csv', scores, '--only', 'a3_imagenet_row',
                 '--tests', dist['root'],
                 env=dict(os.environ, MXNET_HOME=str(not_a_folder / 'mxnet'),
                          XDG_CACHE_HOME=str(not_a_folder / 'cache'),
                          MPLCONFIGDIR=str(tmp_path / 'matplotlib')))
    assert run.returncode == 2
    # The fallback's warning may come first; the run ends on one error line.
    lines = run.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith('error:')] == lines[-1:], run.stderr
    assert lines[-1].startswith('error: setting up a3_imagenet_row failed'), run.stderr
    assert 'Traceback' not in run.stderr
    assert not scores.exists() and 'reference' not in run.stdout


def test_grade_cli_one_submission_json_and_errors(dist, tmp_path):
    scores = tmp_path / 'scores.json'
    run = grader(dist['student'], '--json', scores, '--only', 'a4_iou_loss', '--jobs', JOBS)
    assert run.returncode == 0, run.stderr
    assert 'Traceback' not in run.stdout + run.stderr
    assert run.stderr.startswith('sandbox guards up: ')
    data = json.loads(scores.read_text())
    assert data['total'] == 0 and data['max_total'] == EXPECTED_POINTS['a4_iou_loss']
    assert 'test_iou_same_box' in run.stdout and 'not implemented yet' in run.stdout
    for args in ([str(tmp_path / 'nope')], [dist['student'], '--timeout', '0'],
                 [dist['student'], '--jobs', '0']):
        bad = grader(*args)
        assert bad.returncode == 2, args
        lines = bad.stderr.strip().splitlines()
        assert 'Traceback' not in bad.stderr and len(lines) == 1 and 'error' in lines[0], \
            bad.stderr


def _sandboxed_processes(marker):
    """pids of processes of a sandbox user, or whose command line names marker (a probe
    process started without bubblewrap runs as the grader's user)."""
    found = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/status' % pid) as f:
                uid = [int(line.split()[1]) for line in f if line.startswith('Uid:')][0]
            with open('/proc/%s/cmdline' % pid, 'rb') as f:
                cmdline = f.read().decode('utf-8', 'replace')
        except (OSError, IndexError):
            continue
        if 64000 <= uid < 64100 or marker in cmdline:
            found.append(pid)
    return found


def test_ctrl_c_stops_every_probe_process(dist, tmp_path):
    """A probe sleeping, with a child in a session of its own: after Ctrl-C, nothing is left."""
    class_dir = tmp_path / 'class'
    a4_student(dist, class_dir, 'sleeper', SLEEPER)
    work = tmp_path / 'grader-tmp'
    work.mkdir()
    process = subprocess.Popen(
        [sys.executable, '-m', 'assignments.grade', '--class-dir', str(class_dir), '--only',
         'a4_iou_loss', '--tests', dist['root'], '--timeout', '300'], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ, TMPDIR=str(work)))
    try:
        end = time.time() + 300
        while time.time() < end and len(_sandboxed_processes(str(work))) < 2:
            time.sleep(0.5)
        assert _sandboxed_processes(str(work)), 'the probe never started'
        time.sleep(1)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
        assert 'interrupted' in process.stderr.read().decode()
        process.stderr.close()
        end = time.time() + 10
        while time.time() < end and _sandboxed_processes(str(work)):
            time.sleep(0.2)
        assert not _sandboxed_processes(str(work))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if not process.stderr.closed:
            process.stderr.close()
