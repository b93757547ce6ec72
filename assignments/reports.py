"""The grader's results as shown: the feedback a teacher and a student may see, the terminal
report, the JSON and the class's CSV (assignments.gradescope: Gradescope's results.json)."""
import csv
import io
import json

from assignments import shown
from utils.files import atomic_path


def feedback(results, show_hidden=False, verbose=False):
    """Results as shown: a hidden test keeps only its name, status and points unless
    show_hidden; tracebacks and output only with verbose."""
    out = []
    for r in results:
        r = dict(r)
        r.pop('calls', None)
        if r['hidden'] and not show_hidden:
            r['status'] = 'passed' if r['status'] == 'passed' else 'failed'
            r['reason'] = 'hidden test'
            r['traceback'] = r['output'] = ''
            r['seconds'] = None  # its time could carry what the student's code saw
        elif not verbose:
            r['traceback'] = r['output'] = ''
        out.append(r)
    return out


def student_feedback(results, verbose=False):
    """What a student may see: never a hidden test's reason, traceback or output."""
    return feedback(results, show_hidden=False, verbose=verbose)


def totals(results):
    per = {}
    for r in results:
        got, most = per.get(r['assignment'], (0, 0))
        per[r['assignment']] = (got + r['points'], most + r['max_points'])
    return per


def report(results, stream):
    for r in results:
        stream.write('%-18s %-34s %5g/%-3g %-7s %s\n' % (
            r['assignment'], r['test'] + (' (hidden)' if r['hidden'] else ''), r['points'],
            r['max_points'], 'PASS' if r['status'] == 'passed' else 'FAIL', r['reason']))
        for key in ('traceback', 'output'):
            if r.get(key):
                stream.write('    | ' + r[key].rstrip().replace('\n', '\n    | ') + '\n')
    per = totals(results)
    for name, (got, most) in per.items():
        stream.write('%-18s total %g/%g\n' % (name, got, most))
    stream.write('TOTAL %g/%g\n' % (sum(g for g, _ in per.values()),
                                    sum(m for _, m in per.values())))


def write_text(path, text):
    """Write a report atomically, readable by others as the umask allows (a teacher's web
    server or a TA may need to read it)."""
    with atomic_path(path) as tmp:
        with open(tmp, 'w', newline='') as f:
            f.write(text)


def to_json(results, seconds):
    """seconds None: not told (a student's view of a run with hidden tests)."""
    per = totals(results)
    return json.dumps({'tests': results, 'assignments': {
        k: {'points': g, 'max_points': m} for k, (g, m) in per.items()},
        'total': sum(g for g, _ in per.values()), 'max_total': sum(m for _, m in per.values()),
        'seconds': None if seconds is None else round(seconds, 1)}, indent=1) + '\n'


def shown_seconds(shown_results, seconds):
    """The run's seconds as the results shown may tell them: none when a hidden test's time
    is hidden (the run's time adds it up)."""
    return None if any(r['seconds'] is None for r in shown_results) else seconds


def class_csv(rows, assignments):
    """rows: (student, results or None, seconds, note)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(['student'] + assignments + ['total', 'max_total', 'seconds', 'note'])
    for student, results, seconds, note in rows:
        per = totals(results or [])
        writer.writerow([shown.csv_cell(student)] + [
            '%g' % per.get(a, (0, 0))[0] for a in assignments] + [
            '%g' % sum(g for g, _ in per.values()), '%g' % sum(m for _, m in per.values()),
            '%.1f' % seconds, shown.csv_cell(note)])
    return out.getvalue()
