import json
import os
import subprocess
import sys

import mxnet as mx
import pytest

import utils
from tests.conftest import ROOT


def test_try_all_gpus_falls_back_to_cpu():
    if mx.context.num_gpus() == 0:
        assert utils.try_all_gpus() == [mx.cpu()]
        assert utils.try_gpu() == mx.cpu()


@pytest.mark.parametrize('spec, expected', [
    ('cpu', [mx.cpu()]), ('cpu:2', [mx.cpu(0), mx.cpu(1)]),
    ('CPU:3', [mx.cpu(i) for i in range(3)]),
])
def test_parse_devices(spec, expected):
    assert utils.parse_devices(spec) == expected


def test_parse_devices_from_environment(monkeypatch):
    monkeypatch.setenv('MX_DEVICES', 'cpu:2')
    assert utils.parse_devices(None) == [mx.cpu(0), mx.cpu(1)]


@pytest.mark.parametrize('spec', ['tpu', 'cpu:0', 'cpu:x', 'gpu:a'])
def test_parse_devices_rejects(spec):
    with pytest.raises(utils.UserError, match='not understood'):
        utils.parse_devices(spec)


@pytest.mark.parametrize('spec, says', [
    ('cpu:9', 'at most cpu:8'), ('cpu:1000', 'at most cpu:8'), ('gpu:0,0', 'names a GPU twice'),
    ('gpu:%d' % mx.context.num_gpus(), 'this machine has %d GPU' % mx.context.num_gpus()),
    ('gpu:0,%d' % (mx.context.num_gpus() + 7), 'this machine has %d GPU' % mx.context.num_gpus()),
])
def test_devices_the_machine_cannot_serve_are_refused(spec, says, monkeypatch):
    with pytest.raises(utils.UserError, match=says):
        utils.parse_devices(spec)
    monkeypatch.setenv('MX_DEVICES', spec)
    with pytest.raises(utils.UserError, match=r'\$MX_DEVICES'):
        utils.parse_devices()


def test_devices_beyond_the_machine_end_a_chapter_in_one_line_before_any_work(tmp_path):
    # gpu:8: more GPUs than exist (this machine has none, or fewer than 9)
    for spec in ('gpu:8', 'cpu:1000'):
        proc = subprocess.run([sys.executable, '-m', 'chapters.train_basics', '--devices', spec,
                               '--out', str(tmp_path / 'out')], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2 and proc.stdout == '', proc.stdout + proc.stderr
        assert proc.stderr.startswith('train_basics: error: argument --devices: %r' % spec)
        assert len(proc.stderr.splitlines()) == 1, proc.stderr
        assert not (tmp_path / 'out').exists()  # before any work


def test_omp_threads_default_and_user_choice():
    code = 'import utils, mxnet, os; print(os.environ["OMP_NUM_THREADS"])'  # chosen as MXNet loads
    env = {k: v for k, v in os.environ.items() if k != 'OMP_NUM_THREADS'}
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    # the usable CPUs, fewer when other processes keep some busy (utils.threads)
    assert 1 <= int(out) <= len(os.sched_getaffinity(0))
    env['OMP_NUM_THREADS'] = '1'
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    assert out.strip() == '1'


def test_train_basics_chapter_on_two_contexts(tmp_path, capsys):
    metrics = tmp_path / 'm.json'
    utils.run_chapter('chapters.train_basics', [
        '--devices', 'cpu:2', '--epochs', '2', '--out', str(tmp_path / 'out'),
        '--metrics-json', str(metrics), '--no-progress'])
    out = capsys.readouterr().out
    assert 'Start training on [cpu(0), cpu(1)]' in out
    result = json.loads(metrics.read_text())
    assert result['devices'] == ['cpu(0)', 'cpu(1)']
    assert len(result['history']['test_acc']) == 2
    assert result['history']['test_acc'][-1] > 0.9  # two well separated blobs
    assert (tmp_path / 'out' / 'history.png').stat().st_size > 1000


def test_bad_option_is_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, '-m', 'chapters.train_basics', '--devices', 'tpu:1',
                           '--out', str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "train_basics: error: argument --devices: 'tpu:1' not understood: use 'auto', 'cpu', "
        "'cpu:N' or 'gpu:0,1' (--help lists the settings)"]


SETTINGS_CELL = """
import utils
args = utils.settings('demo', 'a demo', epochs=utils.opt(10, 'epochs', quick=2),
                      rate=utils.opt(0.5, 'a rate'), flag=utils.opt(False, 'a flag'))
"""


def test_settings_in_a_notebook_take_the_quick_values():
    namespace = {'__name__': '__main__'}  # a notebook's namespace has no __file__
    exec(SETTINGS_CELL, namespace)
    args = namespace['args']
    assert args.quick and args.epochs == 2 and args.rate == 0.5 and args.flag is False
    assert args.out == os.path.join('out', 'demo')


def test_settings_from_run_chapter_arguments(tmp_path):
    chapter = tmp_path / 'demo_chapter.py'
    chapter.write_text(SETTINGS_CELL)
    args = utils.run_chapter(str(chapter), ['--rate', '0.25', '--flag'])['args']
    assert not args.quick and args.epochs == 10 and args.rate == 0.25 and args.flag
    args = utils.run_chapter(str(chapter), ['--quick', '--epochs', '3'])['args']
    assert args.epochs == 3


def test_importing_a_chapter_says_how_to_run_it():
    sys.modules.pop('chapters.train_basics', None)
    with pytest.raises(RuntimeError, match='python -m chapters.train_basics'):
        import chapters.train_basics  # noqa: F401


def test_python_thread_runs_mxnet_openmp_loops_alone():
    # libgomp's per-thread setting: 1 on the thread that imported MXNet (after utils: here the
    # chapter's own import), OMP_NUM_THREADS on any other thread (MXNet's engine threads, which
    # train, are such threads).
    code = ('import ctypes, threading, utils\n'
            'from mxnet import nd\n'
            'gomp = ctypes.CDLL("libgomp.so.1")\n'
            'other = []\n'
            't = threading.Thread(target=lambda: other.append(gomp.omp_get_max_threads()))\n'
            't.start(); t.join()\n'
            'print(gomp.omp_get_max_threads(), other[0])\n')
    env = dict(os.environ, OMP_NUM_THREADS='3')
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    if 'libgomp' in proc.stderr:
        pytest.skip('MXNet here is not linked with libgomp')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['1', '3']
