"""docs/fidelity.md: one table per source text; every chapter cell heading and test it names
exists, every row says how the item was ported."""
import ast
import os
import re

from tests.conftest import ROOT

DOC = os.path.join(ROOT, 'docs', 'fidelity.md')
TEXTS = ('000', '001', '002', '003', '004')
STATUSES = ('ported', 'changed', 'not ported')
COLUMNS = ['item of the text', 'kind', 'chapter', 'cell heading', 'status']


def cell_headings(path):
    """Headings of the markdown cells (`# %% [markdown]`) of a percent-format script."""
    headings, in_markdown = set(), False
    with open(path, encoding='utf-8') as f:
        for line in f:
            if line.startswith('# %%'):
                in_markdown = line.strip() == '# %% [markdown]'
                continue
            match = re.match(r'# #+ (.+)', line.rstrip('\n'))
            if in_markdown and match:
                headings.add(match.group(1).strip())
    return headings


def function_names(path):
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def parse_tables(text):
    """{text number: [row dict]} from '## Text NNN' sections, each with one table."""
    tables, current = {}, None
    for line in text.splitlines():
        match = re.match(r'## Text (\d{3})\b', line)
        if match:
            current = tables.setdefault(match.group(1), [])
            continue
        if current is None or not line.startswith('|'):
            continue
        cells = [c.strip() for c in line.strip().strip('|').split(' | ')]
        if cells == COLUMNS or set(line) <= set('|- '):
            continue  # header and separator lines
        current.append(dict(zip(COLUMNS, cells), width=len(cells), line=line))
    return tables


def location_problem(row, root):
    """None if the row's chapter and heading (or test file and test) exist, else why not."""
    chapter, heading = row['chapter'], row['cell heading']
    if chapter.startswith('tests/'):
        path = os.path.join(root, chapter)
        if not os.path.exists(path):
            return 'no test file %s' % chapter
        if heading not in function_names(path):
            return 'no test %s in %s' % (heading, chapter)
        return None
    path = os.path.join(root, 'chapters', chapter + '.py')
    if not os.path.exists(path):
        return 'no chapter %s' % chapter
    if heading not in cell_headings(path):
        return 'no cell heading %r in %s' % (heading, chapter)
    return None


def problems(text, root):
    """Every wrong row of a fidelity document, one line each."""
    found = []
    tables = parse_tables(text)
    found += ['no table for text %s' % t for t in TEXTS if not tables.get(t)]
    for number, rows in tables.items():
        for row in rows:
            where = 'text %s, %r' % (number, row['item of the text'][:50])
            if row['width'] != len(COLUMNS):
                found.append('%s: %d columns, not %d' % (where, row['width'], len(COLUMNS)))
                continue
            status = row['status']
            kind = next((s for s in STATUSES if status.startswith(s)), None)
            if kind is None:
                found.append('%s: status %r is none of %s' % (where, status, STATUSES))
                continue
            if kind != 'ported' and not status[len(kind):].lstrip(': ').strip():
                found.append('%s: %r without a reason' % (where, kind))
            if kind == 'not ported':
                if (row['chapter'], row['cell heading']) != ('-', '-'):
                    found.append('%s: not ported, yet a place is named' % where)
                continue
            problem = location_problem(row, root)
            if problem:
                found.append('%s: %s' % (where, problem))
    return found


def read_doc():
    with open(DOC, encoding='utf-8') as f:
        return f.read()


def test_every_row_of_the_fidelity_tables_names_a_real_place():
    assert problems(read_doc(), ROOT) == []


def test_every_text_has_its_rows():
    tables = parse_tables(read_doc())
    assert sorted(tables) == list(TEXTS)
    assert all(len(tables[t]) >= 15 for t in TEXTS), {t: len(r) for t, r in tables.items()}


MADE_UP = """
## Text 000: a made-up text

| item of the text | kind | chapter | cell heading | status |
|---|---|---|---|---|
| a real heading | section | fine_tuning | Getting the data | ported |
| a wrong heading | section | fine_tuning | Getting the daat | ported |
| a wrong chapter | section | fine_tunning | Getting the data | ported |
| a real test | exercise | tests/test_detection.py | test_decode_thresholds | changed: a test |
| a wrong test | exercise | tests/test_detection.py | test_no_such_thing | changed: a test |
| no reason | listing | fine_tuning | Conclusion | changed |
| a place for nothing | listing | fine_tuning | Conclusion | not ported: why |
| an unknown status | listing | fine_tuning | Conclusion | done |
| too few cells | listing | fine_tuning | ported |
"""


def test_a_made_up_table_with_wrong_rows_is_caught():
    found = problems(MADE_UP, ROOT)
    assert [p for p in found if p.startswith('no table')] == [
        'no table for text %s' % t for t in TEXTS[1:]]
    rows = [p.split(': ', 1)[1] for p in found if p.startswith('text 000')]
    assert rows == [
        "no cell heading 'Getting the daat' in fine_tuning",
        'no chapter fine_tunning',
        'no test test_no_such_thing in tests/test_detection.py',
        "'changed' without a reason",
        'not ported, yet a place is named',
        "status 'done' is none of ('ported', 'changed', 'not ported')",
        '4 columns, not 5',
    ], found


def test_headings_come_only_from_markdown_cells(tmp_path):
    script = tmp_path / 'chapter.py'
    script.write_text('# %% [markdown]\n# # Title\n#\n# ## Part one\n\n# %%\n# ## not a cell '
                      'heading\nx = 1\n# %% [markdown]\n# ### Part two\n')
    assert cell_headings(str(script)) == {'Title', 'Part one', 'Part two'}
