"""Every chapter converts into a notebook whose cells stand on their own; the fine-tuning
chapter's notebook runs, in its quick setting, offline."""
import glob
import os

import pytest

from tests.conftest import ROOT

jupytext = pytest.importorskip('jupytext')
CHAPTERS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, 'chapters',
                                                                           '[a-z]*.py')))


def notebook(name):
    return jupytext.read(os.path.join(ROOT, 'chapters', name + '.py'))


@pytest.mark.parametrize('name', CHAPTERS)
def test_chapter_converts_into_self_contained_cells(name):
    nb = notebook(name)
    first = nb.cells[0]
    assert first.cell_type == 'markdown' and first.source.startswith('# ')  # the title
    assert 'Follows' in first.source or 'source text' in first.source
    code = [cell for cell in nb.cells if cell.cell_type == 'code']
    assert len(code) >= 4 and sum(c.cell_type == 'markdown' for c in nb.cells) >= 4
    assert 'utils.settings(' in ''.join(c.source for c in code[:3])  # a settings cell on top
    for i, cell in enumerate(code):
        compile(cell.source, '%s cell %d' % (name, i), 'exec')  # no function cut in two


def test_fine_tuning_notebook_runs(tmp_path, monkeypatch):
    from nbclient import NotebookClient
    monkeypatch.setenv('PYTHONPATH', ROOT)  # this checkout's utils, not an installed one
    monkeypatch.setenv('GLUON_TRANSFER_NOTEBOOK_ARGS', '--quick --dataset faces --no-progress')
    nb = notebook('fine_tuning')
    # iopub_timeout: on a busy machine a cell's last outputs can arrive seconds after it ends
    NotebookClient(nb, timeout=1200, iopub_timeout=60, kernel_name='python3',
                   resources={'metadata': {'path': str(tmp_path)}}).execute()
    text = ''.join(out.get('text', '') for cell in nb.cells if cell.cell_type == 'code'
                   for out in cell.outputs)
    # the data-scarce quick run on the faces: 4 photos per class, 20 epochs
    assert 'faces: 8 training and 40 test images, classes' in text, text
    assert text.count('Epoch 19.') == 2, text  # both nets
    assert text.count('With prob=') == 6, text  # 4 held-out photos, astronaut.png, coffee.png
    assert (tmp_path / 'out' / 'fine_tuning' / 'finetune_vs_scratch.png').exists()
