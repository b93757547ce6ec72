"""The grader's modules import one another one way: no circle, imports inside functions
counted too. Read with `ast`, nothing imported: a second at most."""
import ast
import os

from tests.conftest import ROOT

PACKAGE = os.path.join(ROOT, 'assignments')


def imported_modules(path):
    """The modules of the assignments package that the file at `path` imports, anywhere in
    it (at the top, or inside a function)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + ['%s.%s' % (node.module, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):  # relative: from . import x, from .x import y
            names = ['assignments.%s' % (node.module or a.name) for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split('.')
            if parts[0] == 'assignments' and len(parts) > 1:
                found.add(parts[1])
    return found


def import_graph():
    modules = sorted(name[:-3] for name in os.listdir(PACKAGE)
                     if name.endswith('.py') and name != '__init__.py')
    return {m: sorted(imported_modules(os.path.join(PACKAGE, m + '.py')) & set(modules) - {m})
            for m in modules}


def a_circle(graph):
    """One circle of imports as a list of modules (first = last), or None."""
    state, path = {}, []

    def visit(module):
        state[module] = 'open'
        path.append(module)
        for other in graph.get(module, []):
            if state.get(other) == 'open':
                return path[path.index(other):] + [other]
            if other not in state:
                found = visit(other)
                if found:
                    return found
        state[module] = 'done'
        path.pop()
        return None
    for module in sorted(graph):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


def test_the_circle_finder_finds_one():
    assert a_circle({'a': ['b'], 'b': ['c'], 'c': ['a']}) == ['a', 'b', 'c', 'a']
    assert a_circle({'a': ['b', 'c'], 'b': ['c'], 'c': []}) is None


def test_function_level_imports_count(tmp_path):
    path = tmp_path / 'm.py'
    path.write_text('import os\nfrom assignments import a, b\n\n\ndef f():\n'
                    '    from assignments.c import x\n    import assignments.d\n'
                    '    s = "from assignments import e"\n')
    assert imported_modules(str(path)) == {'a', 'b', 'c', 'd'}


def test_the_grader_imports_run_one_way():
    graph = import_graph()
    assert 'grading' in graph['grade'] and 'tests_files' in graph['checks'], graph
    circle = a_circle(graph)
    assert circle is None, 'assignments/ imports in a circle: %s' % ' -> '.join(circle)
