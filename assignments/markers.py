"""nbgrader's solution and hidden-test markers, applied to plain Python files.

The markers are nbgrader's (`### BEGIN SOLUTION`, `### BEGIN HIDDEN TESTS`, ...); what nbgrader
does inside notebook cells is done here on whole files, line by line.
"""
import re

BEGIN_SOLUTION, END_SOLUTION = '### BEGIN SOLUTION', '### END SOLUTION'
BEGIN_HIDDEN, END_HIDDEN = '### BEGIN HIDDEN TESTS', '### END HIDDEN TESTS'
_MARKER = re.compile(r'^(\s*)(### (?:BEGIN|END) (?:SOLUTION|HIDDEN TESTS))\s*$')


class MarkerError(ValueError):
    """Markers that do not pair up; the message names the file and line."""


def _blocks(lines, begin, end, name):
    """[(first, last)] 0-based line numbers of each begin..end block (markers included)."""
    blocks, start = [], None
    for number, line in enumerate(lines):
        match = _MARKER.match(line)
        if not match:
            continue
        marker = match.group(2)
        if marker == begin:
            if start is not None:
                raise MarkerError('%s:%d: %s inside another one' % (name, number + 1, begin))
            start = number
        elif marker == end:
            if start is None:
                raise MarkerError('%s:%d: %s without %s' % (name, number + 1, end, begin))
            blocks.append((start, number))
            start = None
    if start is not None:
        raise MarkerError('%s:%d: %s is never closed' % (name, start + 1, begin))
    return blocks


def student_version(text, name='<source>'):
    """Every solution block becomes `raise NotImplementedError()` at the block's indentation."""
    lines = text.splitlines(keepends=True)
    blocks = _blocks(lines, BEGIN_SOLUTION, END_SOLUTION, name)
    out, previous = [], 0
    for first, last in blocks:
        out.extend(lines[previous:first])
        indent = _MARKER.match(lines[first]).group(1)
        out.append('%s# YOUR CODE HERE\n%sraise NotImplementedError()\n' % (indent, indent))
        previous = last + 1
    out.extend(lines[previous:])
    return ''.join(out)


def reference_version(text, name='<source>'):
    """The solution with its marker lines removed (what the autograder folder keeps)."""
    lines = text.splitlines(keepends=True)
    _blocks(lines, BEGIN_SOLUTION, END_SOLUTION, name)  # checks the pairing
    return ''.join(line for line in lines
                   if not (_MARKER.match(line) and 'SOLUTION' in line))


def public_tests(text, name='<tests>'):
    """The tests without the hidden blocks (markers and contents removed)."""
    lines = text.splitlines(keepends=True)
    hidden = set()
    for first, last in _blocks(lines, BEGIN_HIDDEN, END_HIDDEN, name):
        hidden.update(range(first, last + 1))
    return ''.join(line for number, line in enumerate(lines) if number not in hidden)


def hidden_lines(text, name='<tests>'):
    """1-based line numbers inside hidden-test blocks."""
    lines = text.splitlines()
    return {number + 1 for first, last in _blocks(lines, BEGIN_HIDDEN, END_HIDDEN, name)
            for number in range(first, last + 1)}
