"""Atomic file writes: a reader never sees a half-written file, a crash leaves the old one.

Caches written with `checked_path` also get their sha256 recorded beside them, so a file cut
short or overwritten later (a full disk, a copied classroom cache, a sync tool) is recognised
by `damage` before it is used. `exclusive_lock` lets the processes of a class that start
together fill a shared cache once; `can_write_in` and `user_cache_dir` let a read-only share
be used as it is; `replace_folder` swaps a finished folder into place.

Standard library only: the book builder and the grader use it without loading MXNet.
"""
import contextlib
import glob
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import uuid
import zipfile
import zlib

try:
    import fcntl
except ImportError:  # Windows: no flock; the atomic renames alone still keep files whole
    fcntl = None


@contextlib.contextmanager
def scratch_path(path):
    """Yield an unused temporary name next to `path`; whatever is left under it is removed.

    The file is not created here: writers create it (gluon's downloader skips an existing
    file, and leaves `<name>.<uuid>` behind when a transfer breaks: those go too).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, '.%s.%s.part' % (os.path.basename(path), uuid.uuid4().hex[:12]))
    try:
        yield tmp
    finally:
        for leftover in [tmp] + glob.glob(glob.escape(tmp) + '.*'):
            if os.path.exists(leftover):
                os.remove(leftover)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; it replaces `path` only when the block succeeds."""
    with scratch_path(path) as tmp:
        yield tmp
        os.replace(tmp, path)


LOCK_SUFFIX = '.lock'


def without_locks(names):
    """File names without exclusive_lock's lock files (empty, kept on purpose)."""
    return [n for n in names if not (n.startswith('.') and n.endswith(LOCK_SUFFIX))]


def lock_path(path):
    """The lock file of exclusive_lock(path): `.<name>.lock` beside `path`."""
    path = os.path.abspath(os.fspath(path))
    return os.path.join(os.path.dirname(path), '.%s%s' % (os.path.basename(path), LOCK_SUFFIX))


@contextlib.contextmanager
def exclusive_lock(path, waiting=None):
    """Hold an exclusive lock named after `path` (the file `.<name>.lock` beside it).

    Writes are atomic anyway; the lock is there so that work costing seconds to minutes
    (a 260 MB download, an extraction, a weights conversion) is done by one of the processes
    that start at the same minute, while the others wait and then use its result: callers
    check again once they hold it. flock is released by the kernel when a process dies, so
    a killed run never leaves the others waiting. The lock file stays (it is empty):
    removing it while another process waits on it would let a third one lock a new file.
    `waiting`, when given, is printed when another process holds the lock. Where no lock file
    can be opened (a folder of another user's, read-only to this one), nothing is locked:
    this process cannot write there anyway, and its writes fail with their own message.
    """
    lock = lock_path(path)
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    if fcntl is None:
        yield
        return
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # made by another user of a shared folder: reading is enough
        try:
            fd = os.open(lock, os.O_RDONLY)
        except OSError:
            fd = None
    if fd is None:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                print(waiting, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def replace_folder(new, target):
    """Put the finished folder (or file) `new` at `target`, replacing what is there. A folder
    cannot be renamed over a non-empty one: the old one is renamed aside first, then removed,
    so a reader sees the old folder or the new one, whole (with an instant between where
    `target` is missing). Both must be on one file system."""
    if not os.path.isdir(target) or os.path.islink(target):
        os.replace(new, target)  # nothing there, a file or a link: one atomic rename
        return
    old = '%s.old-%s' % (new.rstrip(os.sep), uuid.uuid4().hex[:12])
    os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


def can_write_in(folder):
    """Can files be made in `folder` (or in the folder that would hold it, when it does not
    exist yet)? Tried for real, and cleaned up: os.access says yes to root even on a
    read-only mount."""
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return False
    try:
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix='.write-test-'))
        return True
    except OSError:
        return False


def user_cache_dir(*parts):
    """This user's cache folder for the project: $XDG_CACHE_HOME/gluon-transfer (default
    ~/.cache/gluon-transfer), for what a read-only shared folder cannot keep."""
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(base, 'gluon-transfer', *parts)


CHECKSUM_SUFFIX = '.sha256'


def file_digest(path, algorithm='sha256'):
    """Hex digest of a file's bytes, read in 1 MiB blocks (sha256 by default, 'sha1' for the
    archives whose published checksums are sha1)."""
    digest = hashlib.new(algorithm)
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def checked_path(path):
    """Like atomic_path, and the new file's sha256 is recorded in `path + '.sha256'` (the
    format of `sha256sum`, so `sha256sum -c` checks it too).

    The checksum is written before the file takes its name: a crash in between leaves the old
    file beside a checksum it does not match, which `damage` reports.
    """
    with scratch_path(path) as tmp:
        yield tmp
        digest = file_digest(tmp)
        with atomic_path(path + CHECKSUM_SUFFIX) as side:
            with open(side, 'w') as f:
                f.write('%s  %s\n' % (digest, os.path.basename(path)))
        os.replace(tmp, path)


def damage(path):
    """None when `path` holds what `checked_path` wrote, else the reason, a short phrase."""
    if not os.path.exists(path):
        return 'the file is missing'
    try:
        with open(path + CHECKSUM_SUFFIX) as f:
            recorded = f.read().split()[0]
    except (OSError, UnicodeDecodeError, IndexError):
        return 'no checksum was recorded beside it'
    if file_digest(path) != recorded:
        return 'its sha256 is not the one recorded when it was written: cut short or overwritten'
    return None


def say_rebuilding(path, reason, action):
    """The one line shown when a damaged cache file is rebuilt."""
    print('warning: %s cannot be used (%s): %s' % (path, reason, action), file=sys.stderr)


def load_module(path, name):
    """The Python file at `path` imported as a module named `name` (not added to sys.modules:
    a student's file or a test file is loaded fresh each time)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_json(path, obj):
    """Write `obj` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, 'w') as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write('\n')


@contextlib.contextmanager
def zip_bundle_writer(path):
    """Yield an empty scratch folder; the files put there become one zip at `path`, which
    replaces the old one atomically when the block succeeds (several files, one commit)."""
    folder = tempfile.mkdtemp(prefix='bundle-')
    try:
        yield folder
        with atomic_path(path) as tmp:
            with zipfile.ZipFile(tmp, 'w') as zf:
                for name in sorted(os.listdir(folder)):
                    zf.write(os.path.join(folder, name), name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def zip_bundle_reader(path):
    """Yield a scratch folder holding the files of a zip written by zip_bundle_writer.

    The zip's CRC-32 of each member is checked while extracting: a damaged bundle raises
    zipfile.BadZipFile whatever went wrong in it.
    """
    folder = tempfile.mkdtemp(prefix='bundle-')
    try:
        try:
            with zipfile.ZipFile(path) as zf:
                for name in zf.namelist():  # flat bundles only: nothing may land elsewhere
                    if os.path.basename(name) != name:
                        raise zipfile.BadZipFile('unexpected member %r' % name)
                zf.extractall(folder)
        except (EOFError, zlib.error, NotImplementedError, RuntimeError) as err:
            # a member cut short, garbage in a compressed member, or an unknown method
            raise zipfile.BadZipFile('%s: %s' % (type(err).__name__, err)) from None
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
