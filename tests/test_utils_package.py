"""The utils package: light to import, MXNet prepared whoever imports it first, and the small
file helpers the book builder and the grader share."""
import importlib
import json
import os
import subprocess
import sys

import pytest

import utils
from tests.conftest import ROOT
from utils.files import load_module, replace_folder

# In a fresh interpreter: what `import utils` and the standard-library helpers load, then the
# order of the steps around a chapter's own `from mxnet import nd`.
FRESH = """
import json, sys
import utils, utils.files, utils.errors
light = sorted(m for m in ('mxnet', 'numpy') if m in sys.modules)
from utils import numpy_compat, threads
steps = []
def probe(name, call):
    def step(*args):
        mx = sys.modules.get('mxnet')
        steps.append((name, hasattr(mx, 'nd')))  # True once MXNet's own code has run
        return call(*args)
    return step
numpy_compat.restore_numpy_names = probe('restore', numpy_compat.restore_numpy_names)
numpy_compat.patch_mxnet = probe('patch', numpy_compat.patch_mxnet)
threads.serial_openmp_in_this_thread = probe('serial', threads.serial_openmp_in_this_thread)
from mxnet import nd
total = float(nd.ones((2, 3)).sum().asscalar())
import mxnet
print(json.dumps({'light': light, 'steps': steps, 'total': total,
                  'omp': __import__('os').environ.get('OMP_NUM_THREADS')}))
"""


def test_import_utils_loads_no_mxnet_and_prepares_it_for_whoever_imports_it():
    env = dict(os.environ)
    env.pop('OMP_NUM_THREADS', None)
    proc = subprocess.run([sys.executable, '-c', FRESH], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result['light'] == []
    # numpy's names before MXNet's code runs; MXNet adapted and the thread made serial after
    assert result['steps'] == [['restore', False], ['patch', True], ['serial', True]]
    assert result['total'] == 6.0
    assert int(result['omp']) >= 1  # set by `import utils`, before MXNet read it


def test_exported_helpers_and_modules_come_on_first_use():
    importlib.import_module('utils.data.download')  # the module must not hide the function
    assert callable(utils.download) and utils.download.__module__ == 'utils.data.download'
    assert utils.train.__module__ == 'utils.training.loop'
    assert utils.detection.heads.__name__ == 'utils.detection.heads'
    assert {'data', 'detection', 'display', 'pretrained', 'training'} <= set(dir(utils))
    assert {'bbox', 'heads', 'loss', 'scenes'} <= set(dir(utils.detection))
    assert set(utils.__all__) <= set(dir(utils))
    with pytest.raises(AttributeError):
        utils.no_such_helper
    with pytest.raises(AttributeError):
        utils.detection.no_such_module


def test_replace_folder_swaps_a_whole_folder(tmp_path):
    target, new = tmp_path / 'book', tmp_path / '.book-new'
    target.mkdir()
    (target / 'old.html').write_text('old')
    new.mkdir()
    (new / 'index.html').write_text('new')
    replace_folder(str(new), str(target))
    assert sorted(os.listdir(target)) == ['index.html']
    assert sorted(os.listdir(tmp_path)) == ['book']  # nothing left beside it
    fresh = tmp_path / '.book-fresh'
    fresh.mkdir()
    replace_folder(str(fresh), str(tmp_path / 'absent'))  # nothing there before
    assert (tmp_path / 'absent').is_dir()


def test_load_module_runs_the_file_each_time(tmp_path):
    path = tmp_path / 'public_tests.py'
    path.write_text('VALUE = 1\n')
    first = load_module(str(path), 'public_tests_x')
    path.write_text('VALUE = 2\n')
    assert (first.VALUE, load_module(str(path), 'public_tests_x').VALUE) == (1, 2)
    assert 'public_tests_x' not in sys.modules
