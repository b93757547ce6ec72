"""Assignments as Jupyter notebooks: the handed-out notebook, and what is graded in a submitted one.

The build writes, next to each file to complete, a notebook of the same name (`boxes.ipynb`
next to `boxes.py`):

- the statement, in markdown cells;
- the file to complete, cut at its top-level functions and classes into code cells that the
  build marks as graded: the cell's metadata (`gluon_transfer.graded`) and a first line
  `# GRADED CELL ...` the student sees;
- one cell per public test, which prints the test's feedback line (PASS or FAIL, points, why).

From a submitted notebook the grader takes only the cells the build marked, in the notebook's
order, and grades them as the file to complete. Every other cell, the outputs and IPython's
magics (`%timeit`, `!pip`, `%%time`, ...) are left out, so nothing a student writes outside the
graded cells reaches the graded file. The notebooks are nbformat 4.5, built and validated with
nbformat's v4 builders; grading reads them as plain JSON, within size limits, and needs no
`nbformat` package (nor does a student's kernel).
"""
import ast
import hashlib
import json
import os
import re
import types

SUFFIX = '.ipynb'
META = 'gluon_transfer'  # the key of this project's metadata, in the notebook and its cells
MARKER = '# GRADED CELL'
MARKER_LINE = MARKER + ': only cells like this one are graded; keep your whole answer in them'
# The grader reads a notebook as JSON and parses its graded cells: both cost many times their
# size (16 MB of JSON up to 0.4 GB; 64 KB of `0;0;...` code about 60 MB as a syntax tree).
SIZE_LIMIT = 16 * 2**20  # bytes: a larger notebook is not read
GRADED_LIMIT = 64 * 2**10  # characters: the graded cells together, more are not parsed
# a line IPython runs as a magic or a shell command: %magic, !cmd, x = %magic, x = !cmd, name?
_MAGIC_LINE = re.compile(r'^\s*(?:[A-Za-z_][\w.]*\s*=\s*)?[%!]|^\s*\?|^\s*[\w.]+\?\??\s*$')
# cell magics whose body is Python, run as usual: only their first line is dropped
_PYTHON_CELL_MAGICS = ('%%time', '%%timeit', '%%capture', '%%prun')


class NotebookError(ValueError):
    """A submitted notebook that cannot be graded; the message names the file."""


def notebook_name(submission_file):
    """`boxes.py` -> `boxes.ipynb`."""
    return os.path.splitext(submission_file)[0] + SUFFIX


# ---------------------------------------------------------------------------------------------
# Building the notebook handed out

def code_cells(source):
    """The file cut into top-level pieces: what comes before the first function or class, then
    each function or class with its decorators and the comment lines right above it."""
    lines = source.splitlines(keepends=True)
    starts = [0]
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            while first > 0 and lines[first - 1].lstrip().startswith('#'):
                first -= 1
            if first > starts[-1]:
                starts.append(first)
    pieces = [''.join(lines[a:b]).strip('\n') for a, b in zip(starts, starts[1:] + [len(lines)])]
    return [p for p in pieces if p.strip()]


def _markdown_cells(text):
    """Markdown cut before each heading."""
    cells, current = [], []
    for line in text.splitlines():
        if line.startswith('#') and any(c.strip() for c in current):
            cells.append('\n'.join(current).strip('\n'))
            current = []
        current.append(line)
    if any(c.strip() for c in current):
        cells.append('\n'.join(current).strip('\n'))
    return cells


def _handout_hash(text):
    return hashlib.sha256(text.replace('\r\n', '\n').encode('utf-8')).hexdigest()


def how_to_work(submission_file):
    name = notebook_name(submission_file)
    return '\n'.join([
        '## Working in this notebook',
        '',
        'Write your answers in the cells that start with `%s`: they hold `%s`, cut at its '
        'functions, with `raise NotImplementedError()` where your code goes.' % (
            MARKER, submission_file),
        '',
        '**Only these cells are graded**, in this order, as if they were `%s`. Everything else '
        'in the notebook is left out: other cells, outputs, and IPython magics such as '
        '`%%timeit` or `!pip` (also inside graded cells). So a helper function or an import '
        'your answer needs goes inside a graded cell.' % submission_file,
        '',
        'Hand in this notebook, `%s`, in place of `%s`. When both are handed in, `%s` is '
        'graded, unless it is still exactly as it was handed out.' % (
            name, submission_file, submission_file),
        '',
        'The cells at the end run the public tests on what you defined above; each prints '
        'PASS or FAIL and why. Run the graded cells again after a change. From the folder '
        'above `assignments/`, `python -m assignments.grade .` grades the saved notebook the '
        'way your teacher does (your teacher also has hidden tests).'])


def _nbformat():
    """nbformat, imported when a notebook is built: grading and a student's kernel do
    without it."""
    try:
        import nbformat
    except ImportError:
        raise ImportError('building the notebooks handed out needs nbformat: pip install '
                          'nbformat, or make venv', name='nbformat') from None
    return nbformat


def build_notebook(assignment, statement, student_source, submission_file, public_tests):
    """The handed-out notebook (an nbformat 4.5 notebook node, a dict), validated.

    public_tests: [(test name, points)] of the public tests, in their file's order.
    """
    nbformat = _nbformat()
    new_cell = {'markdown': nbformat.v4.new_markdown_cell, 'code': nbformat.v4.new_code_cell}
    cells = []

    def add(kind, source, **metadata):
        cell_id = '%s-%02d' % (assignment.replace('_', '-'), len(cells) + 1)
        cells.append(new_cell[kind](source, id=cell_id, metadata=metadata))

    locked = {'editable': False, 'deletable': False}
    for text in _markdown_cells(statement):
        add('markdown', text, **locked)
    add('markdown', how_to_work(submission_file), **locked)
    # before the answers: they import MXNet, which on numpy 2 needs the names utils puts back
    add('code', '\n'.join([
        '# Not graded: loads the grader, two folders up, to run the public tests here',
        'import os',
        'import sys',
        '',
        "sys.path.insert(0, os.path.abspath(os.path.join('..', '..')))",
        'import utils  # noqa: F401  (before MXNet: the numpy names it needs)',
        'from assignments.notebooks import public_test']), **locked)
    for piece in code_cells(student_source):
        add('code', MARKER_LINE + '\n' + piece, deletable=False,
            **{META: {'graded': True, 'file': submission_file}})
    add('markdown', '## Public tests\n\nEach cell runs one public test on the functions '
        'defined above and prints its feedback line.', **locked)
    for name, points in public_tests:
        add('code', "public_test(%r, %r, globals())  # %g point%s" % (
            assignment, name, points, '' if points == 1 else 's'), **locked)
    notebook = nbformat.v4.new_notebook(cells=cells, metadata={
        'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'},
        'language_info': {'name': 'python'},
        META: {'assignment': assignment, 'file': submission_file,
               'handout_sha256': _handout_hash(student_source)}})
    nbformat.validate(notebook)
    return notebook


def write_notebook(folder):
    """Write the notebook of the student's assignment folder (statement.md, the file to
    complete and public_tests.py, as the build wrote them) next to the file to complete."""
    from assignments.tests_files import read_tests  # the tests are read the grader's way
    tests = read_tests(folder)
    submission_file = tests[0].submission_file
    with open(os.path.join(folder, 'statement.md')) as f:
        statement = f.read()
    with open(os.path.join(folder, submission_file)) as f:
        student_source = f.read()
    notebook = build_notebook(os.path.basename(folder), statement, student_source,
                              submission_file, [(t.name, t.points) for t in tests])
    path = os.path.join(folder, notebook_name(submission_file))
    # split_lines=False: each cell's source stays one string in the file, as it always was
    _nbformat().write(notebook, path, split_lines=False)
    return path


# ---------------------------------------------------------------------------------------------
# Grading a submitted notebook

def _read_notebook(path):
    if os.path.islink(path):  # it could name another student's notebook
        raise NotebookError('%s is a symbolic link: hand in the notebook itself' % path)
    size = os.path.getsize(path)
    if size > SIZE_LIMIT:
        raise NotebookError('%s is %d MB, more than the %d MB a notebook may have: clear its '
                            'outputs and hand it in again' % (path, size // 2**20,
                                                              SIZE_LIMIT // 2**20))
    with open(path, 'rb') as f:
        data = f.read()
    try:
        notebook = json.loads(data.decode('utf-8'))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        why = (str(err).splitlines() or [type(err).__name__])[0][:120]
        raise NotebookError('%s is not a notebook (not valid JSON: %s): hand in the notebook '
                            'as Jupyter saved it' % (path, why))
    if not isinstance(notebook, dict) or not isinstance(notebook.get('cells'), list):
        raise NotebookError('%s is not a notebook (no list of cells): hand in the notebook '
                            'as Jupyter saved it' % path)
    return notebook


def _text(source):
    """A cell's source: a string, or (in the file) a list of lines."""
    if isinstance(source, list):
        return ''.join(s for s in source if isinstance(s, str))
    return source if isinstance(source, str) else ''


def _is_graded(cell):
    if not isinstance(cell, dict) or cell.get('cell_type') != 'code':
        return False
    metadata = cell.get('metadata')
    mark = metadata.get(META) if isinstance(metadata, dict) else None
    return isinstance(mark, dict) and mark.get('graded') is True


def without_magics(source):
    """A graded cell's code without what IPython runs as magics or shell commands."""
    lines = source.splitlines()
    if lines and lines[0].lstrip().startswith('%%'):
        if lines[0].split()[0] not in _PYTHON_CELL_MAGICS:
            return ''  # the body is not Python (%%bash, %%writefile, ...)
        lines = lines[1:]
    text = '\n'.join(lines)
    try:
        ast.parse(text)
        return text  # valid Python: a line starting with % is a continued expression
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        pass  # not Python as it stands (a null byte, nesting too deep: the grading says so)
    kept = []
    for line in lines:
        if _MAGIC_LINE.match(line):
            indent = line[:len(line) - len(line.lstrip())]
            kept.append(indent + 'pass  # left out when graded: ' + line.strip())
        else:
            kept.append(line)
    return '\n'.join(kept)


def solution_source(notebook, path='<notebook>'):
    """The graded cells of a notebook (a dict), joined into the text of the file to grade."""
    graded = [cell for cell in notebook.get('cells', []) if _is_graded(cell)]
    size = sum(len(_text(cell.get('source'))) for cell in graded)
    if size > GRADED_LIMIT:
        raise NotebookError('%s: its graded cells hold %d KB of code, more than the %d KB '
                            'allowed: keep data and output out of them' % (
                                path, size // 2**10, GRADED_LIMIT // 2**10))
    pieces = []
    for cell in graded:
        lines = _text(cell.get('source')).splitlines()
        if lines and lines[0].startswith(MARKER):
            lines = lines[1:]
        piece = without_magics('\n'.join(lines)).strip('\n')
        if piece.strip():
            pieces.append(piece)
    if not graded:
        raise NotebookError('%s has no graded cell (the cells marked "%s" in the notebook '
                            'handed out): write your answers in those cells and hand it in '
                            'again' % (path, MARKER))
    return '\n\n\n'.join(pieces) + '\n'


def graded_text(path):
    """What is graded of a submission file: None for a .py file (graded as it is), the
    graded cells' code for a notebook. Raises NotebookError naming the file."""
    if not path.endswith(SUFFIX):
        return None
    return solution_source(_read_notebook(path), path)


def pick_submission(folder, submission_file):
    """The file to grade in one assignment folder of a submission, or None: the .py file,
    else the notebook; the notebook too when the .py is still exactly as handed out. A .py
    that is a symbolic link counts as absent (it could name another student's file)."""
    script = os.path.join(folder, submission_file)
    notebook = os.path.join(folder, notebook_name(submission_file))
    script_found = os.path.isfile(script) and not os.path.islink(script)
    if not os.path.isfile(notebook):
        return script if script_found else None
    if not script_found:
        return notebook
    try:
        handed_out = _read_notebook(notebook)['metadata'][META]['handout_sha256']
        if os.path.getsize(script) > SIZE_LIMIT:  # not what was handed out: not read
            return script
        with open(script, 'rb') as f:
            untouched = _handout_hash(f.read().decode('utf-8')) == handed_out
    except (NotebookError, KeyError, TypeError, UnicodeDecodeError, OSError):
        untouched = False
    return notebook if untouched else script


# ---------------------------------------------------------------------------------------------
# Public tests run inside the notebook

_loaded_tests = {}


def _public_tests(assignment):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), assignment,
                        'public_tests.py')
    if path not in _loaded_tests:
        from utils.files import load_module
        module = load_module(path, 'public_tests_' + assignment)
        if hasattr(module, 'prepare'):
            module.prepare()
        _loaded_tests[path] = module
    return _loaded_tests[path]


def public_test(assignment, test_name, namespace):
    """Run one public test on the names a notebook defined (its `globals()`) as the grader
    runs it, but in the student's own kernel: the test's probe, seeded as in a probe process,
    on those names; its observations packed and unpacked as the grader receives them; then
    the check on them. Print the feedback line (nothing returned: the cell shows only it)."""
    import utils  # noqa: F401  (before MXNet: the numpy names it needs)
    import mxnet as mx
    from utils.training.loop import seed_everything
    from assignments import runner
    from assignments.checks import judge
    from assignments.observations import decode
    check = getattr(_public_tests(assignment), test_name)
    points = getattr(check, 'points', 0)
    seed_everything(runner.SEED)
    try:
        returned = check.probe(types.SimpleNamespace(**namespace))
        mx.nd.waitall()  # MXNet runs asynchronously: every pending write done before reading
        seen = decode(runner.encode(returned))
    except NotImplementedError:
        seen, why = None, 'not implemented yet'
    except Exception as err:  # the feedback line says what went wrong, as the grader does
        seen, why = None, runner.first_line(err)
    if seen is not None:
        why = judge(check, seen)[1]  # '' when it passed
    print('%s  %s  %g/%g%s' % ('FAIL' if why else 'PASS', test_name, 0 if why else points,
                               points, '  ' + why if why else ''))
