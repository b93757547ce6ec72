"""Hostile data: what a probe hands back, what a hand-in holds, what a student's text says.

The checks judge only what they observe; a check that crashes, hangs or runs out of memory
on a probe's data fails its test alone; student text reaches the terminal, CSV and JSON files
escaped; links in a hand-in are refused; the grader's own parsing has limits; a hidden test
shows no time. The last test grades a class of such submissions end to end.
"""
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tracemalloc
import types
import zipfile

import numpy as np
import pytest

from assignments import (build, checks, gradescope, grading, notebooks, reports, runner, sandbox,
                         shown, tests_files)
from assignments.observations import Observation, decode
from assignments.testing import assert_close

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS_ROOT = os.path.join(ROOT, 'assignments')


def module_from(path, name):
    """A file's code as a module, without writing its bytecode next to it."""
    with open(path) as f:
        text = f.read()
    module = types.ModuleType(name)
    module.__file__ = path
    exec(compile(text, path, 'exec'), module.__dict__)
    return module


def probe_then_judge(assignment, probe_name, test_name, submission):
    """A test's probe on `submission` in this process, its data packed and unpacked as the
    grader receives it, then the check: (passed, reason)."""
    import mxnet as mx
    tests = module_from(os.path.join(TESTS_ROOT, assignment, 'tests.py'), 'tests_' + assignment)
    mx.random.seed(runner.SEED)
    seen = decode(runner.encode(getattr(tests, probe_name)(submission)))
    return checks.judge(getattr(tests, test_name), seen)[:2]


def the_test(name, assignment, root=TESTS_ROOT):
    return [t for t in tests_files.read_all_tests(root, [assignment]) if t.name == name][0]


class NoProcess:
    """A sandbox that fails the test if the grader asks it for a probe process."""

    def __getattr__(self, name):
        raise AssertionError('a probe process was asked for (%s)' % name)


# ---------------------------------------------------------------------------------------------
# Checks compute what they judge

ONE_DEVICE = '''
import types
from mxnet import autograd, gluon, nd


def split_batch(X, y, ctx_list):
    import sys
    if sys._getframe(1).f_code.co_name == 'training_observations':  # "all on device 0"
        empty = [types.SimpleNamespace(shape=(0,))] * (min(len(ctx_list), X.shape[0]) - 1)
        return [X.as_in_context(ctx_list[0])] + empty, [y.as_in_context(ctx_list[0])] + empty
    used = ctx_list[:max(1, min(len(ctx_list), X.shape[0]))]
    return (gluon.utils.split_and_load(X, used, even_split=False),
            gluon.utils.split_and_load(y, used, even_split=False))


def train_step(net, loss, trainer, X, y, ctx_list):
    with autograd.record():
        total = loss(net(X.as_in_context(ctx_list[0])), y.as_in_context(ctx_list[0]))
    total.backward()
    params = [p for p in net.collect_params().values() if p.grad_req != 'null']
    for ctx in ctx_list[1:]:  # a fresh zero gradient on the others
        with autograd.record():
            zero = nd.add_n(*[(p.data(ctx) * 0).sum() for p in params])
        zero.backward()
    trainer.step(X.shape[0])
    return float(total.sum().asscalar())
'''

OTHER_SPLIT = '''
from mxnet import autograd, nd


def split_batch(X, y, ctx_list):
    """All but one row on the first device: a split the statement allows."""
    used = ctx_list[:max(1, min(len(ctx_list), X.shape[0]))]
    cuts = [0] + [X.shape[0] - len(used) + 1 + i for i in range(len(used))]
    return ([X[a:b].as_in_context(c) for a, b, c in zip(cuts, cuts[1:], used)],
            [y[a:b].as_in_context(c) for a, b, c in zip(cuts, cuts[1:], used)])


def train_step(net, loss, trainer, X, y, ctx_list):
    xs, ys = split_batch(X, y, ctx_list)
    with autograd.record():
        losses = [loss(net(x), t) for x, t in zip(xs, ys)]
    for lo in losses:
        lo.backward()
    params = [p for p in net.collect_params().values() if p.grad_req != 'null']
    for ctx in ctx_list[len(xs):]:
        with autograd.record():
            zero = nd.add_n(*[(p.data(ctx) * 0).sum() for p in params])
        zero.backward()
    trainer.step(X.shape[0])
    return sum(float(lo.sum().asscalar()) for lo in losses)
'''


def submission_module(text, name):
    module = types.ModuleType(name)
    exec(compile(text, name, 'exec'), module.__dict__)
    return module


def test_a1_rows_per_device_follow_from_the_gradients_not_from_split_batch():
    """A one-device train_step whose split_batch says "all on device 0" to the training
    probe got every training point; any split the statement allows still passes."""
    a1 = ('a1_data_parallel', 'train_two_devices', 'test_train_step_two_devices')
    reference = module_from(os.path.join(TESTS_ROOT, a1[0], 'data_parallel.py'), 'ref_a1')
    assert probe_then_judge(*a1, reference) == (True, '')
    passed, reason = probe_then_judge(*a1, submission_module(OTHER_SPLIT, 'other_split'))
    assert passed, reason
    passed, reason = probe_then_judge(*a1, submission_module(ONE_DEVICE, 'one_device'))
    assert not passed and 'cpu(0) is not that of any slice' in reason, reason


# ---------------------------------------------------------------------------------------------
# Checks are bounded

@pytest.fixture(scope='module')
def a5_seen():
    reference = module_from(os.path.join(TESTS_ROOT, 'a5_freeze_base', 'freeze.py'), 'ref_a5')
    tests = module_from(os.path.join(TESTS_ROOT, 'a5_freeze_base', 'tests.py'), 'tests_a5')
    return tests.exported(reference, 1, nested=False)


def graph_with(seen, change):
    graph = json.loads(seen['symbol'])
    change(graph['nodes'], graph)
    return dict(seen, symbol=json.dumps(graph))


def output_seven(nodes, graph):  # an input naming output 7 of a one-output node
    for node in nodes:
        if node['op'] == 'Activation':
            node['inputs'][0][1] = 7


def shared_convolutions(nodes, graph):  # 20 more convolutions sharing the first one's weight
    first = [i for i, node in enumerate(nodes) if node['op'] == 'Convolution'][0]
    for k in range(20):
        node = dict(nodes[first], name='again%d' % k)
        node['inputs'] = [[len(nodes) - 1, 0, 0]] + node['inputs'][1:]
        nodes.append(node)
    graph['heads'] = [[len(nodes) - 1, 0, 0]]


def relabelled(seen):
    """The base's parameters reported as the head's: its role comes from its value."""
    roles = {name: (['head', req] if role == 'base' else [role, req])
             for name, (role, req) in seen['roles'].items()}
    return dict(seen, roles=roles)


def test_a5_hostile_graphs_fail_their_test_and_the_next_check_runs(a5_seen):
    test = the_test('test_step_leaves_base_unchanged', 'a5_freeze_base')
    cases = {'output_seven': graph_with(a5_seen, output_seven),
             'shared_convolutions': graph_with(a5_seen, shared_convolutions),
             'relabelled': relabelled(a5_seen), 'honest': a5_seen}
    results = {name: grading.check(test, Observation('ok', payload=runner.encode(seen)))
               for name, seen in cases.items()}
    assert 'earlier node' in results['output_seven']['reason'], results
    assert 'layers are not those' in results['shared_convolutions']['reason'], results
    assert results['honest']['points'] == 2, results['honest']
    assert [r['points'] for r in results.values()] == [0, 0, 2, 2]  # relabelling: no change
    grad_req = the_test('test_no_gradient_for_base', 'a5_freeze_base')
    # the base left trainable, its parameters said to be the head's
    lied = dict(a5_seen, roles={n: (['head', 'write'] if role == 'base' else [role, req])
                                for n, (role, req) in a5_seen['roles'].items()})
    result = grading.check(grad_req, Observation('ok', payload=runner.encode(lied)))
    assert result['points'] == 0 and 'still get gradients' in result['reason'], result


BOUNDED_TESTS = '''
import os
import signal
import time

import numpy as np

from assignments.testing import graded, probe

SUBMISSION_FILE = 'x.py'


@probe(timeout=5)
def hand_back(sub):
    return {}


@graded(1, probe=hand_back)
def test_crashes(seen):
    os.kill(os.getpid(), signal.SIGSEGV)


@graded(1, probe=hand_back)
def test_hangs(seen):
    time.sleep(3600)


@graded(1, probe=hand_back)
def test_spins(seen):
    while True:
        pass


@graded(1, probe=hand_back)
def test_takes_memory(seen):
    np.ones(seen['n'] // 8).sum()


@graded(1, probe=hand_back)
def test_fine(seen):
    assert int(seen['n']) == 2 ** 40, 'n is %s' % seen['n']
'''


def test_a_check_that_crashes_hangs_or_takes_memory_fails_alone(tmp_path, monkeypatch):
    folder = tmp_path / 'a9_bounded'
    folder.mkdir()
    (folder / 'tests.py').write_text(BOUNDED_TESTS)
    tests = {t.name: t for t in tests_files.read_all_tests(str(tmp_path))}
    monkeypatch.setattr(checks, 'CHECK_SECONDS', 2)
    monkeypatch.setattr(checks, 'WALL_FACTOR', 3)  # a sleep uses no CPU time: 6 s in all
    payload = runner.encode({'n': 2 ** 40})
    results = {name: grading.check(tests[name], Observation('ok', payload=payload))
               for name in ('test_crashes', 'test_hangs', 'test_spins', 'test_takes_memory',
                            'test_fine')}
    assert 'crashed (' in results['test_crashes']['reason'], results
    assert 'past its time limit (2 s of CPU time, 6 s in all)' in results['test_hangs'][
        'reason'], results
    assert 'past its time limit' in results['test_spins']['reason'], results
    assert 'MemoryError' in results['test_takes_memory']['reason'], results
    assert results['test_fine']['points'] == 1, results
    assert sum(r['points'] for r in results.values()) == 1


# ---------------------------------------------------------------------------------------------
# The grader's own parsing and decoding have limits

def test_an_npz_claiming_more_than_it_holds_is_refused_before_reading():
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {'descr': '<f8', 'fortran_order': False,
                                                  'shape': (10 ** 9,)})
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, 'w') as z:
        z.writestr('big.npy', header.getvalue() + b'\0' * 64)
    with pytest.raises(ValueError, match='an array of'):
        decode(archive.getvalue())
    assert decode(runner.encode({'x': np.arange(3)}))['x'].tolist() == [0, 1, 2]


def test_a_large_array_is_judged_by_its_shape_before_it_is_cast():
    large = np.zeros(2 ** 22, np.float32)  # 16 MB; as float64, 32 MB more
    tracemalloc.start()
    try:
        with pytest.raises(AssertionError, match='shape'):
            assert_close(large, [1.0], 'the IoU')
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 ** 20, peak


def test_a_reason_names_the_error_and_mxnets_own_line():
    """The grader's reasons name the exception's type and, for MXNet, its last line, which
    says why (the first is only 'Traceback ...')."""
    class MXNetError(Exception):
        pass
    mxnet_error = MXNetError('Traceback (most recent call last):\n  File "dot-inl.h", line 9\n'
                             'MXNetError: Check failed: dot shape error: [2,3] X [2,3]')
    assert runner.first_line(mxnet_error) == \
        'MXNetError: Check failed: dot shape error: [2,3] X [2,3]'
    assert runner.first_line(KeyError('x')) == "KeyError: 'x'"
    assert runner.first_line(ValueError()) == 'ValueError'
    passed, reason, trace = checks.judge(lambda data: data['missing'], {})
    assert not passed and reason == "%s (KeyError: 'missing')" % checks.WRONG_FORM, reason
    assert 'KeyError' in trace


def test_a_large_graded_cell_is_refused_before_it_is_parsed(tmp_path):
    notebook = notebooks.build_notebook('a4_iou_loss', '# A', 'def iou():\n    pass\n',
                                        'boxes.py', [])
    graded = [c for c in notebook['cells'] if notebooks._is_graded(c)]
    graded[0]['source'] = notebooks.MARKER_LINE + '\n' + '0;' * 2 * 2**20  # 4 MB
    path = tmp_path / 'boxes.ipynb'
    path.write_text(json.dumps(notebook))
    with pytest.raises(notebooks.NotebookError, match='graded cells hold 4096 KB'):
        notebooks.graded_text(str(path))


# ---------------------------------------------------------------------------------------------
# Student text is data

HOSTILE_TEXT = '\ud800 \x1b[2J\x1b]0;owned\x07 done\r\nTOTAL 46/46 \u202e'


def test_student_text_reaches_terminal_json_and_csv_escaped(tmp_path):
    test = the_test('test_iou_same_box', 'a4_iou_loss')
    result = grading.check(test, Observation('error', HOSTILE_TEXT, output=HOSTILE_TEXT))
    result = shown.record(result)
    for r in (result, reports.feedback([result], verbose=True)[0]):
        for key in ('reason', 'output'):
            r[key].encode('utf-8')  # no lone surrogate
            assert not any(c in r[key] for c in '\x1b\x07\r\u202e'), r[key]
        assert '\n' not in r['reason']
    terminal = io.TextIOWrapper(io.BytesIO(), encoding='utf-8', errors='strict')
    reports.report(reports.feedback([result], verbose=True), terminal)
    terminal.flush()
    lines = terminal.buffer.getvalue().decode('utf-8').splitlines()
    assert not any(line.startswith('TOTAL 46') for line in lines), lines
    path = tmp_path / 'results.json'
    gradescope.write_results(str(path), reports.feedback([result]), None)
    path.read_bytes().decode('utf-8')
    assert json.loads(reports.to_json([result], 1.0))['tests'][0]['reason'] == result['reason']
    names = ['=1+2', '+cmd', '-2', '@SUM(A1)', '\tx', 'line\nTOTAL 19 of 19', 'plain']
    text = reports.class_csv([(n, [result], 1.0, n) for n in names], ['a4_iou_loss'])
    rows = list(csv.reader(io.StringIO(text)))[1:]
    assert len(rows) == len(names)
    for row in rows:
        for cell in row:
            assert not cell.startswith(('=', '+', '-', '@', '\t', '\r')), row
            assert '\n' not in cell
    assert rows[0][0] == "'=1+2" and rows[-1][0] == 'plain'


def test_shown_keeps_ordinary_text():
    assert shown.line('IoU différent: 0.5 ≠ 1') == 'IoU différent: 0.5 ≠ 1'
    assert shown.text('a\n\tb', newlines=True) == 'a\n\tb'
    assert shown.line('a\nb') == 'a\\x0ab'


# ---------------------------------------------------------------------------------------------
# Links in a hand-in

def reference_folder(root, name):
    folder = root / name / 'a4_iou_loss'
    folder.mkdir(parents=True)
    shutil.copy(os.path.join(TESTS_ROOT, 'a4_iou_loss', 'boxes.py'), str(folder))
    return folder


def test_a_link_in_a_hand_in_is_refused(tmp_path):
    tests = tests_files.read_all_tests(TESTS_ROOT, ['a4_iou_loss'])
    victim = reference_folder(tmp_path, 'victim')
    cases = {}
    cases['folder_link'] = tmp_path / 'folder_link'
    cases['folder_link'].mkdir()
    os.symlink('../victim/a4_iou_loss', str(cases['folder_link'] / 'a4_iou_loss'))
    cases['teachers'] = tmp_path / 'teachers'
    cases['teachers'].mkdir()
    os.symlink(TESTS_ROOT, str(cases['teachers'] / 'assignments'))
    cases['file_link'] = reference_folder(tmp_path, 'file_link').parent
    os.remove(str(cases['file_link'] / 'a4_iou_loss' / 'boxes.py'))
    os.symlink(str(victim / 'boxes.py'), str(cases['file_link'] / 'a4_iou_loss' / 'boxes.py'))
    cases['inner_link'] = reference_folder(tmp_path, 'inner_link').parent
    os.symlink('/etc', str(cases['inner_link'] / 'a4_iou_loss' / 'data'))
    for name, folder in cases.items():
        results = grading.grade(str(folder), tests, box=NoProcess())
        assert sum(r['points'] for r in results) == 0
        for r in results:
            assert r['status'] == 'not_allowed' and 'is a symbolic link' in r['reason'], r
            assert '\n' not in r['reason']
    os.symlink(str(victim.parent), str(tmp_path / 'class_link'))
    results, note = grading.grade_student(str(tmp_path / 'class_link'), tests, box=NoProcess())
    assert note.startswith('refused') and sum(r['points'] for r in results) == 0


# ---------------------------------------------------------------------------------------------
# A hidden test tells pass or fail, nothing more

def test_a_hidden_test_shows_no_time():
    tests = tests_files.read_all_tests(TESTS_ROOT, ['a4_iou_loss'])
    results = [dict(grading.new_result(t), status='passed', seconds=1.23) for t in tests]
    mine = reports.student_feedback(results)
    assert {r['seconds'] for r in mine if r['hidden']} == {None}
    assert {r['seconds'] for r in mine if not r['hidden']} == {1.23}
    assert json.loads(reports.to_json(mine, reports.shown_seconds(mine, 9.0)))['seconds'] is None
    teacher = reports.feedback(results, show_hidden=True)
    assert reports.shown_seconds(teacher, 9.0) == 9.0


# ---------------------------------------------------------------------------------------------
# A class of hostile submissions, graded end to end

SURROGATE = """

def iou(boxes_a, boxes_b):
    raise RuntimeError('\\ud800 \\x1b[2J')
"""

OUTPUT_SEVEN = """

import json as _json
from mxnet import symbol as _symbol
_plain = _symbol.Symbol.tojson


def _tojson(self):  # every exported graph names output 7 of its Activation's input
    graph = _json.loads(_plain(self))
    for node in graph['nodes']:
        if node['op'] == 'Activation':
            node['inputs'][0][1] = 7
    return _json.dumps(graph)


_symbol.Symbol.tojson = _tojson
"""


def test_a_hostile_class_is_graded_to_the_end(tmp_path):
    box = sandbox.Sandbox()
    try:
        if not box.bwrap:
            pytest.skip('no bubblewrap here (%s): a class is graded only inside it' % box.problem)
    finally:
        box.close()
    student, autograder = build.build(str(tmp_path / 'dist'))
    tests_root = os.path.join(autograder, 'assignments')
    class_dir = tmp_path / 'class'
    for name, assignment, file, code in (('surrogate', 'a4_iou_loss', 'boxes.py', SURROGATE),
                                         ('graph', 'a5_freeze_base', 'freeze.py', OUTPUT_SEVEN)):
        folder = class_dir / name / 'assignments'
        shutil.copytree(tests_root, str(folder))
        path = folder / assignment / file
        path.write_text(path.read_text() + code)
    for name in ('=1+2', 'line\nTOTAL 19 of 19', 'zz_reference'):
        shutil.copytree(tests_root, str(class_dir / name / 'assignments'))
    os.symlink('zz_reference', str(class_dir / 'linked'))
    scores = tmp_path / 'scores.csv'
    run = subprocess.run(
        [sys.executable, '-m', 'assignments.grade', '--class-dir', str(class_dir), '--only',
         'a4_iou_loss', 'a5_freeze_base', '--csv', str(scores), '--feedback-dir',
         str(tmp_path / 'feedback'), '--jobs', '2', '--verbose', '--tests', tests_root],
        cwd=ROOT, capture_output=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout.decode('utf-8')
    assert '\x1b' not in out and not any(line.startswith('TOTAL 19 of')
                                         for line in out.splitlines())
    rows = {row['student']: row for row in csv.DictReader(io.StringIO(scores.read_text()))}
    assert set(rows) == {"'=1+2", 'line\\x0aTOTAL 19 of 19', 'zz_reference', 'surrogate',
                         'graph', 'linked'}, rows
    points = {name: {key: float(row[key]) for key in ('a4_iou_loss', 'a5_freeze_base',
                                                      'total')} for name, row in rows.items()}
    assert points['zz_reference'] == points["'=1+2"] == {
        'a4_iou_loss': 9, 'a5_freeze_base': 10, 'total': 19}, points
    assert points['linked']['total'] == 0 and rows['linked']['note'].startswith('refused')
    assert points['surrogate'] == {'a4_iou_loss': 3, 'a5_freeze_base': 10, 'total': 13}
    assert points['graph'] == {'a4_iou_loss': 9, 'a5_freeze_base': 1, 'total': 10}
    for name in ('surrogate', 'graph'):
        (tmp_path / 'feedback' / (name + '.json')).read_bytes().decode('utf-8')


def test_the_copies_handed_out_hold_the_whole_grader(tmp_path):
    """The student's and the autograder's copies import the grader and its check process
    from themselves."""
    student, autograder = build.build(str(tmp_path / 'dist'))
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    for copy in (student, autograder):
        run = subprocess.run(
            [sys.executable, '-c', 'import assignments.grade, assignments.checks, '
             'assignments.shown; print(assignments.checks.__file__)'],
            cwd=copy, env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip().startswith(copy), run.stdout
