"""`make book-check`: every page of a built book opened in a headless Chromium, from file://
and from a local `python -m http.server`-style server.

    python -m bookgen.check [--book book] [--no-http] [--no-screenshots]

Each page must show no console error and ask for nothing outside the book's folder (the
browser's own request log), decode every <img>, and have every internal link and anchor
resolve; the search box must find each chapter by a word of its title; each chapter page's
text must hold the chapter's printed lines (listed by the builder in _book.json); a title with
Chinese characters must render as glyphs, not as the boxes of a missing font. A screenshot of
each page's first screen goes to book/_screenshots/.
"""
import functools
import http.server
import io
import json
import os
import sys
import threading
import urllib.parse
from contextlib import contextmanager

from bookgen.cdp import Browser, BrowserError, find_chromium
from utils.errors import OneLineParser

SKIP = ('_screenshots',)

LINKS_JS = '''(() => ({
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
  images: Array.from(document.images).map(i => [i.getAttribute('src'), i.complete,
                                                i.naturalWidth]),
  text: document.body.innerText,
  title: document.title
}))()'''

SEARCH_JS = '''((word) => {
  const box = document.getElementById('search-box');
  box.value = word;
  box.dispatchEvent(new Event('input'));
  const found = Array.from(document.querySelectorAll('#search-results a')).map(a => a.href);
  const visible = !document.getElementById('search-results').hidden;
  box.value = '';
  box.dispatchEvent(new Event('input'));
  return {found, visible};
})(%s)'''

# The distinct CJK characters of the first heading, title or list item that has some.
CJK_JS = r'''(() => {
  const el = Array.from(document.querySelectorAll('h1, h2, h3, li, td, p'))
    .find(e => /[\u4e00-\u9fff]/.test(e.textContent));
  if (!el) return null;
  el.scrollIntoView({block: 'center'});
  const chars = Array.from(new Set(el.textContent.match(/[\u4e00-\u9fff]/g))).slice(0, 6);
  return {tag: el.tagName, text: el.textContent.trim().slice(0, 80), chars,
          font: getComputedStyle(el).fontFamily};
})()'''

PROBE_JS = '''((ch, font) => {
  let p = document.getElementById('glyph-probe');
  if (!p) {
    p = document.createElement('div');
    p.id = 'glyph-probe';
    p.style.cssText = 'position:fixed;left:0;top:0;width:64px;height:64px;z-index:99999;' +
      'background:#fff;color:#000;font-size:48px;line-height:64px;text-align:center;';
    document.body.appendChild(p);
  }
  p.style.fontFamily = font;
  p.textContent = ch;
  return [window.scrollX, window.scrollY];  // the clip of a screenshot is in page coordinates
})(%s, %s)'''


def pages_of(book):
    found = []
    for folder, dirs, files in os.walk(book):
        dirs[:] = sorted(d for d in dirs if d not in SKIP)
        for name in sorted(files):
            if name.endswith('.html'):
                path = os.path.relpath(os.path.join(folder, name), book)
                found.append(path.replace(os.sep, '/'))
    return sorted(found, key=lambda p: (p != 'index.html', p.count('/'), p))


@contextmanager
def served(book):
    """The book over HTTP on 127.0.0.1 (the handler `python -m http.server` uses)."""
    handler = functools.partial(_QuietHandler, directory=book)
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield 'http://127.0.0.1:%d/' % httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _local_path(url, base):
    """The book-relative path and fragment of an URL under base, or None."""
    if not url.startswith(base):
        return None
    rest = url[len(base):]
    rest, _, fragment = rest.partition('#')
    rest = rest.split('?', 1)[0]
    return urllib.parse.unquote(rest), urllib.parse.unquote(fragment)


def glyphs_problem(page, screenshot_png, chars=None):
    """None when the page's first title with Chinese characters renders them as distinct
    glyphs; else what is wrong. A missing font draws the same box for every character, so
    two different characters drawn alike means boxes."""
    from PIL import Image, ImageChops

    found = page.evaluate(CJK_JS)
    if not found:
        return None
    if chars:  # other characters, drawn in the title's font (how the test sees boxes)
        found['chars'] = chars
    crops = []
    for ch in found['chars']:
        x, y = page.evaluate(PROBE_JS % (json.dumps(ch), json.dumps(found['font'])))
        png = screenshot_png(page, {'x': x, 'y': y, 'width': 64, 'height': 64})
        crops.append(Image.open(io.BytesIO(png)).convert('L'))
    page.evaluate("document.getElementById('glyph-probe').remove()")
    if len(crops) < 2:
        return None
    inked = [c.getextrema()[0] < 128 for c in crops]  # some dark pixels: not blank
    same = [(found['chars'][i], found['chars'][j])
            for i in range(len(crops)) for j in range(i + 1, len(crops))
            if ImageChops.difference(crops[i], crops[j]).getbbox() is None]
    if not all(inked) or same:
        return ('the Chinese characters of "%s" do not render as glyphs (%s): install a CJK '
                'font, e.g. `apt-get install -y fonts-noto-cjk`'
                % (found['text'], 'drawn alike: %s' % same if same else 'blank'))
    return None


def _screenshot(page, clip):
    return page.screenshot(clip)


def check(book, base, browser, screenshots=None, manifest=None, glyphs=True):
    """Open every page of `book` at `base` (file:// or http:// URL of the folder); return
    (problems, {page: text})."""
    problems, texts, ids, links = [], {}, {}, []
    page = browser.page()
    for path in pages_of(book):
        url = base + path
        page.goto(url)
        facts = page.evaluate(LINKS_JS)
        texts[path], ids[path] = facts['text'], set(facts['ids'])
        for error in page.errors():
            problems.append('%s: %s' % (path, error))
        for request in page.requests():
            if not request.startswith(base):
                problems.append('%s: request outside the book: %s' % (path, request))
        for src, complete, width in facts['images']:
            if not complete or not width:
                problems.append('%s: image not decoded: %s' % (path, src))
        links.extend((path, href) for href in facts['links'])
        if screenshots:
            name = path[:-5].replace('/', '__') + '.png'
            with open(os.path.join(screenshots, name), 'wb') as f:
                f.write(page.screenshot())
        if glyphs and path == 'index.html':
            problem = glyphs_problem(page, _screenshot)
            if problem:
                problems.append('%s: %s' % (path, problem))
    for path, href in links:
        local = _local_path(href, base)
        if href.startswith('file:') and local is None:
            problems.append('%s: link outside the book: %s' % (path, href))
            continue
        if local is None:
            continue  # a link to the web: followed by the reader, not loaded by the page
        target, fragment = local
        if target == '' or target.endswith('/'):
            target += 'index.html'
        if not os.path.isfile(os.path.join(book, target)):
            problems.append('%s: broken link %s' % (path, href))
        elif fragment and target in ids and fragment not in ids[target]:
            problems.append('%s: link %s: no id "%s" in %s' % (path, href, fragment, target))
    for chapter in (manifest or {}).get('chapters', []):
        path = chapter['page']
        text = texts.get(path, '')
        for line in chapter['printed']:
            if line not in text:
                problems.append('%s: printed line missing from the page: %r' % (path, line))
        page.goto(base + 'index.html')
        result = page.evaluate(SEARCH_JS % json.dumps(chapter['search']))
        if not any((_local_path(h, base) or ('',))[0] == path for h in result['found']) or \
                not result['visible']:
            problems.append('index.html: searching %r does not find %s'
                            % (chapter['search'], path))
    return problems, texts


def main(argv=None):
    p = OneLineParser(prog='python -m bookgen.check', description=__doc__.split(
        '\n\n')[0])
    p.add_argument('--book', default=os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), 'book'))
    p.add_argument('--no-http', action='store_true', help='only from file://')
    p.add_argument('--no-screenshots', action='store_true')
    args = p.parse_args(argv)
    book = os.path.abspath(args.book)
    if not os.path.isfile(os.path.join(book, 'index.html')):
        print('book-check: no book in %s: build it first with `make book`' % book,
              file=sys.stderr)
        return 2
    if not find_chromium():
        from bookgen.cdp import INSTALL_HINT
        print('book-check: ' + INSTALL_HINT, file=sys.stderr)
        return 2
    with open(os.path.join(book, '_book.json'), encoding='utf-8') as f:
        manifest = json.load(f)
    shots = None
    if not args.no_screenshots:
        shots = os.path.join(book, '_screenshots')
        os.makedirs(shots, exist_ok=True)
    problems = []
    try:
        with Browser() as browser:
            found, texts = check(book, 'file://' + urllib.parse.quote(book) + '/', browser,
                                 shots, manifest)
            problems += ['file://: ' + x for x in found]
            print('file://: %d pages opened, %d problem(s)' % (len(texts), len(found)))
            if not args.no_http:
                with served(book) as base:
                    found, texts = check(book, base, browser, None, manifest)
                problems += ['http: ' + x for x in found]
                print('http://127.0.0.1: %d pages opened, %d problem(s)'
                      % (len(texts), len(found)))
    except BrowserError as e:
        print('book-check: %s' % e, file=sys.stderr)
        return 1
    for problem in problems:
        print(problem)
    if shots:
        print('screenshots of each page\'s first screen in %s' % os.path.relpath(shots))
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
