"""`make book`: the chapters as a static, offline site in book/.

    python -m bookgen.build [--chapters fine_tuning,train_basics] [--out book]

Each chapter is executed cell by cell in a Jupyter kernel with the --quick settings (or taken
from the cache when nothing it depends on has changed: bookgen.execute), then every page is
written into a temporary folder that replaces book/ only when all of them are done.
"""
import argparse
import glob
import html
import json
import os
import posixpath
import re
import shutil
import signal
import sys
import tempfile
import time

from bookgen import execute, render
from chapters import READING_ORDER
from utils.errors import OneLineParser
from utils.files import exclusive_lock, replace_folder

ROOT = execute.ROOT
README = 'README.md'
TEXTS_SECTION = 'The texts it follows'  # the README section the index page carries too


def readme_sections(text):
    """{heading: body} of the README's level-2 sections, and the text before the first."""
    parts = re.split(r'^## (.+)$', text, flags=re.M)
    sections = {'': parts[0]}
    for title, body in zip(parts[1::2], parts[2::2]):
        sections[title.strip()] = body
    return sections


def chapter_table(readme):
    """The README's chapter table as rows of cells ({'#', 'chapter', ...}), or []: what the
    index page says of each chapter (the order is chapters.READING_ORDER's)."""
    rows, header = [], None
    for line in readme.splitlines():
        if not line.startswith('|'):
            if header and rows:
                break
            continue
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if header is None:
            if any('chapter' == c.lower() for c in cells):
                header = [c.lower() for c in cells]
            continue
        if set(''.join(cells)) <= set('-: '):
            continue
        row = dict(zip(header, cells))
        name = re.sub(r'[`*\s]', '', row.get('chapter', ''))
        if name:
            row['name'] = name
            rows.append(row)
    return rows


def all_chapters(chapters_dir):
    return sorted(os.path.basename(p)[:-3]
                  for p in glob.glob(os.path.join(chapters_dir, '[a-z]*.py')))


def reading_order(chapters_dir):
    """The chapters in chapters.READING_ORDER, then any other chapter of `chapters_dir`."""
    known = all_chapters(chapters_dir)
    listed = [c for c in READING_ORDER if c in known]
    return listed + [c for c in known if c not in listed]


def other_pages():
    """{repository path: book path} of the markdown the book carries besides the chapters:
    docs/, the assignments' statements, the other README files and CONTRIBUTING.md."""
    routes = {}
    for path in sorted(glob.glob(os.path.join(ROOT, 'docs', '*.md'))):
        name = os.path.basename(path)[:-3]
        routes['docs/%s.md' % name] = 'docs/%s.html' % name
    for path in sorted(glob.glob(os.path.join(ROOT, 'assignments', '*', 'statement.md'))):
        name = os.path.basename(os.path.dirname(path))
        routes['assignments/%s/statement.md' % name] = 'assignments/%s.html' % name
    for path in sorted(glob.glob(os.path.join(ROOT, '*', 'README.md'))):
        folder = os.path.basename(os.path.dirname(path))
        if folder not in ('book', 'notebooks', 'dist') and not folder.startswith('.'):
            routes['%s/README.md' % folder] = 'docs/%s-README.html' % folder
    if os.path.exists(os.path.join(ROOT, 'CONTRIBUTING.md')):
        routes['CONTRIBUTING.md'] = 'docs/CONTRIBUTING.html'
    return routes


def read(path):
    with open(os.path.join(ROOT, path), encoding='utf-8') as f:
        return f.read()


def parse_args(argv):
    p = OneLineParser(prog='python -m bookgen.build', description=__doc__.split(
        '\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--chapters', default='',
                   help='comma-separated chapters to build (default: all, in reading order)')
    p.add_argument('--out', default=os.path.join(ROOT, 'book'), help='the book folder')
    p.add_argument('--cache', default=os.path.join(ROOT, '.book-cache'),
                   help='executed chapters, by cache key')
    p.add_argument('--settings', default=execute.SETTINGS,
                   help='the chapters\' settings (default %(default)r)')
    p.add_argument('--chapters-dir', default=os.path.join(ROOT, 'chapters'),
                   help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    args = parse_args(argv)
    # a `kill` stops the chapter's kernel too (nbclient shuts it down on the way out)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return build(args)
    except KeyboardInterrupt:
        print('book: interrupted; %s is as it was' % os.path.relpath(args.out), file=sys.stderr)
        return 130


def build(args):
    start = time.time()
    readme = read(README)
    order = reading_order(args.chapters_dir)
    wanted = [c.strip() for c in args.chapters.replace(' ', ',').split(',') if c.strip()]
    unknown = [c for c in wanted if c not in order]
    if unknown:
        print('book: no chapter %s in chapters/; the chapters are %s'
              % (', '.join(unknown), ', '.join(order)), file=sys.stderr)
        return 2
    chosen = [c for c in order if c in wanted] if wanted else order
    with one_build_at_a_time(args.cache):
        return execute_and_write(args, readme, order, chosen, start)


def one_build_at_a_time(cache):
    """Hold the build lock of the cache folder while building. A second `make book` in the
    same checkout (two users of one machine, two terminals) waits, then takes the chapters the
    first one executed from the cache, instead of executing them again and racing it to swap
    book/."""
    return exclusive_lock(os.path.join(cache, 'build'), waiting='book: another build is using '
                          '%s; waiting for it to finish' % os.path.relpath(cache))


def execute_and_write(args, readme, order, chosen, start):
    # 1. Execute (or take from the cache) every chosen chapter; nothing is written to the
    #    book before all of them have run.
    versions = execute.package_versions()
    notebooks = {}
    for i, chapter in enumerate(chosen, 1):
        step = '[%d/%d] %s' % (i, len(chosen), chapter)
        source = os.path.join(args.chapters_dir, chapter + '.py')
        nb, facts, path = execute.cached(chapter, args.cache, args.settings, versions, source)
        if nb is not None:
            print('%s: cached (executed %s in %.1f s)'
                  % (step, facts['date'], facts['wall_seconds']), flush=True)
        else:
            print('%s: executing with %s ...' % (step, args.settings), flush=True)
            try:
                nb, facts = execute.execute(chapter, args.settings, source=source)
            except execute.ChapterFailed as e:
                print(str(e), file=sys.stderr)
                return 1
            execute.store(nb, facts, path)
            print('%s: done in %.1f s' % (step, facts['wall_seconds']), flush=True)
        notebooks[chapter] = (nb, facts)

    # 2. Render into a temporary folder beside the book, then swap it in.
    out = os.path.abspath(args.out)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.book-', dir=parent)
    try:
        pages = write_book(tmp, readme, order, notebooks)
        os.chmod(tmp, 0o755)
        replace_folder(tmp, out)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    print('book: %d chapter page(s) and %d other page(s) in %s (open %s) in %.1f s'
          % (len(notebooks), pages - len(notebooks), os.path.relpath(out),
             os.path.relpath(os.path.join(out, 'index.html')), time.time() - start))
    return 0


def write_book(out_dir, readme, order, notebooks):
    """Every page of the book into out_dir; returns how many."""
    routes = {README: 'index.html'}
    routes.update({'chapters/%s.py' % c: '%s.html' % c for c in notebooks})
    extra = other_pages()
    routes.update(extra)
    site = render.Site(routes, ROOT)
    pages = []

    # chapters
    for chapter in notebooks:
        nb, facts = notebooks[chapter]
        page = render.Page('%s.html' % chapter, 'chapters/%s.py' % chapter)
        site.notebook(page, nb, os.path.join(out_dir, '_figures', chapter),
                      '_figures/%s' % chapter)
        page.parts.insert(1 if nb.cells and nb.cells[0].cell_type == 'markdown' else 0,
                          run_facts(chapter, facts))  # under the title
        pages.append(page)
    chapter_pages = list(pages)
    titles = {p.source[len('chapters/'):-3]: p.title for p in chapter_pages}

    # the other markdown pages
    for source, path in extra.items():
        page = render.Page(path, source)
        site.markdown(page, read(source))
        pages.append(page)

    index = render.Page('index.html', README, title='gluon-transfer')
    index_body(site, index, readme, order, titles, extra)
    pages.insert(0, index)

    def sidebar(page):
        def item(path, label, here):
            if path is None:
                return '<li class="absent" title="not in this build">%s</li>' % html.escape(label)
            href = posixpath.relpath(path, posixpath.dirname(page.path) or '.')
            current = ' aria-current="page"' if path == here else ''
            return '<li><a href="%s"%s>%s</a></li>' % (href, current, html.escape(label))

        parts = ['<p>Chapters</p><ul>', item('index.html', 'Start here', page.path)]
        for chapter in order:
            parts.append(item(routes.get('chapters/%s.py' % chapter), chapter, page.path))
        parts.append('</ul><p>Assignments</p><ul>')
        for source, path in extra.items():
            if source.startswith('assignments/'):
                parts.append(item(path, source.split('/')[1], page.path))
        parts.append('</ul><p>Docs</p><ul>')
        for source, path in extra.items():
            if not source.startswith('assignments/'):
                parts.append(item(path, source, page.path))
        parts.append('</ul>')
        return ''.join(parts)

    sequence = [index] + chapter_pages
    for page in pages:
        prevnext = ''
        if page in sequence:
            i = sequence.index(page)
            links = []
            if i > 0:
                links.append(('prev', sequence[i - 1], '← '))
            if i + 1 < len(sequence):
                links.append(('next', sequence[i + 1], ''))
            prevnext = '<nav class="prevnext">%s</nav>' % ''.join(
                '<a class="%s" rel="%s" href="%s">%s%s%s</a>' % (
                    kind, kind, posixpath.relpath(other.path, posixpath.dirname(page.path)
                                                  or '.'),
                    arrow, html.escape(other.title or other.path),
                    ' →' if kind == 'next' else '')
                for kind, other, arrow in links)
        site.write(page, out_dir, sidebar, prevnext)
    site.copy_images(out_dir)
    entries = [e for page in pages for e in site.search_entries(page)]
    render.write_static(out_dir, entries)
    manifest = {'chapters': [{'page': page.path, 'title': page.title,
                              'printed': printed_lines(notebooks[chapter][0]),
                              'search': search_word(page.title)}
                             for chapter, page in zip(notebooks, chapter_pages)]}
    with open(os.path.join(out_dir, '_book.json'), 'w', encoding='utf-8') as f:
        json.dump(manifest, f, ensure_ascii=False, indent=1)
    return len(pages)


def printed_lines(nb, most=40):
    """The chapter's printed lines (stdout), the first and last `most` / 2: what
    `make book-check` looks for in the page's text."""
    lines = [line.strip() for cell in nb.cells if cell.cell_type == 'code'
             for out in cell.get('outputs', [])
             if out.get('output_type') == 'stream' and out.get('name') == 'stdout'
             for line in render.clean_stream(out.get('text', '')).splitlines() if line.strip()]
    return lines if len(lines) <= most else lines[:most // 2] + lines[-most // 2:]


def search_word(title):
    """The longest plain word of a title: search must find the page by it."""
    words = sorted(re.findall(r'[A-Za-z]{4,}', title or ''), key=len, reverse=True)
    return words[0] if words else (title or '')


def run_facts(chapter, facts):
    load = ', '.join('%.2f' % x for x in facts['load_before'])
    return ('<p class="run-facts">The outputs below come from running this page\'s cells with '
            '<code>%s</code> (the notebook form of <code>python -m chapters.%s %s</code>) on '
            '%s, Python %s, %s, load average %s before it started: wall time '
            '%.1f s, %s. Its figures are shown in place: the <code>--out</code> folder it names '
            'was a temporary one.</p>'
            % (html.escape(facts['settings']), chapter, html.escape(facts['settings']),
               html.escape(facts['machine']), facts['python'],
               html.escape(_threads_fact(facts['omp_num_threads'])), load,
               facts['wall_seconds'], facts['date']))


def _threads_fact(text):
    """The kernel's threads line (utils.threads.describe); a bare count from older caches."""
    return text if text.startswith('threads') else 'OMP_NUM_THREADS=%s' % text


def index_body(site, page, readme, order, titles, extra):
    sections = readme_sections(readme)
    intro = sections[''].split('\n', 1)[1] if sections[''].startswith('# ') else sections['']
    site.markdown(page, '# gluon-transfer\n' + intro)

    rows = {r['name']: r for r in chapter_table(readme)}
    site.markdown(page, '## Chapters, in reading order')
    head = ['#', 'chapter', 'text', 'what it shows', '`--quick` on 2 cores']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for chapter in order:
        row = rows.get(chapter, {})
        target = 'chapters/%s.py' % chapter
        title = titles.get(chapter)
        name = ('[`%s`](%s)' % (chapter, target)) if title else '`%s` (not in this build)' % chapter
        cells = [row.get('#', '-'), name, row.get('text', ''), row.get('what it shows', ''),
                 next((v for k, v in row.items() if k.startswith('`--quick`')), '')]
        lines.append('| ' + ' | '.join(c.replace('|', '/') for c in cells) + ' |')
    site.markdown(page, '\n'.join(lines))

    texts = sections.get(TEXTS_SECTION)
    if texts:
        site.markdown(page, '## %s\n' % TEXTS_SECTION + texts)
    site.markdown(page, '## Run it yourself\n\nEach page is one script of `chapters/`. In a '
                  'clone of the project, on a machine with Python 3.8 to 3.13 and `make`:\n\n'
                  '```bash\nmake venv                                   # .venv/ with the '
                  'pinned packages\n.venv/bin/python -m chapters.fine_tuning --quick   # any '
                  'chapter: chapters.<name>\n```\n\n`make book` builds this book again; '
                  '`make notebooks` writes the chapters as notebooks.')
    assignments = [(s, p) for s, p in extra.items() if s.startswith('assignments/')]
    if assignments:
        site.markdown(page, '## Assignments\n\n' + '\n'.join(
            '- [%s](%s)' % (s.split('/')[1], s) for s, _ in assignments))
    docs = [s for s in extra if not s.startswith('assignments/')]
    if docs:
        site.markdown(page, '## Docs\n\n' + '\n'.join('- [%s](%s)' % (s, s) for s in docs))


if __name__ == '__main__':
    sys.exit(main())
