import hashlib
import io
import os
import tarfile
import zipfile

import pytest

import utils
from utils.data.download import DownloadError
from utils.files import without_locks

GOOD = b'hotdog bytes ' * 1000
SHA1 = hashlib.sha1(GOOD).hexdigest()


@pytest.fixture
def server(http_server):
    """The test server with a good file, a file with a wrong byte, and a file whose
    transfer breaks off (it promises more bytes than it sends)."""
    for prefix in ('', '/a', '/b'):
        http_server.put(prefix + '/good.bin', GOOD)
        http_server.put(prefix + '/bad.bin', GOOD[:-1] + b'X')
    http_server.put('/truncated.bin', GOOD[:len(GOOD) // 2], length=len(GOOD))
    return http_server


@pytest.fixture
def refused_url(dead_url):
    return dead_url.rsplit('/', 1)[0] + '/good.bin'


def leftovers(folder):
    """Hidden files left in `folder`, but the download's lock file (empty, kept on purpose)."""
    return sorted(p for p in without_locks(os.listdir(folder)) if p.startswith('.'))


def test_right_sha1_downloads_once(server, tmp_path):
    path = utils.download(server.url + '/a/good.bin', str(tmp_path / 'good.bin'), SHA1, retries=0)
    assert open_bytes(path) == GOOD
    utils.download(server.url + '/a/good.bin', str(tmp_path / 'good.bin'), SHA1, retries=0)
    assert server.hits.count('/a/good.bin') == 1  # present with the right sha1: not fetched again
    assert leftovers(tmp_path) == []


def test_folder_as_path_keeps_the_url_name(server, tmp_path):
    path = utils.download(server.url + '/good.bin', str(tmp_path) + os.sep, SHA1, retries=0)
    assert path == str(tmp_path / 'good.bin')


def test_wrong_sha1_fetched_twice_then_clear_error(server, tmp_path):
    with pytest.raises(DownloadError) as err:
        utils.download(server.url + '/b/bad.bin', str(tmp_path / 'f.bin'), SHA1, retries=0)
    assert server.hits.count('/b/bad.bin') == 2
    message = str(err.value)
    assert 'sha1 mismatch' in message and str(tmp_path / 'f.bin') in message
    # nothing half-written, no wrong file under the name
    assert without_locks(os.listdir(tmp_path)) == []


def test_truncated_response_is_not_kept(server, tmp_path):
    with pytest.raises(DownloadError):
        utils.download(server.url + '/truncated.bin', str(tmp_path / 'f.bin'), SHA1, retries=0)
    assert without_locks(os.listdir(tmp_path)) == []


def test_refused_server_then_working_mirror(server, refused_url, tmp_path):
    path = utils.download([refused_url, server.url + '/good.bin'], str(tmp_path / 'f.bin'), SHA1,
                          retries=0)
    assert open_bytes(path) == GOOD
    assert leftovers(tmp_path) == []


def test_no_network_says_where_to_put_the_file(refused_url, tmp_path):
    with pytest.raises(DownloadError) as err:
        utils.download([refused_url], str(tmp_path / 'hotdog.zip'), SHA1, retries=0)
    message = str(err.value)
    assert '\n' not in message
    assert refused_url in message and str(tmp_path / 'hotdog.zip') in message and SHA1 in message


def test_existing_corrupt_file_is_replaced(server, tmp_path):
    target = tmp_path / 'good.bin'
    target.write_bytes(b'old and wrong')
    utils.download(server.url + '/good.bin', str(target), SHA1, retries=0)
    assert target.read_bytes() == GOOD


def make_zip(path, members):
    with zipfile.ZipFile(path, 'w') as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return str(path)


def test_extract_refuses_escaping_member(tmp_path):
    archive = make_zip(tmp_path / 'evil.zip', {'ok.txt': 'fine', '../escaped.txt': 'bad'})
    dest = tmp_path / 'dest'
    with pytest.raises(utils.UserError, match='outside'):
        utils.extract(archive, str(dest))
    assert not (tmp_path / 'escaped.txt').exists()


def make_tar(path, members, links=()):
    with tarfile.open(path, 'w') as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return str(path)


# Python 3.12+ warns about an unfiltered extractall, which without the test only older
# Pythons reach
@pytest.fixture(params=['data filter', pytest.param(
    'checked by hand', marks=pytest.mark.filterwarnings(
        'ignore:Python 3.14 will, by default, filter:DeprecationWarning'))])
def tar_checks(request, monkeypatch):
    """Both paths of utils.download: Python's filter='data', and the check of older Pythons."""
    if request.param == 'checked by hand':
        monkeypatch.delattr(tarfile, 'data_filter', raising=False)
    return request.param


def test_extract_refuses_tar_member_outside(tmp_path, tar_checks):
    archive = make_tar(tmp_path / 'evil.tar', {'ok.txt': b'fine', '../escaped.txt': b'bad'})
    with pytest.raises(utils.UserError, match='outside'):
        utils.extract(archive, str(tmp_path / 'dest'))
    assert not (tmp_path / 'escaped.txt').exists()
    assert not (tmp_path / 'dest' / 'ok.txt').exists()  # nothing half-done in place


def test_extract_keeps_an_absolute_tar_member_inside(tmp_path, tar_checks):
    # Python's data filter strips the leading '/'; older Pythons refuse the member
    target = tmp_path / 'absolute.txt'
    archive = make_tar(tmp_path / 'abs.tar', {str(target): b'bad'})
    try:
        utils.extract(archive, str(tmp_path / 'dest'))
    except utils.UserError as err:
        assert 'outside' in str(err)
    assert not target.exists()


def test_extract_refuses_tar_links_and_unpacks_a_good_tar(tmp_path, tar_checks):
    evil = make_tar(tmp_path / 'evil.tar', {'ok.txt': b'fine'}, links=[('l', '/etc/passwd')])
    with pytest.raises(utils.UserError, match='refusing links'):
        utils.extract(evil, str(tmp_path / 'dest'))
    good = make_tar(tmp_path / 'good.tar', {'data/a.txt': b'abc'})
    utils.extract(good, str(tmp_path / 'dest'))
    assert (tmp_path / 'dest' / 'data' / 'a.txt').read_bytes() == b'abc'


def test_extract_replaces_an_old_folder_whole(tmp_path):
    dest = tmp_path / 'dest'
    (dest / 'data').mkdir(parents=True)
    (dest / 'data' / 'stale.txt').write_text('from an older archive')
    utils.extract(make_tar(tmp_path / 'new.tar', {'data/a.txt': b'abc'}), str(dest))
    assert sorted(os.listdir(dest / 'data')) == ['a.txt']
    assert [n for n in without_locks(os.listdir(dest)) if not n.startswith('.new.tar')] == ['data']


def test_extract_marks_completion_and_redoes_interrupted(tmp_path):
    archive = make_zip(tmp_path / 'data.zip', {'hotdog/train/a.txt': 'a'})
    dest = tmp_path / 'dest'
    utils.extract(archive, str(dest))
    assert (dest / 'hotdog/train/a.txt').read_text() == 'a'
    (dest / 'hotdog/train/a.txt').write_text('b')  # same size: a stat does not see it
    utils.extract(archive, str(dest))  # complete: not redone
    assert (dest / 'hotdog/train/a.txt').read_text() == 'b'
    (dest / 'hotdog/train/a.txt').unlink()
    os.remove(dest / '.data.zip.extracted')  # as after an interrupted extraction
    utils.extract(archive, str(dest))
    assert (dest / 'hotdog/train/a.txt').exists()


def test_extract_refuses_non_archive(tmp_path):
    junk = tmp_path / 'junk.zip'
    junk.write_bytes(b'not an archive')
    with pytest.raises(utils.UserError, match='neither a zip nor a tar'):
        utils.extract(str(junk), str(tmp_path / 'dest'))


def open_bytes(path):
    with open(path, 'rb') as f:
        return f.read()
