"""Assignments handed out and handed in as notebooks; the grader's results for Gradescope.

Grading runs only assignment 4 (IoU and a loss: two probe processes of a second or two): one
class run grades a .py and a notebook submission side by side, and the run_autograder script of
docs/teachers.md grades the notebook alone once more. The graded cells reach the sandboxed
probe processes as the file to complete; the grader itself only reads them as text.
"""
import ast
import copy
import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys

import pytest

from assignments import build, grade, gradescope, grading, notebooks, reports, tests_files
from tests.conftest import ROOT

ASSIGNMENT, FILE, NOTEBOOK = 'a4_iou_loss', 'boxes.py', 'boxes.ipynb'
# scaled_mse without the 224 scale: the IoU tests pass, the loss tests fail (6 of 9 points)
RIGHT, WRONG = 'nd.square(pred - label * scale)', 'nd.square(pred - label)'
POINTS_WITH_MISTAKE = 6


@pytest.fixture(scope='module')
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp('dist')
    student, autograder = build.build(str(out))
    return {'out': str(out), 'student': student, 'autograder': autograder}


def read(path):
    with open(path) as f:
        return f.read()


def write(path, text):
    with open(path, 'w') as f:
        f.write(text)


def graded_cells(notebook):
    return [c for c in notebook['cells']
            if c['cell_type'] == 'code' and c['metadata'].get('gluon_transfer', {}).get('graded')]


def answer_with_mistake(dist):
    """The reference boxes.py with one mistake planted in scaled_mse."""
    text = read(os.path.join(dist['autograder'], 'assignments', ASSIGNMENT, FILE))
    assert RIGHT in text
    return text.replace(RIGHT, WRONG)


def filled_notebook(dist, answer):
    """The handed-out notebook with `answer` written into its graded cells, as a student would,
    plus what the grader must leave out: magics in a graded cell, a %%bash cell marked graded,
    outputs, and at the end a cell that would break every test and one that only looks graded."""
    notebook = json.loads(read(os.path.join(dist['student'], 'assignments', ASSIGNMENT,
                                            NOTEBOOK)))
    cells = graded_cells(notebook)
    pieces = notebooks.code_cells(answer)
    assert len(pieces) == len(cells) == 3  # the header, iou, scaled_mse
    for cell, piece in zip(cells, pieces):
        cell['source'] = notebooks.MARKER_LINE + '\n' + piece
    cells[1]['source'] = cells[1]['source'].replace(
        notebooks.MARKER_LINE + '\n', notebooks.MARKER_LINE + '\n%load_ext autoreload\n')
    cells[2]['source'] += '\n!echo a shell line\nchecked = %who_ls'
    cells[2]['outputs'] = [{'output_type': 'stream', 'name': 'stdout', 'text': 'a shell line\n'}]
    cells[2]['execution_count'] = 3
    bash = copy.deepcopy(cells[2])
    bash.update(id='bash-cell', source='%%bash\necho this is not Python', outputs=[])
    notebook['cells'].insert(notebook['cells'].index(cells[2]) + 1, bash)
    notebook['cells'] += [
        {'cell_type': 'code', 'id': 'scratch', 'metadata': {}, 'execution_count': None,
         'outputs': [], 'source': 'def iou(a, b):\n    return 0\n\n\nscaled_mse = None'},
        {'cell_type': 'code', 'id': 'looks-graded', 'metadata': {}, 'execution_count': None,
         'outputs': [], 'source': notebooks.MARKER_LINE + '\nCANVAS_SIZE = 1'}]
    return notebook


# ---------------------------------------------------------------------------------------------
# The notebooks handed out

def test_build_writes_a_valid_notebook_per_assignment(dist):
    nbformat = pytest.importorskip('nbformat')
    root = os.path.join(dist['student'], 'assignments')
    every = tests_files.read_all_tests(os.path.join(dist['autograder'], 'assignments'))
    hidden = [t.name for t in every if t.hidden] + [t.probe for t in every if t.probe_hidden]
    for name in build.assignment_folders(root):
        folder = os.path.join(root, name)
        public = tests_files.read_tests(folder)
        submission_file = public[0].submission_file
        path = os.path.join(folder, notebooks.notebook_name(submission_file))
        nbformat.validate(nbformat.read(path, as_version=4))  # nbformat 4.5, as Jupyter reads
        text = read(path)
        notebook = json.loads(text)
        assert not any(h in text for h in hidden), 'a hidden test in %s' % path
        markdown = '\n'.join(c['source'] for c in notebook['cells']
                             if c['cell_type'] == 'markdown')
        statement = read(os.path.join(folder, 'statement.md'))
        assert all(line in markdown for line in statement.splitlines())
        blank = read(os.path.join(folder, submission_file))
        graded = notebooks.solution_source(notebook, path)
        assert ast.dump(ast.parse(graded)) == ast.dump(ast.parse(blank))
        assert graded.count('raise NotImplementedError()') == blank.count(
            'raise NotImplementedError()') >= 1
        assert all(c['source'].startswith(notebooks.MARKER) for c in graded_cells(notebook))
        calls = [c['source'] for c in notebook['cells'] if 'public_test(' in c['source']
                 and not c['source'].startswith('#')]
        assert calls == ["public_test(%r, %r, globals())  # %g point%s" % (
            name, t.name, t.points, '' if t.points == 1 else 's') for t in public]
        assert notebook['metadata']['gluon_transfer']['handout_sha256'] == \
            notebooks._handout_hash(blank)


def test_public_test_cells_run_in_jupyter(dist, tmp_path, monkeypatch):
    """The filled notebook, run top to bottom in a kernel: each public test prints its line."""
    nbclient = pytest.importorskip('nbclient')
    folder = tmp_path / 'student'
    shutil.copytree(dist['student'], str(folder))
    notebook = filled_notebook(dist, answer_with_mistake(dist))
    path = folder / 'assignments' / ASSIGNMENT / NOTEBOOK
    write(str(path), json.dumps(notebook))
    nbformat = pytest.importorskip('nbformat')
    nb = nbformat.read(str(path), as_version=4)
    monkeypatch.setenv('PYTHONPATH', ROOT)  # this checkout's utils
    nbclient.NotebookClient(nb, timeout=300, iopub_timeout=60, kernel_name='python3',
                            resources={'metadata': {'path': str(path.parent)}}).execute()
    # a cell's printed text may come in several stream outputs
    lines = [''.join(out.get('text', '') for out in cell.outputs) for cell in nb.cells
             if 'public_test(' in cell.source and not cell.source.startswith('#')]
    assert lines[0] == 'PASS  test_iou_same_box  1/1\n'
    assert lines[1] == 'PASS  test_iou_partial_overlap  1/1\n'
    assert lines[2].startswith('FAIL  test_loss_example  0/1  scaled_mse of one sample '
                               'differs from the expected values'), lines[2]
    assert len(lines) == 3


PUBLIC_CELLS = """
import os, runpy, sys
import utils  # as the notebook's set-up cell does, before the answers import MXNet
from assignments import notebooks, tests_files
out, name = sys.argv[1:]
tests = tests_files.read_tests(os.path.join(out, 'student', 'assignments', name))
for which in ('autograder', 'student'):
    names = runpy.run_path(os.path.join(out, which, 'assignments', name,
                                        tests[0].submission_file))
    for t in tests:
        print(which, end=' ')
        notebooks.public_test(name, t.name, names)
"""


def test_public_test_cells_pass_the_reference_and_fail_the_blank(dist):
    """Every assignment's public-test cells, called as the cells call them from the student
    copy, in one process per assignment standing for its notebook's kernel: the reference
    passes, the blank is 'not implemented yet'."""
    public = [t for t in tests_files.read_all_tests(os.path.join(dist['autograder'], 'assignments'))
              if not t.hidden]
    assignments = sorted({t.assignment for t in public})
    assert len(assignments) == 5
    for name in assignments:
        run = subprocess.run([sys.executable, '-c', PUBLIC_CELLS, dist['out'], name],
                             cwd=dist['student'], capture_output=True, text=True, timeout=600,
                             env=dict(os.environ,
                                      PYTHONPATH=os.pathsep.join([dist['student'], ROOT])))
        assert run.returncode == 0, run.stderr
        lines = run.stdout.splitlines()
        assert len(lines) == 2 * len([t for t in public if t.assignment == name]), run.stdout
        for line in lines:
            which, verdict, test, points = line.split()[:4]
            if which == 'autograder':
                assert verdict == 'PASS' and points.split('/')[0] == points.split('/')[1], \
                    line
            else:
                assert verdict == 'FAIL' and line.endswith('not implemented yet'), line


# ---------------------------------------------------------------------------------------------
# What the grader takes from a notebook

def test_only_marked_cells_are_taken_and_magics_left_out(dist):
    answer = answer_with_mistake(dist)
    notebook = filled_notebook(dist, answer)
    graded = notebooks.solution_source(notebook)
    header, iou, loss = notebooks.code_cells(answer)
    # each magic line becomes `pass`; the %%bash cell and the two cells at the end are left out
    expected = '\n'.join([header, 'pass', iou, loss, 'pass', 'pass'])
    assert ast.dump(ast.parse(graded)) == ast.dump(ast.parse(expected))
    assert 'return 0' not in graded and 'CANVAS_SIZE = 1' not in graded
    assert 'echo' in graded and 'this is not Python' not in graded  # a line left as a comment
    # a Python expression continued on a line starting with % is code, not a magic
    assert notebooks.without_magics('x = (7\n     % 4)') == 'x = (7\n     % 4)'
    assert notebooks.without_magics('%%time\ny = 2') == 'y = 2'
    # what the parser refuses is kept, for the grading to report as the .py's would be
    for text in ('x = 1\0', 'x = ' + '(' * 100000 + ')' * 100000):
        assert notebooks.without_magics(text) == text
    assert notebooks.without_magics('for i in range(2):\n    %time f(i)') == \
        'for i in range(2):\n    pass  # left out when graded: %time f(i)'


def test_py_or_notebook_which_is_graded(tmp_path):
    handed_out = 'def f():\n    raise NotImplementedError()\n'
    notebook = notebooks.build_notebook(ASSIGNMENT, '# A', handed_out, FILE, [])
    script, nb = tmp_path / FILE, tmp_path / NOTEBOOK
    assert notebooks.pick_submission(str(tmp_path), FILE) is None
    script.write_text('def f():\n    return 1\n')
    assert notebooks.pick_submission(str(tmp_path), FILE) == str(script)
    nb.write_text(json.dumps(notebook))
    assert notebooks.pick_submission(str(tmp_path), FILE) == str(script)  # both changed
    script.write_bytes(handed_out.replace('\n', '\r\n').encode())  # as handed out (CRLF)
    assert notebooks.pick_submission(str(tmp_path), FILE) == str(nb)
    script.unlink()
    assert notebooks.pick_submission(str(tmp_path), FILE) == str(nb)
    other = tmp_path / 'elsewhere.py'
    other.write_text('def f():\n    return 2\n')
    os.symlink(str(other), str(script))  # a link counts as absent, as for a .py alone
    assert notebooks.pick_submission(str(tmp_path), FILE) == str(nb)
    nb.unlink()
    assert notebooks.pick_submission(str(tmp_path), FILE) is None
    script.unlink()
    nb.write_text(json.dumps(notebook))
    nb.write_text('{')
    script.write_text(handed_out)  # the notebook cannot say what was handed out: the .py
    assert notebooks.pick_submission(str(tmp_path), FILE) == str(script)


class NoProcess:
    """A sandbox that fails the test if the grader asks it for a probe process."""

    def __getattr__(self, name):
        raise AssertionError('a probe process was asked for (%s)' % name)


def test_a_broken_notebook_gets_one_line_naming_it(dist, tmp_path, capsys):
    tests_root = os.path.join(dist['autograder'], 'assignments')
    tests = tests_files.read_all_tests(tests_root, [ASSIGNMENT])
    empty = json.loads(read(os.path.join(dist['student'], 'assignments', ASSIGNMENT, NOTEBOOK)))
    for cell in empty['cells']:
        cell['metadata'].pop('gluon_transfer', None)  # an editor that drops cell metadata
    other = tmp_path / 'someone_else.ipynb'
    other.write_text(json.dumps(empty))
    cases = {'not_json': ('{"cells": [', 'not valid JSON'),
             'too_deep': ('[' * 100000 + ']' * 100000, 'not valid JSON'),
             'no_cells': ('[1, 2]', 'no list of cells'),
             'no_graded_cell': (json.dumps(empty), 'has no graded cell'),
             'link': (other, 'is a symbolic link')}
    for name, (text, words) in cases.items():
        folder = tmp_path / name / ASSIGNMENT
        folder.mkdir(parents=True)
        if name == 'link':
            os.symlink(str(text), str(folder / NOTEBOOK))
        else:
            (folder / NOTEBOOK).write_text(text)
        # refused before any probe process starts: NoProcess fails the test otherwise
        results = grading.grade(str(tmp_path / name), tests, box=NoProcess())
        assert len(results) == 6 and sum(r['points'] for r in results) == 0
        status = 'not_allowed' if name == 'link' else 'bad_notebook'  # any link is refused
        for r in results:
            assert r['status'] == status and words in r['reason'], r
            assert str(folder / NOTEBOOK) in r['reason'] and '\n' not in r['reason']
        for r in reports.feedback(results):  # hidden tests show only that they failed
            if r['hidden']:
                assert (r['status'], r['reason']) == ('failed', 'hidden test'), r
            else:
                assert r['status'] == status and words in r['reason'], r
    # the command: one line per test, the public ones naming the notebook
    out = tmp_path / 'not_json.json'
    assert grade.main([str(tmp_path / 'not_json'), '--tests', tests_root, '--only', ASSIGNMENT,
                       '--json', str(out)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith(ASSIGNMENT + ' ') and ' total ' not in line]
    assert len(lines) == 6
    assert all(str(tmp_path / 'not_json' / ASSIGNMENT / NOTEBOOK) in line
               for line in lines if '(hidden)' not in line)
    assert sum(r['points'] for r in json.loads(out.read_text())['tests']) == 0


# ---------------------------------------------------------------------------------------------
# A notebook grades like the same .py

@pytest.fixture(scope='module')
def graded_pair(dist, tmp_path_factory):
    """One class run: `script` hands in boxes.py with the mistake, `notebook` the handed-out
    folder with the same answer in the notebook (boxes.py left as handed out). The feedback
    files are the students' view; the teacher's records (hidden reasons too) come from
    grading both folders once more."""
    root = tmp_path_factory.mktemp('class')
    answer = answer_with_mistake(dist)
    for student in ('notebook', 'script'):
        shutil.copytree(dist['student'], str(root / 'class' / student))
    folder = root / 'class' / 'script' / 'assignments' / ASSIGNMENT
    write(str(folder / FILE), answer)
    os.remove(str(folder / NOTEBOOK))
    notebook = filled_notebook(dist, answer)
    write(str(root / 'class' / 'notebook' / 'assignments' / ASSIGNMENT / NOTEBOOK),
          json.dumps(notebook))
    tests_root = os.path.join(dist['autograder'], 'assignments')
    assert grade.main(['--class-dir', str(root / 'class'), '--csv', str(root / 'scores.csv'),
                       '--feedback-dir', str(root / 'feedback'), '--only', ASSIGNMENT,
                       '--tests', tests_root, '--jobs', '2']) == 0
    shown = {student: json.loads(read(str(root / 'feedback' / (student + '.json'))))['tests']
             for student in ('notebook', 'script')}
    tests = tests_files.read_all_tests(tests_root, [ASSIGNMENT])
    teacher = {student: grading.grade(str(root / 'class' / student), tests, jobs=2)
               for student in ('notebook', 'script')}
    with open(str(root / 'scores.csv')) as f:
        rows = {row['student']: row for row in csv.DictReader(f)}
    return shown, notebook, teacher, rows


def test_notebook_grades_like_the_same_py(graded_pair):
    shown, _, teacher, rows = graded_pair
    for results in (shown, teacher):
        seen = {s: [(r['test'], r['status'], r['points'], r['reason']) for r in results[s]]
                for s in results}
        assert seen['notebook'] == seen['script']
        assert sum(r['points'] for r in results['script']) == POINTS_WITH_MISTAKE
        assert {r['status'] for r in results['script']} == {'passed', 'failed'}
    hidden = [r for r in teacher['script'] if r['hidden']]
    assert any(r['status'] == 'failed' and r['reason'] != 'hidden test' for r in hidden)
    assert rows['notebook'][ASSIGNMENT] == rows['script'][ASSIGNMENT] == \
        str(POINTS_WITH_MISTAKE)
    assert rows['notebook']['note'] == rows['script']['note'] == ''


# ---------------------------------------------------------------------------------------------
# Gradescope

VISIBILITY = {'hidden', 'after_due_date', 'after_published', 'visible'}
FORMATS = {'text', 'html', 'simple_format', 'md', 'ansi'}
TOP_LEVEL = {'score': 'number', 'execution_time': 'number', 'output': str,
             'output_format': FORMATS, 'test_output_format': FORMATS,
             'test_name_format': FORMATS, 'visibility': VISIBILITY,
             'stdout_visibility': VISIBILITY, 'extra_data': dict, 'tests': list,
             'leaderboard': list}
PER_TEST = {'score': 'number', 'max_score': 'number', 'status': {'passed', 'failed'},
            'name': str, 'name_format': FORMATS, 'number': str, 'output': str,
            'output_format': FORMATS, 'tags': list, 'visibility': VISIBILITY,
            'extra_data': dict}


def _field_problems(where, document, fields):
    problems = []
    for key, value in document.items():
        kind = fields.get(key)
        if kind is None:
            problems.append('%s: %r is not a documented field' % (where, key))
        elif kind == 'number':
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                problems.append('%s: %s must be a number, not %r' % (where, key, value))
        elif isinstance(kind, set):
            if value not in kind:
                problems.append('%s: %s must be one of %s, not %r' % (where, key, sorted(kind),
                                                                      value))
        elif not isinstance(value, kind):
            problems.append('%s: %s must be a %s' % (where, key, kind.__name__))
    return problems


def gradescope_problems(text):
    """What in a results.json text departs from Gradescope's "Autograder Specifications"
    (output format, test case visibility and status, output string formatting), plus what this
    grader always writes: a top-level score, and per test name, score, max_score, output and
    visibility."""
    try:
        document = json.loads(text, parse_constant=lambda c: 1 / 0)  # no NaN or Infinity
    except (ValueError, ZeroDivisionError) as err:
        return ['not strict JSON: %s' % err]
    if not isinstance(document, dict):
        return ['the top level is not an object']
    problems = _field_problems('top level', document, TOP_LEVEL)
    if 'score' not in document:
        problems.append('no top-level score')
    if not isinstance(document.get('tests'), list):
        return problems + ['no list of tests']
    for i, test in enumerate(document['tests']):
        if not isinstance(test, dict):
            problems.append('test %d is not an object' % i)
            continue
        problems += _field_problems('test %d' % i, test, PER_TEST)
        problems += ['test %d: no %s' % (i, key) for key in
                     ('name', 'score', 'max_score', 'output', 'visibility') if key not in test]
        problems += ['test %d: tags must be strings' % i for tag in test.get('tags', [])
                     if not isinstance(tag, str)]
        if '\r' in test.get('output', ''):
            problems.append('test %d: output must use Unix line endings' % i)
    for i, entry in enumerate(document.get('leaderboard', [])):
        if not (isinstance(entry, dict) and isinstance(entry.get('name'), str)
                and 'value' in entry and entry.get('order', 'desc') in ('asc', 'desc')):
            problems.append('leaderboard entry %d needs a name and a value' % i)
    return problems


RECORDS = [
    {'assignment': ASSIGNMENT, 'test': 'test_a', 'hidden': False, 'points': 1, 'max_points': 1,
     'status': 'passed', 'reason': ''},
    {'assignment': ASSIGNMENT, 'test': 'test_b', 'hidden': False, 'points': 0, 'max_points': 2,
     'status': 'failed', 'reason': 'IoU of half-overlap differs', 'traceback': 'Trace\r\nback',
     'output': ''},
    {'assignment': ASSIGNMENT, 'test': 'test_c', 'hidden': True, 'points': 0, 'max_points': 3,
     'status': 'failed', 'reason': 'hidden test'}]


def test_gradescope_results_follow_the_documented_fields(tmp_path):
    path = tmp_path / 'results' / 'results.json'
    path.parent.mkdir()
    path.write_text('an older run')
    gradescope.write_results(str(path), RECORDS, seconds=12.4)
    assert os.listdir(str(path.parent)) == ['results.json']  # replaced, no temporary file left
    text = path.read_text()
    assert gradescope_problems(text) == []
    document = json.loads(text)
    assert document['score'] == 1 and document['execution_time'] == 12
    assert [(t['name'], t['score'], t['max_score'], t['visibility']) for t in document['tests']] \
        == [('a4_iou_loss: test_a', 1, 1, 'visible'), ('a4_iou_loss: test_b', 0, 2, 'visible'),
            ('a4_iou_loss: test_c', 0, 3, 'after_published')]
    assert document['tests'][1]['output'] == 'IoU of half-overlap differs\nTrace\nback'
    assert document['output'] == 'a4_iou_loss: 1/6'


def test_the_schema_check_rejects_what_the_documentation_does_not_allow():
    good = gradescope.results(RECORDS)
    assert gradescope_problems(json.dumps(good)) == []
    for change in (lambda d: d.pop('score'),
                   lambda d: d['tests'][2].update(visibility='after_publication'),
                   lambda d: d['tests'][0].update(score='1'),
                   lambda d: d['tests'][0].update(max_score=True),
                   lambda d: d['tests'][1].pop('max_score'),
                   lambda d: d['tests'][1].update(status='ok'),
                   lambda d: d['tests'][1].update(output='a\r\nb'),
                   lambda d: d.update(stdout_visibility='always'),
                   lambda d: d.update(tests={}),
                   lambda d: d.update(points=3)):
        bad = copy.deepcopy(good)
        change(bad)
        assert gradescope_problems(json.dumps(bad)), bad
    assert gradescope_problems('{"score": NaN, "tests": []}')


def test_gradescope_refuses_a_class_run(tmp_path, capsys):
    (tmp_path / 'class' / 'alice').mkdir(parents=True)
    assert grade.main(['--class-dir', str(tmp_path / 'class'), '--gradescope',
                       str(tmp_path / 'results.json')]) == 2
    assert '--gradescope' in capsys.readouterr().err
    assert not (tmp_path / 'results.json').exists()


def run_autograder_script():
    """The run_autograder script shown in docs/teachers.md."""
    blocks = re.findall(r'```sh\n(.*?)```', read(os.path.join(ROOT, 'docs', 'teachers.md')),
                        re.S)
    scripts = [b for b in blocks if '# run_autograder:' in b]
    assert len(scripts) == 1
    return scripts[0]


def test_run_autograder_grades_a_notebook_alone(dist, graded_pair, tmp_path):
    """The documented wrapper, on a folder laid out like Gradescope's /autograder, with the
    student's notebook uploaded alone: results.json as documented, scores as the .py's."""
    results, notebook, _, _ = graded_pair
    root = tmp_path / 'autograder'
    source = root / 'source'
    source.mkdir(parents=True)
    for name, target in (('.venv', sys.prefix), ('assignments', os.path.join(ROOT, 'assignments')),
                         ('utils', os.path.join(ROOT, 'utils')), ('dist', dist['out'])):
        os.symlink(target, str(source / name))
    (root / 'submission').mkdir()
    write(str(root / 'submission' / NOTEBOOK), json.dumps(notebook))
    script = tmp_path / 'run_autograder'
    write(str(script), run_autograder_script())
    script.chmod(0o755)
    run = subprocess.run([str(script)], env=dict(os.environ, AUTOGRADER_ROOT=str(root)),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout
    text = (root / 'results' / 'results.json').read_text()
    assert gradescope_problems(text) == []
    document = json.loads(text)
    expected = {'%s: %s' % (ASSIGNMENT, r['test']): r['points'] for r in results['script']}
    assert {t['name']: t['score'] for t in document['tests']} == expected
    assert document['score'] == POINTS_WITH_MISTAKE
    hidden = [t for t in document['tests'] if t['visibility'] == 'after_published']
    assert len(hidden) == 3 and all(t['output'] == 'hidden test' for t in hidden)
