"""A student's files, made ready to grade: the one place where a student's folder becomes the
source file(s) the probes import."""
import os

from assignments import notebooks, sandbox
from assignments.tests_files import parse_lock
from utils.files import atomic_path

WALK_LIMIT = 10000  # entries looked at for links in one assignment folder


class Missing(Exception):
    """The student's folder lacks the file to grade (the message says which)."""


class Refused(Exception):
    """The student's folder holds a symbolic link (the message names it)."""


def first_link(submission_dir, folder):
    """The first symbolic link on the way from submission_dir to `folder` or inside it; None
    when there is none. A link could make another student's folder, or the teacher's, pass
    for this one."""
    relative = os.path.relpath(folder, submission_dir)
    path = submission_dir
    for part in relative.split(os.sep):
        path = os.path.join(path, part)
        if os.path.islink(path):
            return path
        if not os.path.isdir(path):
            return None
    seen = 0
    for root, dirs, files in os.walk(folder):
        for name in sorted(dirs + files):
            seen += 1
            if os.path.islink(os.path.join(root, name)):
                return os.path.join(root, name)
        if seen > WALK_LIMIT:
            raise sandbox.FolderTooLarge('%s holds more than %d files' % (
                os.path.relpath(folder, submission_dir), WALK_LIMIT))
    return None


def submission_source(submission_dir, assignment, submission_file, target):
    """Copy the student's folder of `assignment` into `target`, ready to grade.

    Looks for <dir>/<assignment>/<file>, also under <dir>/assignments/, or its notebook
    (<file> as .ipynb) when the file is absent or still as handed out: then the notebook's
    graded cells, read here as text and never run, become <file> in `target`. Copies regular
    files only (no links, pipes or devices), never the notebook. Raises Missing, Refused,
    sandbox.FolderTooLarge, or notebooks.NotebookError (one line naming the notebook)."""
    for folder in (os.path.join(submission_dir, assignment),
                   os.path.join(submission_dir, 'assignments', assignment)):
        link = first_link(submission_dir, folder)
        if link:
            raise Refused('%s is a symbolic link: hand in the files themselves, not links'
                          % link)
        path = notebooks.pick_submission(folder, submission_file)
        if path is None:
            continue
        with parse_lock:  # the magics are found by parsing the cells
            graded_text = notebooks.graded_text(path)  # None for the .py itself
        notebook = os.path.join(folder, notebooks.notebook_name(submission_file))
        sandbox.copy_folder(folder, target, skip=[notebook])
        if graded_text is not None:
            with atomic_path(os.path.join(target, submission_file)) as tmp:
                with open(tmp, 'w', newline='') as f:
                    f.write(graded_text)
        return os.path.join(target, submission_file)
    raise Missing('file missing: expected %s/%s (or %s)' % (
        assignment, submission_file, notebooks.notebook_name(submission_file)))
