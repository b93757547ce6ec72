"""Markdown and executed notebooks as HTML pages: headings with ids, highlighted code, the
cells' outputs and figures, links between pages, a search index. Every byte a page loads is
written into the book by this module: no font, script or stylesheet from elsewhere."""
import html
import json
import os
import posixpath
import re
import struct
from string import Template

from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer, get_lexer_by_name
from pygments.util import ClassNotFound

ANSI = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]')
SCHEME = re.compile(r'^[a-zA-Z][a-zA-Z0-9+.-]*:')
FORMATTER = HtmlFormatter(cssclass='highlight')
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'static')

PAGE = Template('''<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<link rel="icon" href="${root}_static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="${root}_static/book.css">
<link rel="stylesheet" href="${root}_static/pygments.css">
</head>
<body>
<header class="top">
<a class="home" href="${root}index.html">gluon-transfer</a>
<div class="search">
<input id="search-box" type="search" placeholder="Search the book" aria-label="Search the book"
 autocomplete="off">
<div id="search-results" hidden></div>
</div>
</header>
<div class="layout">
<nav class="sidebar" aria-label="Pages">
$sidebar
</nav>
<main>
$prevnext
$body
$prevnext
</main>
<nav class="toc" aria-label="On this page">
$toc
</nav>
</div>
<script>window.BOOK_ROOT = "$root";</script>
<script src="${root}_static/search-index.js"></script>
<script src="${root}_static/book.js"></script>
</body>
</html>
''')


def slug(text):
    """A GitHub-style heading id: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r'[^\w\- ]', '', text.strip().lower()).replace(' ', '-') or 'section'


def _highlight_fence(code, lang, attrs):
    try:
        lexer = get_lexer_by_name(lang) if lang else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return '<pre class="plain"><code>%s</code></pre>' % html.escape(code)
    return highlight(code, lexer, FORMATTER)


def markdown_parser():
    md = MarkdownIt('commonmark', {'html': False, 'highlight': _highlight_fence})
    return md.enable(['table', 'strikethrough'])


def clean_stream(text):
    """A stream's text as a terminal would show it: ANSI colours dropped, a line rewritten
    with carriage returns keeps its last state."""
    text = ANSI.sub('', text)
    return '\n'.join(line.rsplit('\r', 1)[-1] for line in text.split('\n'))


def joined_streams(outputs):
    """Consecutive prints to the same stream as one output, as Jupyter shows them (a chapter's
    training loop prints line by line; a box per line would space the lines apart)."""
    joined = []
    for output in outputs:
        previous = joined[-1] if joined else None
        if (previous is not None and output.get('output_type') == 'stream'
                and previous.get('output_type') == 'stream'
                and previous.get('name') == output.get('name')):
            joined[-1] = dict(previous, text=previous.get('text', '') + output.get('text', ''))
        else:
            joined.append(output)
    return joined


def png_size(data):
    if data[:8] == b'\x89PNG\r\n\x1a\n':
        return struct.unpack('>II', data[16:24])
    return None


class Page:
    """One HTML page being written: its body, headings (the table of contents), ids and
    search sections."""

    def __init__(self, path, source, title=None):
        self.path, self.source, self.title = path, source, title
        self.parts, self.toc, self.ids = [], [], set()
        self.sections = []  # [id, title, [text...]]
        self.section(None, title or path)

    def section(self, anchor, title):
        self.sections.append([anchor, title, []])

    def text(self, words):
        self.sections[-1][2].append(words)

    def unique_id(self, text):
        base = candidate = slug(text)
        n = 1
        while candidate in self.ids:
            candidate = '%s-%d' % (base, n)
            n += 1
        self.ids.add(candidate)
        return candidate


class Site:
    """The book's pages: `routes` maps a repository path (README.md, docs/x.md,
    chapters/x.py, ...) to the page that renders it."""

    def __init__(self, routes, root=None):
        self.routes = routes
        self.md = markdown_parser()
        self.warnings = []
        # repository files that markdown shows as images (![...](../docs/images/x.png)):
        # copied into the book at the same path by copy_images
        self.root, self.images = root, set()

    # -- links --------------------------------------------------------------------------
    def resolve(self, href, page):
        """The href a link of `page` gets in the book, or None when its target is a file of
        the repository the book does not contain (the link becomes plain text)."""
        if not href or SCHEME.match(href) or href.startswith('//') or href.startswith('#'):
            return href
        path, _, fragment = href.partition('#')
        target = posixpath.normpath(posixpath.join(posixpath.dirname(page.source), path))
        if target.endswith('/'):
            target = target[:-1]
        route = self.routes.get(target) or self.routes.get(posixpath.join(target, 'README.md'))
        if route is None:
            return None
        url = posixpath.relpath(route, posixpath.dirname(page.path) or '.')
        return url + ('#' + fragment if fragment else '')

    def image_src(self, src, page):
        """The src an image of `page` gets in the book: a file of the repository is kept for
        copy_images. Anything else (a URL, a missing file) is left as it is."""
        if not src or SCHEME.match(src) or src.startswith('/') or self.root is None:
            return src
        target = posixpath.normpath(posixpath.join(posixpath.dirname(page.source), src))
        if target.startswith('../') or not os.path.isfile(os.path.join(self.root, target)):
            return src
        self.images.add(target)
        return posixpath.relpath(target, posixpath.dirname(page.path) or '.')

    def copy_images(self, out_dir):
        for path in sorted(self.images):
            os.makedirs(os.path.dirname(os.path.join(out_dir, path)), exist_ok=True)
            with open(os.path.join(self.root, path), 'rb') as f:
                data = f.read()
            with open(os.path.join(out_dir, path), 'wb') as f:
                f.write(data)

    def _rewrite_links(self, tokens, page):
        for token in tokens:
            if token.children:
                self._rewrite_links(token.children, page)
        opened = []
        for token in tokens:
            if token.type == 'link_open':
                href = token.attrGet('href')
                new = self.resolve(href, page)
                if new is None:
                    token.tag = 'span'
                    token.attrs = {'class': 'repo-path', 'title': href}
                else:
                    token.attrSet('href', new)
                opened.append(token)
            elif token.type == 'image':
                token.attrSet('src', self.image_src(token.attrGet('src'), page))
            elif token.type == 'link_close' and opened:
                token.tag = opened.pop().tag

    # -- markdown -----------------------------------------------------------------------
    def markdown(self, page, text, shift=0):
        """Render markdown into `page`: headings get ids and enter the table of contents
        (levels 2 and 3) and the search index. `shift` demotes headings (an included
        README's # becomes ##)."""
        env = {}
        tokens = self.md.parse(text, env)
        self._rewrite_links(tokens, page)
        for i, token in enumerate(tokens):
            if token.type == 'heading_open':
                level = min(6, int(token.tag[1]) + shift)
                token.tag = 'h%d' % level
                tokens[i + 2].tag = token.tag
                inline = tokens[i + 1]
                # the heading's text without its markup (`_` stays: `how_much_data`'s id is
                # how_much_data, as GitHub makes it)
                words = ''.join(child.content for child in inline.children or []
                                if child.type in ('text', 'code_inline')) or inline.content
                anchor = page.unique_id(words)
                token.attrSet('id', anchor)
                if level == 1 and page.title is None:
                    page.title = words
                    page.sections[0][1] = words
                if level in (2, 3):
                    page.toc.append((level, anchor, words))
                page.section(anchor, words)
            elif token.type == 'inline' and not (i and tokens[i - 1].type == 'heading_open'):
                page.text(token.content)
            elif token.type in ('fence', 'code_block'):
                page.text(token.content)
        page.parts.append(self.md.renderer.render(tokens, self.md.options, env))

    # -- notebooks ----------------------------------------------------------------------
    def notebook(self, page, nb, figures_dir, figures_url):
        """The cells of an executed notebook, in order; figures are written as PNG files."""
        os.makedirs(figures_dir, exist_ok=True)
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == 'markdown':
                self.markdown(page, cell.source)
                continue
            if cell.cell_type != 'code' or not cell.source.strip():
                continue
            page.text(cell.source)
            out = ['<div class="cell">', '<div class="input">',
                   highlight(cell.source, PythonLexer(), FORMATTER), '</div>']
            rendered = [self.output(page, o, index, n, figures_dir, figures_url)
                        for n, o in enumerate(joined_streams(cell.get('outputs', [])))]
            rendered = [r for r in rendered if r]
            if rendered:
                out += ['<div class="outputs">'] + rendered + ['</div>']
            out.append('</div>')
            page.parts.append('\n'.join(out))

    def output(self, page, output, cell_index, n, figures_dir, figures_url):
        kind = output.get('output_type')
        if kind == 'stream':
            text = clean_stream(output.get('text', ''))
            page.text(text)
            return '<pre class="output %s">%s</pre>' % (output.get('name', 'stdout'),
                                                        html.escape(text))
        if kind in ('display_data', 'execute_result'):
            data = output.get('data', {})
            if 'image/png' in data:
                import base64
                png = base64.b64decode(data['image/png'])
                name = 'cell%d-%d.png' % (cell_index + 1, n + 1)
                with open(os.path.join(figures_dir, name), 'wb') as f:
                    f.write(png)
                size = png_size(png)
                dims = ' width="%d" height="%d"' % size if size else ''
                src = posixpath.relpath(posixpath.join(figures_url, name),
                                        posixpath.dirname(page.path) or '.')
                return '<figure class="output"><img src="%s" alt="figure of cell %d"%s>' \
                       '</figure>' % (src, cell_index + 1, dims)
            if 'text/plain' in data:
                text = clean_stream(data['text/plain'])
                page.text(text)
                return '<pre class="output result">%s</pre>' % html.escape(text)
        if kind == 'error':  # cannot happen in a built book: a failing cell fails the build
            return '<pre class="output stderr">%s</pre>' % html.escape(
                clean_stream('\n'.join(output.get('traceback', []))))
        return ''

    # -- the page -----------------------------------------------------------------------
    def write(self, page, out_dir, sidebar, prevnext=''):
        root = posixpath.relpath('.', posixpath.dirname(page.path) or '.')
        root = '' if root == '.' else root + '/'
        toc = ''
        if page.toc:
            items = ''.join('<li class="toc-h%d"><a href="#%s">%s</a></li>'
                            % (level, anchor, html.escape(words))
                            for level, anchor, words in page.toc)
            toc = '<p class="toc-title">On this page</p><ul>%s</ul>' % items
        text = PAGE.substitute(
            title=html.escape((page.title or page.path) + ' · gluon-transfer'), root=root,
            sidebar=sidebar(page), prevnext=prevnext, body='\n'.join(page.parts), toc=toc)
        path = os.path.join(out_dir, page.path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(text)

    @staticmethod
    def search_entries(page, limit=4000):
        entries = []
        for anchor, title, texts in page.sections:
            words = ' '.join(' '.join(texts).split())[:limit]
            if not words and anchor is None:
                continue
            url = page.path + ('#' + anchor if anchor else '')
            label = title if title == page.title else '%s › %s' % (page.title, title)
            entries.append({'u': url, 't': label, 'x': words})
        return entries


def write_static(out_dir, entries):
    """book.css, book.js, favicon, the Pygments style and the search index (a script, so
    that search works from file:// where a page may not fetch a JSON file)."""
    static = os.path.join(out_dir, '_static')
    os.makedirs(static, exist_ok=True)
    for name in os.listdir(STATIC):
        with open(os.path.join(STATIC, name), 'rb') as f:
            data = f.read()
        with open(os.path.join(static, name), 'wb') as f:
            f.write(data)
    with open(os.path.join(static, 'pygments.css'), 'w') as f:
        f.write(FORMATTER.get_style_defs('.highlight'))
    with open(os.path.join(static, 'search-index.js'), 'w', encoding='utf-8') as f:
        f.write('window.BOOK_SEARCH = %s;\n' % json.dumps(entries, ensure_ascii=False))
    # GitHub Pages runs Jekyll unless told not to, and Jekyll drops folders starting with _
    open(os.path.join(out_dir, '.nojekyll'), 'w').close()
