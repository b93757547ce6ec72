"""The texts' functions are written once, on the chapter's page; `utils` holds copies.

A chapter marks a top-level definition (a `def`, a `class` or an assignment) that another
chapter, an assignment or a test reuses with a comment line right above it, naming the
`utils` module that keeps the copy (the role of d2l's `#@save`):

    # @save utils.pretrained.finetune
    def train_fine_tuning(net, ctx, train_imgs, test_imgs, ...):

The module holds the same lines, byte for byte, under a marker naming the chapter:

    # @saved from chapters/fine_tuning.py: edit it there, then `python -m bookgen.saved`
    def train_fine_tuning(net, ctx, train_imgs, test_imgs, ...):

A definition ends where Python's parser says it does (the last line of its last statement),
so the copy is found without an end marker. Names the definition uses must mean the same in
both files: the chapter and the module import them the same way (`utils.train` through
`import utils`, `nd` from mxnet, ...).

`python -m bookgen.saved` rewrites every copy from the chapters (a definition marked for the
first time is appended to its module); `python -m bookgen.saved --check` only lists the copies
that differ, as tests/test_saved_code.py does. Text, not the syntax tree, is compared: a
comment or a docstring edited on the page reaches the copy too.
"""
import argparse
import ast
import glob
import os
import re
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAVE = re.compile(r'# @save (utils(?:\.\w+)+)\s*$')
SAVED = re.compile(r'# @saved from (chapters/\w+\.py)\b')
COMMAND = 'python -m bookgen.saved'


def _statements(source):
    """{name: (first line, last line)} (0-based, inclusive) of the top-level definitions in
    `source`, decorators included; an assignment is named by its (first) target."""
    spans = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            spans[node.name] = (first - 1, node.end_lineno - 1)
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            spans[node.targets[0].id] = (node.lineno - 1, node.end_lineno - 1)
    return spans


def _marked(lines, spans, marker):
    """[(name, marker's match, (first, last))] of the definitions right under a marker line."""
    found = []
    for name, (first, last) in spans.items():
        match = marker.match(lines[first - 1]) if first > 0 else None
        if match:
            found.append((name, match, (first, last)))
    return found


def saved_in_chapters(root=ROOT):
    """[(chapter path, name, utils module, text)] of every definition a chapter marks."""
    saved = []
    for path in sorted(glob.glob(os.path.join(root, 'chapters', '*.py'))):
        with open(path, encoding='utf-8') as f:
            source = f.read()
        lines = source.splitlines(keepends=True)
        chapter = 'chapters/' + os.path.basename(path)
        for name, match, (first, last) in _marked(lines, _statements(source), SAVE):
            saved.append((chapter, name, match.group(1), ''.join(lines[first:last + 1])))
    return saved


def module_path(module, root=ROOT):
    return os.path.join(root, *module.split('.')) + '.py'


def copies_in(path):
    """{name: (chapter, text, (first, last))} of the saved copies in a utils module."""
    with open(path, encoding='utf-8') as f:
        source = f.read()
    lines = source.splitlines(keepends=True)
    return {name: (match.group(1), ''.join(lines[first:last + 1]), (first, last))
            for name, match, (first, last) in _marked(lines, _statements(source), SAVED)}


def differences(root=ROOT):
    """One line per copy that is missing, differs from its chapter, or has no chapter left."""
    problems, wanted = [], {}
    for chapter, name, module, text in saved_in_chapters(root):
        wanted.setdefault(module, {})[name] = chapter
        path = module_path(module, root)
        if not os.path.exists(path):
            problems.append('%s marks %s for %s, which does not exist' % (chapter, name, module))
            continue
        copy = copies_in(path).get(name)
        if copy is None:
            problems.append('%s has no saved copy of %s (%s): run `%s`'
                            % (module, name, chapter, COMMAND))
        elif copy[0] != chapter or copy[1] != text:
            problems.append('%s.%s differs from its source in %s: edit the chapter, then run '
                            '`%s`' % (module, name, chapter, COMMAND))
    for path in sorted(glob.glob(os.path.join(root, 'utils', '**', '*.py'), recursive=True)):
        module = os.path.relpath(path, root)[:-3].replace(os.sep, '.')
        for name, (chapter, _, _) in copies_in(path).items():
            if wanted.get(module, {}).get(name) != chapter:
                problems.append('%s.%s says it is saved from %s, which does not mark it with '
                                '`# @save %s`' % (module, name, chapter, module))
    return problems


def _write(path, text):
    """Replace `path` atomically (temp file in the same folder, then rename)."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.saved-')
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            f.write(text)
        os.chmod(tmp, os.stat(path).st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def sync(root=ROOT):
    """Rewrite every utils copy from its chapter; return the modules changed."""
    by_module = {}
    for chapter, name, module, text in saved_in_chapters(root):
        by_module.setdefault(module, []).append((chapter, name, text))
    changed = []
    for module, items in sorted(by_module.items()):
        path = module_path(module, root)
        with open(path, encoding='utf-8') as f:
            lines = f.read().splitlines(keepends=True)
        copies = copies_in(path)
        # replace from the bottom up so earlier line numbers stay right
        for chapter, name, text in sorted(
                items, key=lambda item: -copies.get(item[1], (0, 0, (-1, -1)))[2][0]):
            header = ('# @saved from %s: edit it there, then `%s`\n' % (chapter, COMMAND))
            if name in copies:
                first, last = copies[name][2]
                lines[first - 1:last + 1] = [header, text]
            else:
                if lines and not lines[-1].endswith('\n'):
                    lines[-1] += '\n'
                lines += ['\n', '\n', header, text]
        new = ''.join(lines)
        with open(path, encoding='utf-8') as f:
            if f.read() != new:
                _write(path, new)
                changed.append(module)
    return changed


def main(argv=None):
    parser = argparse.ArgumentParser(prog='bookgen.saved', description=__doc__.split('\n')[0])
    parser.add_argument('--check', action='store_true',
                        help='list the copies that differ from their chapter, change nothing')
    args = parser.parse_args(argv)
    if args.check:
        problems = differences()
        for line in problems:
            print(line)
        return 1 if problems else 0
    for module in sync():
        print('rewrote %s' % module)
    problems = differences()
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
