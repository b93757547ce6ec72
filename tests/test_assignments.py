"""The classroom assignments: build, reference solutions, blanks, planted mistakes, misbehaviour.

Every test of an assignment runs in its own process (about 2 s each, most of it importing
MXNet), so submissions are graded only on the assignments a case is about, two at a time.
"""
import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

from assignments import build, grade, markers

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
            'tests': grade.read_all_tests(os.path.join(autograder, 'assignments'))}


def read(path):
    with open(path) as f:
        return f.read()


def by_test(results):
    return {r['test']: r for r in results}


def score(results):
    return sum(r['points'] for r in results)


def student_copy(dist, tmp_path, name):
    """A fresh copy of the handed-out folder, as a student would submit it."""
    folder = tmp_path / name
    shutil.copytree(dist['student'], str(folder))
    return folder


def replace(path, old, new):
    text = path.read_text()
    assert old in text, '%s does not contain %r' % (path, old)
    path.write_text(text.replace(old, new))


def reference_with(dist, tmp_path, name, assignment, old, new):
    """The reference solutions with one mistake planted in one assignment's file."""
    folder = tmp_path / name
    shutil.copytree(os.path.join(dist['autograder'], 'assignments'), str(folder))
    tests = [t for t in dist['tests'] if t.assignment == assignment]
    replace(folder / assignment / tests[0].submission_file, old, new)
    return folder, tests


def test_build_student_and_autograder_versions(dist):
    student = os.path.join(dist['student'], 'assignments')
    autograder = os.path.join(dist['autograder'], 'assignments')
    assert sorted(EXPECTED_POINTS) == build.assignment_folders(autograder)
    hidden = [t for t in dist['tests'] if t.hidden]
    assert len({t.assignment for t in hidden}) == 5, 'every assignment has hidden tests'
    for name in EXPECTED_POINTS:
        tests = [t for t in dist['tests'] if t.assignment == name]
        assert sum(t.points for t in tests) == EXPECTED_POINTS[name]
        blank = read(os.path.join(student, name, tests[0].submission_file))
        solution = read(os.path.join(ROOT, 'assignments', name,
                                     tests[0].submission_file))
        assert 'raise NotImplementedError()' in blank and 'BEGIN SOLUTION' not in blank
        assert blank == markers.student_version(solution)
        assert os.path.exists(os.path.join(student, name, 'statement.md'))
        public = read(os.path.join(student, name, 'public_tests.py'))
        assert not os.path.exists(os.path.join(student, name, 'tests.py'))
        for t in tests:
            assert (t.name in public) != t.hidden, t.name
        assert 'HIDDEN' in read(os.path.join(autograder, name, 'tests.py'))
    assert not os.path.exists(os.path.join(student, 'build.py'))


def test_markers_pair_up():
    with pytest.raises(markers.MarkerError, match='x.py:2: ### END SOLUTION without'):
        markers.student_version('a = 1\n### END SOLUTION\n### BEGIN SOLUTION\n', 'x.py')
    text = 'def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n'
    assert markers.student_version(text) == \
        'def f():\n    # YOUR CODE HERE\n    raise NotImplementedError()\n'
    assert markers.reference_version(text) == 'def f():\n    return 1\n'


def test_class_reference_full_marks_untouched_zero(dist, tmp_path):
    """One CSV for a class of two: the reference solutions and the untouched student version."""
    class_dir = tmp_path / 'class'
    class_dir.mkdir()
    shutil.copytree(os.path.join(dist['autograder'], 'assignments'),
                    str(class_dir / 'reference' / 'assignments'))
    shutil.copytree(dist['student'], str(class_dir / 'untouched'))
    scores, feedback = tmp_path / 'scores.csv', tmp_path / 'feedback'
    run = subprocess.run(
        [sys.executable, '-m', 'assignments.grade', '--class-dir', str(class_dir), '--csv',
         str(scores), '--feedback-dir', str(feedback), '--jobs', str(JOBS),
         '--tests', os.path.join(dist['autograder'], 'assignments')],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    rows = {row['student']: row for row in csv.DictReader(scores.read_text().splitlines())}
    assert set(rows) == {'reference', 'untouched'}
    for name, points in EXPECTED_POINTS.items():
        assert float(rows['reference'][name]) == points, (name, run.stdout)
        assert float(rows['untouched'][name]) == 0, name
    assert float(rows['reference']['total']) == float(rows['reference']['max_total']) == 46
    untouched = json.loads((feedback / 'untouched.json').read_text())
    for r in untouched['tests']:
        assert r['points'] == 0
        if r['hidden']:  # only pass / fail and points
            assert (r['status'], r['reason'], r['traceback']) == ('failed', 'hidden test', '')
        else:
            assert r['status'] == 'not_implemented' and r['traceback'] == '', r
    text = (feedback / 'untouched.json').read_text()
    assert 'TEXT_INDEX' not in text and 'finite difference' not in text


PLANTED = {
    # a stale gradient for the idle device: no zeroing, stale gradients ignored
    'a1_data_parallel': (
        "    for ctx in ctx_list[len(xs):]:\n"
        "        with autograd.record():\n"
        "            zero = nd.add_n(*[(p.data(ctx) * 0).sum() for p in params])\n"
        "        zero.backward()\n"
        "    trainer.step(X.shape[0])",
        "    trainer.step(X.shape[0], ignore_stale_grad=True)",
        {'test_train_unseen_last_batch_smaller_than_devices',
         'test_train_without_update_on_kvstore'}),
    # features trained from scratch instead of reused
    'a2_finetune_net': ("    finetune_net.features = pretrained_net.features\n"
                        "    finetune_net.output.initialize(init.Xavier())",
                        "    finetune_net.initialize(init.Xavier())",
                        {'test_features_reused', 'test_other_classes_and_multiplier',
                         'test_few_shot_faces'}),
    # the text's row 713
    'a3_imagenet_row': ("index = class_index(utils.imagenet_classes(), 'hotdog')", "index = 713",
                        {'test_hotdog_row_and_bias'}),
    # an intersection that assumes box a starts first and ends inside b: wrong for containment
    'a4_iou_loss': ("width = np.minimum(a[..., 1], b[..., 1]) - np.maximum(a[..., 0], b[..., 0])",
                    "width = a[..., 1] - b[..., 0]",
                    {'test_iou_edge_cases', 'test_iou_unseen_boxes'}),
    # grad_req alone: BatchNorm keeps updating its statistics in training
    'a5_freeze_base': ("            b._kwargs['use_global_stats'] = True", "            pass",
                       {'test_step_leaves_base_unchanged', 'test_step_nested_and_hybridized',
                        'test_training_output_equals_inference_output'}),
}


@pytest.mark.parametrize('assignment', sorted(PLANTED))
def test_planted_mistake_loses_exactly_its_points(dist, tmp_path, assignment):
    """Only the tests the mistake breaks fail. The other assignments' files are the reference
    ones, which score full marks (test above): grading is per file and per process."""
    old, new, breaks = PLANTED[assignment]
    folder, tests = reference_with(dist, tmp_path, 'planted', assignment, old, new)
    results = grade.grade(str(folder), tests, JOBS, project_root=ROOT)
    failed = {r['test'] for r in results if r['status'] != 'passed'}
    assert failed == breaks, by_test(results)
    lost = sum(t.points for t in tests if t.name in breaks)
    assert score(results) == EXPECTED_POINTS[assignment] - lost


def test_misbehaving_submission_never_stops_the_grader(dist, tmp_path):
    """An endless loop, a flood of output, a write outside the folder, a file that does not
    import: each loses its tests' points; every other test is graded as usual."""
    folder = student_copy(dist, tmp_path, 'misbehaving')
    outside = tmp_path / 'outside.txt'
    a3 = folder / 'assignments' / 'a3_imagenet_row' / 'imagenet_row.py'
    a3.write_text(read(os.path.join(dist['autograder'], 'assignments', 'a3_imagenet_row',
                                    'imagenet_row.py')))
    replace(a3, '    if name not in classes:', '    while True:\n        print("x" * 1000)\n'
            '    if name not in classes:')
    replace(a3, '    for name in (\'weight\', \'bias\'):',
            '    open(%r, "w").write("escaped")\n    for name in (\'weight\', \'bias\'):'
            % str(outside))
    a4 = folder / 'assignments' / 'a4_iou_loss' / 'boxes.py'
    a4.write_text(read(os.path.join(dist['autograder'], 'assignments', 'a4_iou_loss',
                                    'boxes.py')))
    replace(a4, '    scale = nd.array(', '    while True:\n        pass\n    scale = nd.array(')
    (folder / 'assignments' / 'a5_freeze_base' / 'freeze.py').write_text('def freeze(block)\n')
    tests = [t for t in dist['tests'] if t.assignment in
             ('a3_imagenet_row', 'a4_iou_loss', 'a5_freeze_base')]
    results = by_test(grade.grade(str(folder), tests, JOBS, timeout=12, project_root=ROOT))
    assert not outside.exists(), 'the submission wrote outside its folder'

    assert results['test_class_index_small_list']['status'] == 'not_allowed'
    assert 'printed more than' in results['test_class_index_small_list']['reason']
    assert results['test_init_output_row_dense']['status'] == 'not_allowed'
    assert 'outside the submission folder' in results['test_init_output_row_dense']['reason']
    for name in ('test_loss_example', 'test_loss_unseen_batch_and_gradient'):
        assert results[name]['status'] == 'timeout', results[name]
    for name in ('test_iou_same_box', 'test_iou_partial_overlap', 'test_iou_edge_cases',
                 'test_iou_unseen_boxes'):
        assert results[name]['status'] == 'passed', results[name]
    for t in tests:
        if t.assignment == 'a5_freeze_base':
            r = results[t.name]
            assert r['status'] == 'import_error' and 'SyntaxError' in r['reason'], r
    assert sum(r['points'] for r in results.values()) == 1 + 1 + 2 + 2


def test_grade_cli_one_submission_json_and_errors(dist, tmp_path):
    scores = tmp_path / 'scores.json'
    # --no-fork: every test in a new Python process, the slower way round
    run = subprocess.run(
        [sys.executable, '-m', 'assignments.grade', dist['student'], '--json', str(scores),
         '--only', 'a4_iou_loss', '--no-fork', '--jobs', str(JOBS)], cwd=ROOT,
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert 'Traceback' not in run.stdout + run.stderr
    data = json.loads(scores.read_text())
    assert data['total'] == 0 and data['max_total'] == EXPECTED_POINTS['a4_iou_loss']
    assert 'test_iou_same_box' in run.stdout and 'not implemented yet' in run.stdout
    missing = subprocess.run([sys.executable, '-m', 'assignments.grade', str(tmp_path / 'nope')],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2
    assert missing.stderr.startswith('error: ') and 'Traceback' not in missing.stderr


def test_guards_decide_what_is_outside(tmp_path):
    """The audit hook's decisions, called directly (installing it would guard pytest too)."""
    from assignments.runner import Guards
    guards = Guards(str(tmp_path))
    guards.active = True
    guards.audit('open', (str(tmp_path / 'mine.txt'), 'w', 0))
    guards.audit('open', ('/etc/hostname', 'r', os.O_RDONLY))
    guards.audit('os.rename', (str(tmp_path / 'a'), str(tmp_path / 'b'), -1, -1))
    assert guards.violations == []
    for event, args in (('open', (str(tmp_path / '..' / 'x.txt'), 'a', 0)),
                        ('open', ('/tmp/elsewhere', None, os.O_WRONLY | os.O_CREAT)),
                        ('os.remove', ('/tmp/elsewhere', -1)),
                        ('os.rename', (str(tmp_path / 'a'), '/tmp/b', -1, -1)),
                        ('subprocess.Popen', ('ls', ['ls'], None, None)),
                        ('socket.connect', (None, ('127.0.0.1', 80)))):
        with pytest.raises(PermissionError):
            guards.audit(event, args)
    assert len(guards.violations) == 6
