"""Each chapter's cells executed in a Jupyter kernel, cached on what the output depends on."""
import glob
import hashlib
import os
import platform
import re
import subprocess
import tempfile
import time
from importlib import metadata

import jupytext
import nbformat

from utils.files import atomic_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = '--quick --no-progress'
CACHE_FORMAT = 1


class ChapterFailed(Exception):
    """A chapter's cell raised: the one line `make book` prints."""


def package_versions():
    """name==version of every installed distribution, sorted (part of the cache key)."""
    seen = set()
    for dist in metadata.distributions():
        name = (dist.metadata['Name'] or '').lower()
        if name:
            seen.add('%s==%s' % (name, dist.version))
    return sorted(seen)


def _digest_files(paths, h):
    for path in paths:
        h.update(os.path.relpath(path, ROOT).encode() + b'\0')
        with open(path, 'rb') as f:
            h.update(f.read())
        h.update(b'\0')


def cache_key(chapter, settings=SETTINGS, versions=None, source=None):
    """sha256 of the chapter's source, utils/ (every .py), the settings, the Python and the
    package versions: the output changes only when one of them does."""
    h = hashlib.sha256()
    h.update(b'format %d\0' % CACHE_FORMAT)
    _digest_files([source or chapter_path(chapter)], h)
    _digest_files(sorted(glob.glob(os.path.join(ROOT, 'utils', '**', '*.py'), recursive=True)), h)
    h.update(settings.encode() + b'\0')
    h.update(platform.python_version().encode() + b'\0')
    h.update('\n'.join(package_versions() if versions is None else versions).encode())
    return h.hexdigest()


def chapter_path(chapter):
    return os.path.join(ROOT, 'chapters', chapter + '.py')


def cell_lines(source):
    """The line of a chapter's file where each cell starts (its `# %%` marker)."""
    with open(source, encoding='utf-8') as f:
        return [i + 1 for i, line in enumerate(f) if line.startswith('# %%')]


def shown_path(path):
    """chapters/x.py for a file of the project, else the path as it is."""
    relative = os.path.relpath(path, ROOT)
    return path if relative.startswith('..') else relative


def machine():
    model = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            names = re.findall(r'^model name\s*:\s*(.+)$', f.read(), re.M)
        if names:
            model = names[0].strip()
    except OSError:
        pass
    return '%s, %d cores, %s' % (model, os.cpu_count() or 1, platform.system())


def execute(chapter, settings=SETTINGS, timeout=3600, source=None):
    """Run the chapter's cells in a fresh kernel (settings through
    GLUON_TRANSFER_NOTEBOOK_ARGS, figures to a temporary folder); return the executed notebook
    and the facts the page states. Raises ChapterFailed naming the cell."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    source = source or chapter_path(chapter)
    nb = jupytext.read(source)
    lines = cell_lines(source)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix='book-%s-' % chapter) as work:
        env_before = {k: os.environ.get(k) for k in ('GLUON_TRANSFER_NOTEBOOK_ARGS', 'PYTHONPATH')}
        os.environ['GLUON_TRANSFER_NOTEBOOK_ARGS'] = '%s --out %s' % (
            settings, os.path.join(work, 'out'))
        os.environ['PYTHONPATH'] = os.pathsep.join(
            [ROOT] + ([env_before['PYTHONPATH']] if env_before['PYTHONPATH'] else []))
        client = NotebookClient(nb, timeout=timeout, iopub_timeout=60, kernel_name='python3',
                                resources={'metadata': {'path': work}})
        start = time.time()
        try:
            # the kernel's own stderr (a warning about TCP on a laptop) would break the
            # one-line failure report: it goes nowhere
            with client.setup_kernel(stderr=subprocess.DEVNULL):
                for index, cell in enumerate(nb.cells):
                    try:
                        client.execute_cell(cell, index)
                    except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:
                        where = ('line %d' % lines[index]) if len(lines) == len(nb.cells) else \
                            'cell %d' % (index + 1)
                        if isinstance(e, DeadKernelError):
                            what = 'the kernel died (out of memory?)'
                        elif isinstance(e, CellTimeoutError):
                            what = 'no answer within %d s' % timeout
                        else:
                            what = '%s: %s' % (e.ename, e.evalue)
                        first = cell.source.strip().splitlines()[0][:60] if cell.source else ''
                        raise ChapterFailed('book: chapter %s failed in cell %d of %d '
                                            '(%s %s, `%s`): %s'
                                            % (chapter, index + 1, len(nb.cells),
                                               shown_path(source), where, first,
                                               ' '.join(what.split())[:300]))
                threads = kernel_omp_threads(client)
        finally:
            for k, v in env_before.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    facts = {'settings': settings, 'machine': machine(), 'python': platform.python_version(),
             'omp_num_threads': threads,
             'load_before': [round(x, 2) for x in load],
             'wall_seconds': round(time.time() - start, 1),
             'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}
    return nb, facts


def kernel_omp_threads(client):
    """The threads line of the chapter's kernel at the end (utils.threads.describe: how many
    OpenMP threads, how they wait, and why), read by running one line in that kernel."""
    probe = nbformat.v4.new_code_cell(
        "from utils import threads; print(threads.describe())")
    cells = client.nb.cells
    cells.append(probe)  # nbclient addresses a cell by its index in the notebook
    try:
        client.execute_cell(probe, len(cells) - 1, store_history=False)
    finally:
        cells.pop()
    text = ''.join(o.get('text', '') for o in probe.outputs if o.get('output_type') == 'stream')
    return text.strip() or 'unknown'


def cached(chapter, cache_dir, settings=SETTINGS, versions=None, source=None):
    """(notebook, facts, path) from the cache when the key matches, else (None, None, path)."""
    key = cache_key(chapter, settings, versions, source)
    path = os.path.join(cache_dir, '%s-%s.ipynb' % (chapter, key[:20]))
    if os.path.exists(path):
        nb = nbformat.read(path, as_version=4)
        return nb, nb.metadata['book'], path
    return None, None, path


def store(nb, facts, path):
    """Write the executed notebook atomically; drop the chapter's older cache entries."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    nb.metadata['book'] = facts
    with atomic_path(path) as tmp:
        with open(tmp, 'w', encoding='utf-8') as f:
            nbformat.write(nb, f)
    prefix = os.path.basename(path).rsplit('-', 1)[0] + '-'
    for old in glob.glob(os.path.join(os.path.dirname(path), prefix + '*.ipynb')):
        if old != path and len(os.path.basename(old)) == len(os.path.basename(path)):
            os.remove(old)
