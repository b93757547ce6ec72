"""Student text as data: what the grader shows of it, on the terminal, in CSV and JSON files.

Reasons, printed output, tracebacks, folder and file names come from submissions. Before they
leave the grader they become valid UTF-8 with control characters written as escapes, so a
reason cannot end a class run (a lone surrogate cannot be encoded), print a line that looks
like the grader's own (a newline in a folder name), move the terminal's cursor (escape
sequences) or turn a spreadsheet cell into a formula.
"""
import unicodedata

# bidirectional overrides and isolates: they reorder what the terminal shows
_BIDI = set(chr(c) for c in list(range(0x202A, 0x202F)) + list(range(0x2066, 0x206A)))
_FORMULA = ('=', '+', '-', '@', '\t', '\r')
TEXT_FIELDS = ('reason', 'traceback', 'output')


def _escape(char):
    code = ord(char)
    if code < 0x100:
        return '\\x%02x' % code
    return '\\u%04x' % code if code < 0x10000 else '\\U%08x' % code


def text(value, newlines=False):
    """`value` as a printable str: control characters (newlines too, unless `newlines`),
    lone surrogates and bidirectional controls escaped as `\\xNN` / `\\uNNNN`."""
    if isinstance(value, bytes):
        value = value.decode('utf-8', 'backslashreplace')
    elif not isinstance(value, str):
        value = str(value)
    out = []
    for char in value:
        if char == '\n' and newlines:
            out.append(char)
        elif char == '\t' and newlines:
            out.append(char)
        elif unicodedata.category(char) in ('Cc', 'Cs') or char in _BIDI \
                or char in ('\u2028', '\u2029'):
            out.append(_escape(char))
        else:
            out.append(char)
    return ''.join(out)


def line(value):
    """One line of text: newlines escaped too."""
    return text(value, newlines=False)


def record(result):
    """A test's record with its text fields made printable (the reason kept to one line)."""
    result = dict(result)
    for key in TEXT_FIELDS:
        if result.get(key):
            result[key] = line(result[key]) if key == 'reason' else text(result[key], True)
    return result


def csv_cell(value):
    """A CSV cell that a spreadsheet reads as text: never a formula."""
    value = line(value)
    return "'" + value if value.startswith(_FORMULA) else value
