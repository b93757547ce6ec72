"""Fetching and unpacking data sets, with mirrors, sha1 checks and safe extraction.

Built on `gluon.utils.download` (streaming, retries). What it lacks, and this module adds:
trying several mirrors, checking the sha1 BEFORE the file takes its final name (gluon renames
first and checks after, leaving a corrupt file in place), one re-fetch on a wrong sha1, and a
one-line message saying where to put the file by hand when there is no network.
"""
import contextlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import zipfile

from mxnet import gluon

from ..errors import UserError, one_line
from ..files import (exclusive_lock, file_digest, replace_folder, say_rebuilding, scratch_path,
                     write_json)


class DownloadError(UserError):
    """No mirror delivered a file with the expected sha1."""


def download(urls, path, sha1=None, retries=2):
    """Return the local path of the file at `urls` (one URL or several mirrors).

    `path` is the file's final path, or a folder (the URL's file name is kept). Each URL is a
    string, checked against `sha1`, or a pair (URL, its own sha1): a mirror may serve another
    build of the file. A file already there with one of the sha1s is not fetched again.
    """
    return download_checked(urls, path, sha1, retries)[0]


def download_checked(urls, path, sha1=None, retries=2):
    """download, returning (path, the sha1 the file has): what extract is given."""
    urls = [urls] if isinstance(urls, (str, tuple)) else list(urls)
    sources = [u if isinstance(u, tuple) else (u, sha1) for u in urls]
    if os.path.isdir(path) or path.endswith(os.sep):
        path = os.path.join(path, sources[0][0].split('/')[-1].split('?')[0])
    known = _present_with(path, sources)
    if known:
        return path, known
    # Processes starting together would each fetch the file: one does, the others wait
    # for it and find it there.
    with exclusive_lock(path):
        known = _present_with(path, sources)
        if known:
            return path, known
        failures = []
        for url, url_sha1 in sources:
            for attempt in range(2):  # a wrong sha1 is fetched once more before giving up
                with scratch_path(path) as tmp:
                    print('Downloading %s from %s' % (os.path.basename(path), url))
                    try:
                        # gluon prints the temporary name and every retry: keep its chatter out
                        with contextlib.redirect_stdout(io.StringIO()):
                            gluon.utils.download(url, path=tmp, overwrite=True, retries=retries)
                    except Exception as err:  # requests and gluon raise many kinds
                        failures.append('%s: %s' % (url, one_line(err)))
                        break
                    if gluon.utils.check_sha1(tmp, url_sha1):
                        os.replace(tmp, path)
                        return path, url_sha1
                    failures.append('%s: sha1 mismatch (attempt %d)' % (url, attempt + 1))
    wanted = sorted(set(s for _, s in sources))
    raise DownloadError(
        'could not download %s (%s); download it by hand from %s and place it at %s '
        '(sha1 %s)' % (os.path.basename(path), '; '.join(failures),
                       ' or '.join(u for u, _ in sources), os.path.abspath(path),
                       ' or '.join(wanted)))


def _present_with(path, sources):
    """The sha1 among `sources`' that the file at `path` has, or None (also when absent)."""
    if not os.path.exists(path):
        return None
    digest = file_digest(path, 'sha1')
    return next((s for _, s in sources if s.lower() == digest), None)


def extract(archive, dest, sha1=None):
    """Unpack a zip or tar archive into `dest` and return `dest`.

    Members that would land outside `dest` are refused. A marker written after success records
    the archive's sha1 (`sha1`, else computed) and the size of every extracted file: the next
    call is a no-op while the archive is the same and every file is there with its size; an
    interrupted extraction (no marker), another archive under the same name, or a file
    missing or cut short in `dest` makes it extract again, with one line saying why.

    Safe when several processes start at once: the archive is unpacked into a scratch folder
    inside `dest`, and each of its top-level entries then takes its place by a rename, so
    no reader sees a half-written file; one process extracts while the others wait for it
    and use its result.
    """
    sha1 = sha1 or file_digest(archive, 'sha1')
    marker = extraction_marker(archive, dest)
    if extraction_damage(archive, dest, sha1) is None:
        return dest
    with exclusive_lock(marker):
        reason = extraction_damage(archive, dest, sha1)  # another process may have done it
        if reason is None:
            return dest
        if os.path.exists(marker):
            say_rebuilding(dest, reason, 'extracting %s again' % os.path.basename(archive))
            os.remove(marker)
        sizes = _extract_into_place(archive, dest)
        write_json(marker, {'archive_sha1': sha1, 'sizes': sizes})
    return dest


def extraction_marker(archive, dest):
    return os.path.join(dest, '.%s.extracted' % os.path.basename(archive))


def extraction_damage(archive, dest, sha1s):
    """None when `dest` holds what was extracted from `archive` (a path or only its name),
    the archive having had one of `sha1s` (one or several), else what is wrong, a phrase."""
    sha1s = [sha1s] if isinstance(sha1s, str) else list(sha1s)
    marker = extraction_marker(archive, dest)
    if not os.path.exists(marker):
        return '%s was not extracted there (no %s)' % (os.path.basename(archive),
                                                       os.path.basename(marker))
    return _extraction_damage(marker, dest, sha1s)


def _extract_into_place(archive, dest):
    """Unpack `archive` into a scratch folder in `dest`, then rename each top-level entry into
    `dest` (an old one is moved aside first, then removed). Returns {member: size}."""
    os.makedirs(dest, exist_ok=True)
    scratch = tempfile.mkdtemp(dir=dest, prefix='.%s.' % os.path.basename(archive),
                               suffix='.part')
    try:
        root = os.path.realpath(scratch)
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _check_members(archive, root, zf.namelist())
                zf.extractall(scratch)
                sizes = {i.filename: i.file_size for i in zf.infolist() if not i.is_dir()}
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                bad = [m.name for m in members if m.issym() or m.islnk() or m.isdev()]
                if bad:  # a data set needs none
                    raise UserError('%s: refusing links or devices in the archive (%s); '
                                    'unpack it by hand if you trust it' % (archive, bad[0]))
                if hasattr(tarfile, 'data_filter'):  # Python 3.12, 3.11.4, 3.10.12, 3.9.17, ...
                    try:
                        tf.extractall(scratch, filter='data')
                    except tarfile.FilterError as err:
                        raise UserError('%s: %s; refusing to extract' % (archive, err)) from None
                else:  # older Pythons: the paths are checked by hand
                    _check_members(archive, root, [m.name for m in members])
                    tf.extractall(scratch)
                sizes = {m.name: m.size for m in members if m.isfile()}
        else:
            raise UserError('%s is neither a zip nor a tar archive: delete it and download it '
                            'again' % archive)
        for entry in sorted(os.listdir(scratch)):
            replace_folder(os.path.join(scratch, entry), os.path.join(dest, entry))
        return sizes
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _extraction_damage(marker, dest, sha1s):
    """None when `dest` holds what the marker says was extracted from an archive with one of
    `sha1s`, else the reason. Sizes, not contents, are compared: a stat per file keeps this
    cheap."""
    try:
        with open(marker) as f:
            record = json.load(f)
        recorded, sizes = record['archive_sha1'], dict(record['sizes'])
    except (OSError, ValueError, KeyError, TypeError):
        return 'its extraction marker is unreadable or from an older version'
    if recorded not in sha1s:
        return 'the archive has sha1 %s now, %s when it was extracted' % (
            ' or '.join(sha1s), recorded)
    for name, size in sizes.items():
        path = os.path.join(dest, name)
        if not os.path.isfile(path) or os.path.getsize(path) != size:
            return '%s is missing or has another size than in the archive' % path
    return None


def _check_members(archive, root, names):
    for name in names:
        target = os.path.realpath(os.path.join(root, name))
        if os.path.commonpath([root, target]) != root:
            raise UserError('%s: member %r would be written outside %s; refusing to extract'
                            % (archive, name, root))
