"""`make book` on one fast chapter, then every page opened in a headless Chromium (from
file:// and over HTTP): no console error, no request outside the book, images decoded, links
and anchors resolving, search, the chapter's printed lines on its page, Chinese titles drawn
as glyphs. The cache, a failing chapter and a wrong chapter name without a browser."""
import os
import re
import subprocess
import sys
import textwrap
import time
import urllib.parse

import nbformat
import pytest

from tests.conftest import ROOT, chromium_or_skip

pytest.importorskip('markdown_it')
from bookgen import build, check, execute, render  # noqa: E402
from bookgen.cdp import Browser  # noqa: E402
from chapters import READING_ORDER  # noqa: E402
from utils.files import lock_path  # noqa: E402

CHAPTER = 'train_basics'


def make_book(out, cache, *extra):
    env = dict(os.environ, PYTHONPATH=ROOT)
    start = time.time()
    proc = subprocess.run([sys.executable, '-m', 'bookgen.build', '--out', str(out),
                           '--cache', str(cache)] + list(extra), cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    return proc, time.time() - start


@pytest.fixture(scope='module')
def small_book(tmp_path_factory):
    """A book of one chapter, built twice: the second build must come from the cache."""
    tmp = tmp_path_factory.mktemp('book')
    book, cache = tmp / 'book', tmp / 'cache'
    first, _ = make_book(book, cache, '--chapters', CHAPTER)
    assert first.returncode == 0, first.stdout + first.stderr
    assert '[1/1] %s: executing with --quick --no-progress ...' % CHAPTER in first.stdout
    index_before = (book / 'index.html').read_bytes()
    second, seconds = make_book(book, cache, '--chapters', CHAPTER)
    assert second.returncode == 0, second.stdout + second.stderr
    return {'book': book, 'cache': cache, 'second': second, 'seconds': seconds,
            'index_before': index_before}


def executed_notebook(cache):
    [path] = [p for p in os.listdir(str(cache)) if p.startswith(CHAPTER + '-')]
    return nbformat.read(str(cache / path), as_version=4)


def test_second_build_comes_from_the_cache(small_book):
    out = small_book['second'].stdout
    assert '[1/1] %s: cached (executed ' % CHAPTER in out, out
    assert 'executing' not in out
    assert small_book['seconds'] < 30, small_book['seconds']
    assert (small_book['book'] / 'index.html').read_bytes() == small_book['index_before']


def test_the_chapter_page_holds_cells_outputs_and_figures(small_book):
    book = small_book['book']
    nb = executed_notebook(small_book['cache'])
    page = (book / (CHAPTER + '.html')).read_text(encoding='utf-8')
    printed = build.printed_lines(nb)
    assert any(line.startswith('Epoch 4. Loss') for line in printed), printed  # the text's
    assert 'class="highlight"' in page and 'make_blobs' in page  # code, highlighted
    figures = sorted(os.listdir(str(book / '_figures' / CHAPTER)))
    assert figures and all(f.endswith('.png') for f in figures)
    assert 'with <code>--quick --no-progress</code>' in page and 'wall time' in page
    # the threads the chapter's kernel ran with and their waiting (utils.threads.describe)
    assert re.search(r'threads: (OMP_NUM_THREADS=[0-9]+ \(yours\)|[0-9]+ OpenMP threads? \()'
                     r'[^<]*; waiting: ', page), page[:3000]
    # the last cell ends the run; it shows no metrics dict as its value
    last = [c for c in nb.cells if c.cell_type == 'code'][-1]
    assert 'run.finish()' in last.source
    assert 'execute_result' not in [o.output_type for o in last.outputs], last.outputs
    # the chapters the build left out are named on the index, not linked
    index = (book / 'index.html').read_text(encoding='utf-8')
    assert '<code>fine_tuning</code> (not in this build)' in index
    assert 'href="%s.html"' % CHAPTER in index


def test_consecutive_prints_are_one_output_as_in_jupyter():
    outputs = [nbformat.v4.new_output('stream', name='stdout', text='Epoch 1\n'),
               nbformat.v4.new_output('stream', name='stdout', text='Epoch 2\n'),
               nbformat.v4.new_output('stream', name='stderr', text='warning\n'),
               nbformat.v4.new_output('stream', name='stdout', text='done\n'),
               nbformat.v4.new_output('execute_result', data={'text/plain': '3'}),
               nbformat.v4.new_output('stream', name='stdout', text='after\n')]
    joined = render.joined_streams(outputs)
    assert [(o.get('name'), o.get('text')) for o in joined] == [
        ('stdout', 'Epoch 1\nEpoch 2\n'), ('stderr', 'warning\n'), ('stdout', 'done\n'),
        (None, None), ('stdout', 'after\n')]
    assert outputs[0]['text'] == 'Epoch 1\n'  # the executed notebook is left as it was


def test_a_repository_image_in_markdown_is_copied_into_the_book(tmp_path):
    repo, book = tmp_path / 'repo', tmp_path / 'book'
    (repo / 'docs' / 'images').mkdir(parents=True)
    (repo / 'docs' / 'images' / 'page.png').write_bytes(b'\x89PNG picture')
    site = render.Site({}, str(repo))
    chapter = render.Page('custom_classes.html', 'chapters/custom_classes.py')
    site.markdown(chapter, '![the page](../docs/images/page.png) ![gone](../docs/none.png) '
                           '![far](https://example.invalid/x.png)')
    doc = render.Page('docs/book.html', 'docs/book.md')
    site.markdown(doc, '![again](images/page.png)')
    assert '<img src="docs/images/page.png" alt="the page" />' in chapter.parts[-1]
    assert 'src="../docs/none.png"' in chapter.parts[-1]  # left for the check to report
    assert 'src="https://example.invalid/x.png"' in chapter.parts[-1]
    assert '<img src="images/page.png" alt="again" />' in doc.parts[-1]
    site.copy_images(str(book))
    assert (book / 'docs' / 'images' / 'page.png').read_bytes() == b'\x89PNG picture'
    assert sorted(os.listdir(str(book))) == ['docs']


def test_cache_key_follows_source_settings_and_versions(tmp_path):
    versions = ['mxnet==1.9.1', 'numpy==1.23.5']
    key = execute.cache_key(CHAPTER, versions=versions)
    assert key == execute.cache_key(CHAPTER, versions=versions)
    assert key != execute.cache_key(CHAPTER, '--quick --no-progress --epochs 2', versions)
    assert key != execute.cache_key(CHAPTER, versions=['mxnet==1.9.1', 'numpy==1.26.4'])
    edited = tmp_path / (CHAPTER + '.py')
    with open(execute.chapter_path(CHAPTER), encoding='utf-8') as f:
        edited.write_text(f.read() + '\nprint(1)\n', encoding='utf-8')
    assert key != execute.cache_key(CHAPTER, versions=versions, source=str(edited))


def test_a_failing_chapter_fails_the_build_in_one_line_and_keeps_the_book(
        small_book, tmp_path):
    chapters = tmp_path / 'chapters'
    chapters.mkdir()
    (chapters / 'broken.py').write_text(textwrap.dedent('''\
        # %% [markdown]
        # # A chapter that breaks

        # %%
        ready = True

        # %%
        raise ValueError('the data folder is empty')
        '''))
    book = small_book['book']
    before = sorted(os.listdir(str(book)))
    proc, _ = make_book(book, tmp_path / 'cache', '--chapters-dir', str(chapters))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith('book: chapter broken failed in cell 3 of 3 (')
    assert 'broken.py line 7' in lines[0] and 'ValueError: the data folder is empty' in lines[0]
    assert sorted(os.listdir(str(book))) == before  # the book as it was: no half book
    assert (book / 'index.html').read_bytes() == small_book['index_before']
    assert not [p for p in os.listdir(str(book.parent)) if p.startswith('.book-')]


def test_a_second_build_waits_for_the_first_then_uses_its_cache(small_book, tmp_path):
    fcntl = pytest.importorskip('fcntl')
    fd = os.open(lock_path(str(small_book['cache'] / 'build')), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a build in progress
    try:
        proc = subprocess.Popen(
            [sys.executable, '-m', 'bookgen.build', '--out', str(tmp_path / 'book'), '--cache',
             str(small_book['cache']), '--chapters', CHAPTER], cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=ROOT), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, universal_newlines=True)
        assert proc.stdout.readline().startswith('book: another build is using ')
        time.sleep(1)
        assert proc.poll() is None and not (tmp_path / 'book').exists()  # still waiting
    finally:
        os.close(fd)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert '[1/1] %s: cached (executed ' % CHAPTER in out
    assert (tmp_path / 'book' / (CHAPTER + '.html')).exists()


def test_readme_table_lists_the_reading_order():
    # The book's order is chapters.READING_ORDER; the README's table must say the same, and
    # carry what the index page reads from it.
    with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
        readme = f.read()
    rows = build.chapter_table(readme)
    assert [r['name'] for r in rows] == list(READING_ORDER)
    assert all(r.get('text') and r.get('what it shows') for r in rows), rows
    assert all(any(k.startswith('`--quick`') and v for k, v in r.items()) for r in rows), rows
    assert build.TEXTS_SECTION in build.readme_sections(readme)
    assert build.reading_order(os.path.join(ROOT, 'chapters')) == list(READING_ORDER)
    assert sorted(READING_ORDER) == build.all_chapters(os.path.join(ROOT, 'chapters'))


def test_an_unknown_chapter_is_one_line(tmp_path):
    proc, _ = make_book(tmp_path / 'book', tmp_path / 'cache', '--chapters', 'fine_tunning')
    assert proc.returncode == 2 and not (tmp_path / 'book').exists()
    assert proc.stderr.startswith('book: no chapter fine_tunning in chapters/; the chapters are')
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.fixture(scope='module')
def browser():
    chromium_or_skip()
    with Browser() as b:
        yield b


@pytest.mark.parametrize('origin', ['file', 'http'])
def test_every_page_in_a_browser(small_book, browser, origin):
    book = str(small_book['book'])
    manifest = {'chapters': [{
        'page': CHAPTER + '.html',
        # what the kernel printed, read from the executed notebook, not from the page
        'printed': build.printed_lines(executed_notebook(small_book['cache']), most=1000),
        # a word of the chapter's text that its title does not have
        'search': 'Gaussian'}]}
    if origin == 'file':
        problems, texts = check.check(book, 'file://' + urllib.parse.quote(book) + '/',
                                      browser, manifest=manifest, glyphs=False)
    else:
        with check.served(book) as base:
            problems, texts = check.check(book, base, browser, manifest=manifest,
                                          glyphs=False)
    assert problems == []
    assert set(texts) == set(check.pages_of(book)) and len(texts) > 10
    assert 'Epoch 1. Loss' in texts[CHAPTER + '.html']
    assert 'The texts it follows' in texts['index.html']


def test_the_check_sees_what_is_wrong(small_book, browser, tmp_path):
    """A broken page: an image that does not decode, a script from the web, a dead link,
    a missing anchor and a console error are all reported."""
    import shutil
    book = tmp_path / 'book'
    shutil.copytree(str(small_book['book']), str(book))
    page = book / 'docs' / 'broken.html'
    page.write_text('<!DOCTYPE html><html><head><meta charset="utf-8">'
                    '<link rel="icon" href="../_static/favicon.svg"></head><body>'
                    '<img src="nothing.png"><a href="../nowhere.html">x</a>'
                    '<a href="../index.html#no-such-heading">y</a>'
                    '<script src="https://cdn.example.invalid/lib.js"></script>'
                    '<script>console.error("boom")</script></body></html>')
    problems, _ = check.check(str(book), 'file://' + urllib.parse.quote(str(book)) + '/',
                              browser, glyphs=False)
    mine = '\n'.join(p for p in problems if p.startswith('docs/broken.html'))
    assert 'image not decoded: nothing.png' in mine
    assert 'request outside the book: https://cdn.example.invalid/lib.js' in mine
    assert 'broken link' in mine and 'nowhere.html' in mine
    assert 'no id "no-such-heading" in index.html' in mine
    assert 'console.error: boom' in mine
    assert not [p for p in problems if not p.startswith('docs/broken.html')], problems


def cjk_font():
    try:
        return bool(subprocess.run(['fc-list', ':lang=zh'], stdout=subprocess.PIPE,
                                   universal_newlines=True).stdout.strip())
    except OSError:
        return False


def test_chinese_titles_render_as_glyphs(small_book, browser):
    page = browser.page()
    page.goto('file://' + urllib.parse.quote(str(small_book['book'])) + '/index.html')
    problem = check.glyphs_problem(page, check._screenshot)
    if problem and not os.environ.get('GLUON_TRANSFER_REQUIRE_BROWSER') and not cjk_font():
        pytest.skip('no CJK font: install one with `apt-get install -y fonts-noto-cjk`')
    assert problem is None
    # the same pixel test on characters no installed font has: boxes, drawn alike
    found = page.evaluate(check.CJK_JS)
    assert len(found['chars']) >= 2, found
    boxes = check.glyphs_problem(page, check._screenshot,
                                 chars=['\U0001E900', '\U0001E901', '\U00010C80'])
    assert boxes and 'do not render as glyphs' in boxes and 'drawn alike' in boxes
