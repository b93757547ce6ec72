"""Classroom assignments: student versions with blanks, public and hidden tests, offline grading.

    python -m assignments.build --out dist --check      # dist/student/ and dist/autograder/
    python -m assignments.grade SUBMISSION_DIR [--json scores.json]
    python -m assignments.grade --class-dir SUBMISSIONS --csv scores.csv

Each assignment is a folder `aN_name/` holding a statement (statement.md), the reference
solution (the file the student completes) and its tests (tests.py). Markers follow nbgrader's
syntax, so the sources can be moved into nbgrader cells as they are:

- `### BEGIN SOLUTION` / `### END SOLUTION` around the answer: the student version gets
  `raise NotImplementedError()` in its place;
- `### BEGIN HIDDEN TESTS` / `### END HIDDEN TESTS` around tests that stay with the teacher.

docs/teachers.md tells how to build, hand out and grade.
"""
