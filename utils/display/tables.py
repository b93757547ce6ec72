"""Results as aligned text tables (or Markdown), the one table printer of the chapters."""


def format_table(header, rows, formats=None, markdown=False):
    """Rows of values under `header`, one column each: the first left-aligned, the others
    right-aligned. formats: a %-format per column (None: str); a None value shows as '-'.
    markdown=True: a Markdown table instead."""
    formats = formats or [None] * len(header)
    cells = [[('-' if value is None else fmt % value if fmt else str(value))
              for value, fmt in zip(row, formats)] for row in rows]
    if markdown:
        lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
        return '\n'.join(lines + ['| ' + ' | '.join(row) + ' |' for row in cells])
    widths = [max(len(str(x)) for x in column) for column in zip(header, *cells)]
    return '\n'.join('  '.join(str(x).ljust(w) if i == 0 else str(x).rjust(w)
                               for i, (x, w) in enumerate(zip(row, widths))).rstrip()
                     for row in [list(header)] + cells)


def print_table(header, rows, formats=None, markdown=False):
    print(format_table(header, rows, formats, markdown))
