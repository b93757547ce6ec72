"""The assignments' tests files (tests.py, or public_tests.py in a student's copy).

The grader reads them without running them: which checks are graded, for how many points,
and the probe each one judges (`read_tests`); the part of the file the probes need, which is
all the sandbox is given (`probe_source`). Only a check process runs a tests file, loaded as a
module (`tests_module`), and never with student code.
"""
import ast
import os
import re
import threading

from assignments import markers
from utils.files import load_module

ASSIGNMENT_DIR = re.compile(r'^a\d+_\w+$')
parse_lock = threading.Lock()  # ast.parse from several threads at once fails in Python 3.11


class GradeError(Exception):
    """Bad command-line input, or a set-up that cannot grade: shown as one line."""


class Test:
    """One graded check and the probe whose observations it judges."""

    def __init__(self, assignment, name, points, probe, timeout, hidden, probe_hidden,
                 tests_file, submission_file):
        self.assignment, self.name, self.points = assignment, name, points
        self.probe, self.timeout, self.hidden, self.probe_hidden = probe, timeout, hidden, \
            probe_hidden
        self.tests_file, self.submission_file = tests_file, submission_file


def _decorator(node, name):
    for deco in node.decorator_list:
        if isinstance(deco, ast.Call) and getattr(deco.func, 'id', '') == name:
            args = [a.id if isinstance(a, ast.Name) else ast.literal_eval(a)
                    for a in deco.args]
            kwargs = {k.arg: k.value.id if isinstance(k.value, ast.Name)
                      else ast.literal_eval(k.value) for k in deco.keywords}
            return args, kwargs
    return None


def tests_path(folder):
    for name in ('tests.py', 'public_tests.py'):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    return None


def read_tests(folder):
    """The graded tests of one assignment folder (tests.py, else public_tests.py)."""
    assignment = os.path.basename(folder)
    path = tests_path(folder)
    if path is None:
        return []
    with open(path) as f:
        text = f.read()
    hidden = markers.hidden_lines(text, path)
    tree = ast.parse(text, path)
    submission_file, probes, checks = None, {}, []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', '') == 'SUBMISSION_FILE'
                                                for t in node.targets):
            submission_file = ast.literal_eval(node.value)
        if not isinstance(node, ast.FunctionDef):
            continue
        found = _decorator(node, 'probe')
        if found is not None:
            args, kwargs = found
            probes[node.name] = (kwargs.get('timeout', args[0] if args else 30),
                                 node.lineno in hidden)
        found = _decorator(node, 'graded')
        if found is not None:
            args, kwargs = found
            checks.append((node, kwargs.get('points', args[0] if args else None),
                           kwargs.get('probe', args[1] if len(args) > 1 else None)))
    if submission_file is None:
        raise GradeError('%s does not name its SUBMISSION_FILE' % path)
    tests = []
    for node, points, probe in checks:
        if probe not in probes:
            raise GradeError('%s:%d: %s judges %r, which is no @probe of the file'
                             % (path, node.lineno, node.name, probe))
        timeout, probe_hidden = probes[probe]
        tests.append(Test(assignment, node.name, points, probe, timeout,
                          node.lineno in hidden, probe_hidden, path, submission_file))
    return tests


def read_all_tests(tests_root, only=None):
    folders = sorted(d for d in os.listdir(tests_root) if ASSIGNMENT_DIR.match(d)
                     and os.path.isdir(os.path.join(tests_root, d)))
    if only:
        unknown = set(only) - set(folders)
        if unknown:
            raise GradeError('no assignment %s in %s (there are: %s)'
                             % (', '.join(sorted(unknown)), tests_root, ', '.join(folders)))
        folders = [f for f in folders if f in only]
    tests = [t for f in folders for t in read_tests(os.path.join(tests_root, f))]
    if not tests:
        raise GradeError('no graded tests found in %s' % tests_root)
    return tests


def probe_source(text, names, path='<tests>'):
    """The part of a tests file that the probes `names` need: the imports and, transitively,
    the top-level definitions they use. Checks, and helpers only checks use, stay out."""
    with parse_lock:
        tree = ast.parse(text, path)
    lines = text.splitlines(keepends=True)
    defined, imports = {}, []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(node)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        defined[leaf.id] = node
    needed, stack = set(), list(names)
    while stack:
        node = defined.get(stack.pop())
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        stack += [n.id for n in ast.walk(node) if isinstance(n, ast.Name)]
    out = []
    for node in tree.body:
        if node in imports or id(node) in needed:
            first = min([node.lineno] + [d.lineno for d in getattr(node, 'decorator_list', [])])
            out.append(''.join(lines[first - 1:node.end_lineno]))
    return '\n\n'.join(out) + '\n'


_modules = {}


def tests_module(path):
    """The tests file as a module (in a check process; never given student code)."""
    path = os.path.realpath(path)
    with parse_lock:  # compiling it races with probe_source's ast.parse in Python 3.11
        if path not in _modules:
            import utils  # noqa: F401  (before the tests import MXNet: the numpy names it needs)
            _modules[path] = load_module(path, 'graded_tests_%d' % len(_modules))
    return _modules[path]
