"""Atomic file writes: a reader never sees a half-written file, a crash leaves the old one."""
import contextlib
import glob
import json
import os
import shutil
import tempfile
import uuid
import zipfile


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
    """Yield a scratch folder holding the files of a zip written by zip_bundle_writer."""
    folder = tempfile.mkdtemp(prefix='bundle-')
    try:
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():  # flat bundles only: nothing may land elsewhere
                if os.path.basename(name) != name:
                    raise zipfile.BadZipFile('unexpected member %r' % name)
            zf.extractall(folder)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
