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
import tarfile
import zipfile

from mxnet import gluon

from .errors import UserError, one_line
from .files import file_digest, say_rebuilding, scratch_path, write_json


class DownloadError(UserError):
    """No mirror delivered a file with the expected sha1."""


def download(urls, path, sha1, retries=2):
    """Return the local path of the file at `urls` (one URL or several mirrors).

    `path` is the file's final path, or a folder (the URL's file name is kept). A file already
    there with the right sha1 is not fetched again.
    """
    urls = [urls] if isinstance(urls, str) else list(urls)
    if os.path.isdir(path) or path.endswith(os.sep):
        path = os.path.join(path, urls[0].split('/')[-1].split('?')[0])
    if os.path.exists(path) and gluon.utils.check_sha1(path, sha1):
        return path
    failures = []
    for url in urls:
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
                if gluon.utils.check_sha1(tmp, sha1):
                    os.replace(tmp, path)
                    return path
                failures.append('%s: sha1 mismatch (attempt %d)' % (url, attempt + 1))
    raise DownloadError(
        'could not download %s (%s); download it by hand from %s and place it at %s '
        '(sha1 %s)' % (os.path.basename(path), '; '.join(failures), ' or '.join(urls),
                       os.path.abspath(path), sha1))


def extract(archive, dest, sha1=None):
    """Unpack a zip or tar archive into `dest` and return `dest`.

    Members that would land outside `dest` are refused. A marker written after success records
    the archive's sha1 (`sha1`, else computed) and the size of every extracted file: the next
    call is a no-op while the archive is the same and every file is there with its size; an
    interrupted extraction (no marker), another archive under the same name, or a file
    missing or cut short in `dest` makes it extract again, with one line saying why.
    """
    sha1 = sha1 or file_digest(archive, 'sha1')
    marker = os.path.join(dest, '.%s.extracted' % os.path.basename(archive))
    if os.path.exists(marker):
        reason = _extraction_damage(marker, dest, sha1)
        if reason is None:
            return dest
        say_rebuilding(dest, reason, 'extracting %s again' % os.path.basename(archive))
        os.remove(marker)
    os.makedirs(dest, exist_ok=True)
    root = os.path.realpath(dest)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            _check_members(archive, root, zf.namelist())
            zf.extractall(dest)
            sizes = {i.filename: i.file_size for i in zf.infolist() if not i.is_dir()}
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            _check_members(archive, root, [m.name for m in members])
            bad = [m.name for m in members if m.issym() or m.islnk() or m.isdev()]
            if bad:
                raise UserError('%s: refusing links or devices in the archive (%s); '
                                'unpack it by hand if you trust it' % (archive, bad[0]))
            tf.extractall(dest)
            sizes = {m.name: m.size for m in members if m.isfile()}
    else:
        raise UserError('%s is neither a zip nor a tar archive: delete it and download it '
                        'again' % archive)
    write_json(marker, {'archive_sha1': sha1, 'sizes': sizes})
    return dest


def _extraction_damage(marker, dest, sha1):
    """None when `dest` holds what the marker says was extracted from an archive with `sha1`,
    else the reason. Sizes, not contents, are compared: a stat per file keeps this cheap."""
    try:
        with open(marker) as f:
            record = json.load(f)
        recorded, sizes = record['archive_sha1'], dict(record['sizes'])
    except (OSError, ValueError, KeyError, TypeError):
        return 'its extraction marker is unreadable or from an older version'
    if recorded != sha1:
        return 'the archive has sha1 %s now, %s when it was extracted' % (sha1, recorded)
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
