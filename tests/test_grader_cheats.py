"""Hostile submissions: injection, redirection, evasion, overfitting and exhaustion.

Each cheat is a small boxes.py (assignment 4) written here; they are graded together in one
class run, next to the reference solutions and the wrong solution the cheats start from.
No cheat may score more than the same submission without it; an exhaustion scores 0 on the
test it hits and the other tests and students are graded as usual. What a probe
process can see, write and reach from the inside: tests/test_grader_sandbox.py.
"""
import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from assignments import build, sandbox
from tests.test_assignments import ROOT, read

WRONG_IOU = ("width = np.minimum(a[..., 1], b[..., 1]) - np.maximum(a[..., 0], b[..., 0])",
             "width = a[..., 1] - b[..., 0]")
IOU_BODY = '    ### BEGIN SOLUTION\n    a = np.asarray(boxes_a'
LOSS_BODY = '    ### BEGIN SOLUTION\n    scale = nd.array('
LOSS_TESTS = {'test_loss_example', 'test_loss_unseen_batch_and_gradient'}


def source(top='', in_iou='', in_loss='', wrong=True):
    """boxes.py: the reference (with the wrong IoU unless wrong=False) plus cheat code at the
    top of the module and at the start of iou / scaled_mse."""
    text = read(os.path.join(ROOT, 'assignments', 'a4_iou_loss', 'boxes.py'))
    if wrong:
        text = text.replace(*WRONG_IOU)

    def indent(code):
        return ''.join('    ' + line + '\n' for line in code.strip('\n').split('\n'))
    if in_iou:
        text = text.replace(IOU_BODY, indent(in_iou) + IOU_BODY)
    if in_loss:
        text = text.replace(LOSS_BODY, indent(in_loss) + LOSS_BODY)
    return 'import os, sys, builtins, time\n' + top + '\n' + text


FAKE_PASS = '{"status": "passed", "message": "", "traceback": "", "points": 9}'

CHEATS = {
    # injection: patch numpy, builtins and the test helpers, at import or inside a call
    'inject_numpy_builtins': dict(top=(
        'import numpy\nnumpy.allclose = lambda *a, **k: True\n'
        'numpy.testing.assert_allclose = lambda *a, **k: None\n'
        'builtins.abs = lambda x: 0\nbuiltins.max = lambda *a, **k: 0\n')),
    'inject_probe_code': dict(top=(
        # walk up the stack while imported: replace every probe's and helper's code
        'frame = sys._getframe()\n'
        'while frame is not None:\n'
        '    for value in list(frame.f_globals.values()):\n'
        '        if hasattr(value, "__code__"):\n'
        '            try:\n'
        '                value.__code__ = (lambda *a, **k: {"iou": [1.0], "ab": [1.0]}).__code__\n'
        '            except Exception:\n'
        '                pass\n'
        '    frame = frame.f_back\n'
        'for module in list(sys.modules.values()):\n'
        '    for name in ("assert_close", "check_loss", "reference_iou", "allclose"):\n'
        '        if hasattr(module, name):\n'
        '            setattr(module, name, lambda *a, **k: True)\n')),
    'inject_in_call': dict(in_iou=(
        'import numpy, mxnet\n'
        'numpy.allclose = lambda *a, **k: True\n'
        'mxnet.nd.NDArray.asnumpy = lambda self: numpy.ones(self.shape)\n'
        'sys.modules["assignments.testing"].assert_close = lambda *a, **k: None\n')),
    # redirection: result files, the teacher's tests, another student, the grader's report
    'redirect_files': dict(top='FAKE = FAKE_VALUE\nTARGETS = TARGETS_VALUE\n', in_iou=(
        'for fd in os.listdir("/proc/self/fd"):\n'
        '    try:\n'
        '        os.write(int(fd), FAKE.encode())\n'
        '    except OSError:\n'
        '        pass\n'
        'for path in TARGETS:\n'
        '    try:\n'
        '        with open(path, "w") as f:\n'
        '            f.write(FAKE)\n'
        '    except OSError:\n'
        '        pass\n'
        'os._exit(0)\n')),
    'redirect_report': dict(in_iou=(
        'print("a4_iou_loss        test_iou_unseen_boxes (hidden)         2/2   PASS")\n'
        'print("a4_iou_loss        total 9/9")\nprint("TOTAL 9/9")\n'
        'import struct, json\n'
        'head = json.dumps({"event": "done", "probe": "iou_unseen", "status": "ok"}).encode()\n'
        'record = struct.pack("<Q", len(head)) + head + struct.pack("<Q", 4) + b"PK\\x03\\x04"\n'
        'for fd in range(3, 64):\n'
        '    try:\n'
        '        os.write(fd, record)\n'
        '    except OSError:\n'
        '        pass\n')),
    # the grader's own modules, shadowed from the student's folder (files added below)
    'shadow_grader_modules': dict(),
    # evasion: exits, exceptions the grader might take for its own, killing, descriptors
    'evade_exit': dict(in_iou='sys.exit(0)', in_loss='raise KeyboardInterrupt()'),
    'evade_os_exit': dict(in_iou='os._exit(0)',
                          in_loss='class Escape(BaseException):\n    pass\nraise Escape()'),
    'evade_kill': dict(in_iou='os.kill(os.getpid(), 9)',
                       in_loss='os.kill(os.getppid(), 9)\nos.kill(-1, 9)'),
    'evade_descriptors': dict(in_iou=(
        'null = os.open(os.devnull, os.O_RDWR)\n'
        'for fd in range(1024):\n'
        '    if fd != null:\n'
        '        try:\n'
        '            os.dup2(null, fd)\n'
        '        except OSError:\n'
        '            pass\n'), in_loss='os.closerange(0, 1024)\nos._exit(0)'),
    # overfitting: the public tests' answers for the public inputs, nothing else
    'overfit_public_answers': dict(in_iou=(
        'import numpy\n'
        'if numpy.shape(boxes_a) == (1, 4):\n'
        '    key = list(numpy.asarray(boxes_a)[0]) + list(numpy.asarray(boxes_b)[0])\n'
        '    if key == [10, 50, 20, 60, 10, 50, 20, 60]:\n'
        '        return numpy.array([1.0])\n'
        '    if key == [0, 10, 0, 10, 5, 15, 0, 10]:\n'
        '        return numpy.array([1 / 3])\n'
        'return numpy.zeros(len(boxes_a))\n'), wrong=False),
    # exhaustion, each in scaled_mse only: the IoU tests are graded as usual
    'exhaust_memory': dict(in_loss='hog = bytearray(40 * 2**30)', wrong=False),
    'exhaust_output': dict(in_loss='while True:\n    print("x" * 10000)', wrong=False),
    'exhaust_disk': dict(in_loss=(
        'for i in range(10**6):\n'
        '    with open("fill%d" % i, "wb") as f:\n'
        '        f.write(b"0" * 2**20)\n'), wrong=False),
    'exhaust_sleep': dict(in_loss='time.sleep(3600)', wrong=False),
}
if hasattr(os, 'geteuid') and os.geteuid() == 0:  # a process limit needs a user of its own
    CHEATS['exhaust_fork_bomb'] = dict(in_loss='while True:\n    os.fork()', wrong=False)


SHADOW = (  # a grader that took these modules would pass everything
    'def graded(*a, **k):\n    return lambda f: f\n'
    'def probe(*a, **k):\n    return lambda f: f\n'
    'def assert_close(*a, **k):\n    pass\n'
    'def main():\n    print("TOTAL 9/9")\n')


def digest(folder):
    h = hashlib.sha1()
    for root, dirs, files in sorted(os.walk(folder)):
        for name in sorted(files):
            h.update(name.encode())
            with open(os.path.join(root, name), 'rb') as f:
                h.update(f.read())
    return h.hexdigest()


@pytest.fixture(scope='module')
def cheat_class(tmp_path_factory):
    """One class run: the reference, the wrong solution, and every cheat."""
    box = sandbox.Sandbox()
    if not box.bwrap:  # the grader says so in its guards line; the test below covers it
        pytest.skip('no bubblewrap here (%s): the cheats are defeated only inside it'
                    % box.problem)
    tmp = tmp_path_factory.mktemp('cheats')
    student, autograder = build.build(str(tmp / 'dist'))
    tests_root = os.path.join(autograder, 'assignments')
    class_dir = tmp / 'class'
    protected = [os.path.join(tests_root, 'a4_iou_loss', 'tests.py'),
                 str(class_dir / 'reference' / 'assignments' / 'a4_iou_loss' / 'boxes.py'),
                 str(tmp / 'results.json')]
    students = dict({name: source(**cheat) for name, cheat in CHEATS.items()},
                    reference=source(wrong=False), wrong=source())
    for name, text in students.items():
        shutil.copytree(student, str(class_dir / name))
        text = text.replace('FAKE_VALUE', repr(FAKE_PASS)).replace(
            'TARGETS_VALUE', repr(protected + ['../../results.json']))
        (class_dir / name / 'assignments' / 'a4_iou_loss' / 'boxes.py').write_text(text)
    for folder in (class_dir / 'shadow_grader_modules' / 'assignments',
                   class_dir / 'shadow_grader_modules' / 'assignments' / 'a4_iou_loss'):
        (folder / 'assignments').mkdir(exist_ok=True)
        (folder / 'assignments' / '__init__.py').write_text('')
        for module in ('testing.py', 'runner.py', 'grade.py', 'assignments/testing.py',
                       'assignments/runner.py',
                       'assignments/grade.py', 'utils.py'):
            (folder / module).write_text(SHADOW)
    before = {p: digest(os.path.dirname(p)) for p in protected[:2]}
    scores, feedback = tmp / 'scores.csv', tmp / 'feedback'
    run = subprocess.run(
        [sys.executable, '-m', 'assignments.grade', '--class-dir', str(class_dir), '--only',
         'a4_iou_loss', '--csv', str(scores), '--feedback-dir', str(feedback), '--jobs', '2',
         '--timeout', '10', '--tests', tests_root], cwd=ROOT, capture_output=True, text=True,
        timeout=900)
    assert run.returncode == 0, run.stderr
    rows = {row['student']: row for row in csv.DictReader(scores.read_text().splitlines())}
    points = {name: {r['test']: r['points'] for r in json.loads(
        (feedback / (name + '.json')).read_text())['tests']} for name in students}
    return {'rows': rows, 'points': points, 'run': run, 'before': before,
            'protected': protected, 'tmp': tmp}


def total(cheat_class, name):
    return float(cheat_class['rows'][name]['total'])


def test_reference_and_wrong_solution_in_the_same_run(cheat_class):
    assert total(cheat_class, 'reference') == 9
    assert 0 < total(cheat_class, 'wrong') < 9
    assert 'sandbox guards up' in cheat_class['run'].stderr


@pytest.mark.parametrize('name', sorted(n for n in CHEATS if n.startswith(
    ('inject', 'redirect', 'evade', 'shadow'))))
def test_cheat_gains_nothing(cheat_class, name):
    assert total(cheat_class, name) <= total(cheat_class, 'wrong'), \
        (name, cheat_class['points'][name], cheat_class['run'].stdout)


def test_redirection_changed_no_file_outside(cheat_class):
    for path, before in cheat_class['before'].items():
        assert digest(os.path.dirname(path)) == before, path
    assert not os.path.exists(cheat_class['protected'][2])
    assert not (cheat_class['tmp'] / 'class' / 'results.json').exists()


def test_overfitting_gets_no_hidden_point(cheat_class):
    points = cheat_class['points']['overfit_public_answers']
    assert points['test_iou_same_box'] == points['test_iou_partial_overlap'] == 1
    assert points['test_iou_edge_cases'] == points['test_iou_unseen_boxes'] == 0


@pytest.mark.parametrize('name', sorted(n for n in CHEATS if n.startswith('exhaust')))
def test_exhaustion_scores_zero_on_its_tests_only(cheat_class, name):
    points = cheat_class['points'][name]
    for test, got in points.items():
        if test in LOSS_TESTS:
            assert got == 0, (test, points)
        else:
            assert got > 0, (test, points)
