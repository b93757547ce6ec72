"""A class on one machine or one share: first runs at the same minute, read-only folders, a
mirror's checksum, the decode budget variable.

Every test works in tmp_path (MXNET_HOME and the per-user cache included), against the local
HTTP server of conftest.py.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile

import pytest

import utils
from tests.conftest import ROOT
from utils.data import datasets, decoded
from utils.data.download import DownloadError
from utils.files import file_digest
from utils.pretrained.torchvision_weights import converted_path

STORE_MODEL = 'mobilenet0.25'
TIMEOUT = 150  # four processes import MXNet at once on a possibly busy machine


def serve_store_file(site, params, sha1):
    """The model store's zip of `params` on the test server, as MXNET_GLUON_REPO serves it."""
    name = '%s-%s' % (STORE_MODEL, sha1[:8])
    path = site.url.rstrip('/') + '/'
    import io
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as zf:
        zf.writestr(name + '.params', params)
    site.put('/gluon/models/%s.zip' % name, buf.getvalue())
    return path


def tree(folder):
    """{relative path: sha256} of every file under `folder`."""
    found = {}
    for here, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(here, name)
            found[os.path.relpath(path, folder)] = file_digest(path)
    return found


def environment(tmp_path, repo):
    env = dict(os.environ, MXNET_HOME=str(tmp_path / 'mxnet'), MXNET_GLUON_REPO=repo,
               XDG_CACHE_HOME=str(tmp_path / 'user-cache'), OMP_NUM_THREADS='1',
               PYTHONPATH=ROOT)
    env.pop('HOTDOG_URL', None)
    return env


# %% Four first runs at once on an empty data folder and an empty MXNET_HOME

PREPARE = textwrap.dedent('''
    import json, os, sys, time, zipfile
    import utils
    from gluoncv.model_zoo import model_store as gluoncv_store
    from mxnet.gluon.model_zoo import model_store as mxnet_store
    from utils.data import datasets
    from utils.pretrained import torchvision_weights

    ready, go, log, data_dir, mirror, mirror_sha1, store_sha1 = sys.argv[1:]
    for table in (gluoncv_store._model_sha1, mxnet_store._model_sha1):
        table['mobilenet0.25'] = store_sha1
    convert = torchvision_weights.convert_mobilenet_v2

    def counted(state):  # every conversion leaves a line in the shared log
        with open(log, 'a') as f:
            f.write('converted by %d\\n' % os.getpid())
        return convert(state)
    torchvision_weights.convert_mobilenet_v2 = counted

    open(ready, 'w').close()
    while not os.path.exists(go):  # all four start together
        time.sleep(0.005)
    folder = datasets.get_hotdog(data_dir, [mirror], mirror_sha1)
    # What this process reads right away must be what the archive holds, whatever the
    # others are doing at this moment.
    with zipfile.ZipFile(os.path.join(data_dir, 'hotdog.zip')) as zf:
        for info in zf.infolist():
            if not info.is_dir():
                with open(os.path.join(data_dir, info.filename), 'rb') as f:
                    assert f.read() == zf.read(info), info.filename
    utils.get_pretrained('mobilenetv2_1.0')
    utils.get_pretrained('mobilenet0.25')
    print('prepared', folder)
''')


def prepare_alone(data_dir, mirror, sha1, models):
    """The same preparation in this process, into other folders: the reference."""
    datasets.get_hotdog(str(data_dir), [(mirror, sha1)])
    utils.get_pretrained('mobilenetv2_1.0', root=str(models))
    utils.get_pretrained(STORE_MODEL, root=str(models))


def test_four_first_runs_at_once_fill_each_cache_once(tmp_path, hotdog_mirror, http_server,
                                                      random_mobilenet, monkeypatch):
    from gluoncv.model_zoo import model_store as gluoncv_store
    from mxnet.gluon.model_zoo import model_store as mxnet_store
    mirror, sha1 = hotdog_mirror(per_class=(12, 4))
    _, params, store_sha1 = random_mobilenet
    repo = serve_store_file(http_server, params, store_sha1)
    env = environment(tmp_path, repo)
    go, log = tmp_path / 'go', tmp_path / 'conversions.log'
    data_dir = tmp_path / 'data'
    procs = []
    for i in range(4):
        ready = tmp_path / ('ready%d' % i)
        procs.append((ready, subprocess.Popen(
            [sys.executable, '-c', PREPARE, str(ready), str(go), str(log), str(data_dir),
             mirror, sha1, store_sha1], env=env, cwd=str(tmp_path),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    deadline = time.time() + TIMEOUT
    while not all(ready.exists() for ready, _ in procs):
        assert time.time() < deadline and all(p.poll() is None for _, p in procs), \
            [p.communicate() for _, p in procs if p.poll() is not None]
        time.sleep(0.05)
    go.touch()
    outputs = [p.communicate(timeout=TIMEOUT) + (p.returncode,) for _, p in procs]
    for out, err, code in outputs:
        assert code == 0, err
        assert 'prepared' in out
        assert 'warning' not in err  # nobody took a file being written for a damaged one
    # each cache filled once: one download of each file, one conversion
    assert http_server.hits.count('/hotdog.zip') == 1
    assert sum(h.startswith('/gluon/models/') for h in http_server.hits) == 1
    assert len(log.read_text().splitlines()) == 1

    monkeypatch.setitem(gluoncv_store._model_sha1, STORE_MODEL, store_sha1)
    monkeypatch.setitem(mxnet_store._model_sha1, STORE_MODEL, store_sha1)
    monkeypatch.setenv('MXNET_GLUON_REPO', repo)
    prepare_alone(tmp_path / 'alone-data', mirror, sha1, tmp_path / 'alone-models')
    assert tree(data_dir) == tree(tmp_path / 'alone-data')  # byte-identical, no scratch left
    assert tree(tmp_path / 'mxnet' / 'models') == tree(tmp_path / 'alone-models')
    assert not (tmp_path / 'user-cache' / 'gluon-transfer').exists()


# %% Read-only shares (a real read-only bind mount: as root, chmod does not stop writes)

READ_ONLY = textwrap.dedent('''
    import os, sys
    import utils
    from utils.data import datasets

    share, incomplete, models_dir, mirror, sha1 = sys.argv[1:]
    for folder in (share, incomplete, models_dir):
        try:
            open(os.path.join(folder, 'probe'), 'w')
        except OSError as err:
            assert err.errno == 30, err  # EROFS: the mount really is read-only
        else:
            raise AssertionError('%s can be written: the test would prove nothing' % folder)
    args = utils.cli.parse_chapter('chapters.fine_tuning', [
        '--dataset', 'hotdog', '--data-dir', share, '--data-url', mirror, '--data-sha1', sha1])
    print('hotdog at', datasets.hotdog_folder(args))
    assert utils.pretrained.model_store.models_root() == models_dir  # $MXNET_HOME/models
    utils.get_pretrained('mobilenetv2_1.0')
    print('weights from', models_dir)
    utils.run_chapter('chapters.fine_tuning', [
        '--dataset', 'hotdog', '--data-dir', incomplete, '--no-progress'])
''')


def bind_read_only(folders, command):
    """`command` in a mount namespace where each of `folders` is mounted read-only."""
    mounts = ' && '.join('mount --bind {0} {0} && mount -o remount,bind,ro {0}'.format(f)
                         for f in folders)
    return ['unshare', '-m', 'sh', '-c', mounts + ' && exec "$0" "$@"'] + command


def test_read_only_shares_are_used_and_an_incomplete_one_is_refused(
        tmp_path, hotdog_mirror, http_server):
    if shutil.which('unshare') is None or subprocess.run(
            bind_read_only([str(tmp_path)], ['true']), capture_output=True).returncode != 0:
        pytest.skip('needs `unshare -m` and bind mounts (root or user namespaces)')
    mirror, sha1 = hotdog_mirror()
    share, incomplete = tmp_path / 'share', tmp_path / 'incomplete'
    models = tmp_path / 'mxnet' / 'models'  # environment()'s $MXNET_HOME
    datasets.get_hotdog(str(share), [(mirror, sha1)])
    utils.get_pretrained('mobilenetv2_1.0', root=str(models))
    incomplete.mkdir()
    shutil.copy(share / 'hotdog.zip', incomplete / 'hotdog.zip')  # downloaded, not extracted
    hits = list(http_server.hits)
    before = [tree(folder) for folder in (share, incomplete, models)]
    env = environment(tmp_path, 'http://127.0.0.1:9/')
    done = subprocess.run(
        bind_read_only([str(share), str(incomplete), str(models)],
                       [sys.executable, '-c', READ_ONLY, str(share), str(incomplete),
                        str(models), mirror, sha1]),
        env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=TIMEOUT)
    assert 'hotdog at %s' % (share / 'hotdog') in done.stdout, done.stderr
    assert 'weights from' in done.stdout
    assert done.returncode == 2
    err = done.stderr.strip().splitlines()
    assert len(err) == 1, err
    assert str(incomplete) in err[0] and 'read-only and incomplete' in err[0]
    assert 'hotdog.zip was not extracted there' in err[0]
    assert http_server.hits == hits  # nothing fetched: the share was used as it is
    # and nothing written, nor anything put in this user's cache instead
    assert [tree(folder) for folder in (share, incomplete, models)] == before
    assert not (tmp_path / 'user-cache' / 'gluon-transfer').exists()


def test_read_only_models_folder_without_the_weights_converts_into_the_user_cache(
        tmp_path, monkeypatch, capsys):
    from utils import files
    from utils.pretrained import model_store, torchvision_weights
    models, cache = tmp_path / 'models', tmp_path / 'cache'
    models.mkdir()
    monkeypatch.setenv('XDG_CACHE_HOME', str(cache))

    def writable(folder):  # the real check is exercised by the bind-mount test above
        return os.path.abspath(folder) != str(models)
    for module in (files, model_store, torchvision_weights):
        if hasattr(module, 'can_write_in'):
            monkeypatch.setattr(module, 'can_write_in', writable)
    utils.get_pretrained('mobilenetv2_1.0', root=str(models))
    fallback = cache / 'gluon-transfer' / 'models'
    assert os.listdir(models) == []
    assert os.path.exists(converted_path(str(fallback)))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'read-only' in err[0] and str(fallback) in err[0]
    utils.get_pretrained('mobilenetv2_1.0', root=str(models))  # found there, silently
    assert capsys.readouterr().err == ''


# %% --data-sha1 belongs to --data-url

def test_data_sha1_checks_only_the_mirror(tmp_path, http_server, dead_url, monkeypatch):
    published, mirrored = b'the published archive', b'a mirror\'s own build'
    default_url = http_server.put('/default/hotdog.zip', published)
    monkeypatch.setattr(datasets, 'HOTDOG_URLS', (default_url,))
    monkeypatch.setattr(datasets, 'HOTDOG_SHA1', hashlib.sha1(published).hexdigest())
    monkeypatch.delenv('HOTDOG_URL', raising=False)
    mirror_sha1 = hashlib.sha1(mirrored).hexdigest()
    sources = datasets.hotdog_sources([dead_url], mirror_sha1)
    assert sources == [(dead_url, mirror_sha1), (default_url, datasets.HOTDOG_SHA1)]
    path = utils.download(sources, str(tmp_path / 'hotdog.zip'))
    with open(path, 'rb') as f:
        assert f.read() == published
    assert http_server.hits == ['/default/hotdog.zip']  # once: its own sha1 matched

    mirror = http_server.put('/mirror/hotdog.zip', mirrored)
    path = utils.download(datasets.hotdog_sources([mirror], mirror_sha1),
                          str(tmp_path / 'other' / 'hotdog.zip'))
    with open(path, 'rb') as f:
        assert f.read() == mirrored
    # a wrong --data-sha1: the mirror twice, then the default URL, which is right
    http_server.hits.clear()
    utils.download(datasets.hotdog_sources([mirror], '0' * 40), str(tmp_path / 'third.zip'))
    assert http_server.hits == ['/mirror/hotdog.zip'] * 2 + ['/default/hotdog.zip']


def test_data_sha1_reaches_the_chapters_mirror_only(tmp_path, hotdog_mirror, dead_url,
                                                    http_server, monkeypatch):
    mirror, sha1 = hotdog_mirror()
    monkeypatch.setattr(datasets, 'HOTDOG_URLS', (dead_url,))
    monkeypatch.delenv('HOTDOG_URL', raising=False)
    args = utils.cli.parse_chapter('chapters.fine_tuning', [
        '--dataset', 'hotdog', '--data-dir', str(tmp_path), '--data-url', mirror,
        '--data-sha1', sha1])
    assert datasets.hotdog_folder(args) == str(tmp_path / 'hotdog')
    assert http_server.hits == ['/hotdog.zip']
    with pytest.raises(DownloadError) as err:
        datasets.get_hotdog(str(tmp_path / 'none'), datasets.hotdog_sources([], sha1))
    assert datasets.HOTDOG_SHA1 in str(err.value) and sha1 not in str(err.value)


# %% The decode budget variable

@pytest.mark.parametrize('value', ['1G', '-5', 'nan', 'inf', '512 MiB'])
def test_bad_decode_budget_is_one_line(monkeypatch, value):
    monkeypatch.setenv(decoded.BUDGET_ENV, value)
    with pytest.raises(utils.UserError) as err:
        decoded.memory_budget()
    message = str(err.value)
    assert '\n' not in message and decoded.BUDGET_ENV in message and repr(value) in message


@pytest.mark.parametrize('value, mib', [('512', 512), ('0', 0), ('0.5', 0.5)])
def test_decode_budget_in_mib(monkeypatch, value, mib):
    monkeypatch.setenv(decoded.BUDGET_ENV, value)
    assert decoded.memory_budget() == int(mib * decoded.MIB)


def test_bad_decode_budget_ends_a_chapter_in_one_line(tmp_path, hotdog_mirror, monkeypatch,
                                                      capsys):
    mirror, sha1 = hotdog_mirror()
    monkeypatch.setenv(decoded.BUDGET_ENV, '1G')
    with pytest.raises(SystemExit) as exit_info:
        utils.run_chapter('chapters.fine_tuning', [
            '--quick', '--dataset', 'hotdog', '--data-dir', str(tmp_path / 'data'),
            '--data-url', mirror, '--data-sha1', sha1, '--out', str(tmp_path / 'out'),
            '--no-progress'])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and decoded.BUDGET_ENV in err[0] and "'1G'" in err[0]
