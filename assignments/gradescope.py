"""The grader's results in Gradescope's results.json format.

Gradescope's autograder runs a teacher's `run_autograder` script for each submission and reads
/autograder/results/results.json: a top-level `score` and a list of `tests`, each with `name`,
`score`, `max_score`, `output` and `visibility` (the format: "Autograder Specifications",
gradescope-autograders.readthedocs.io/en/latest/specs/). Public tests are `visible`; hidden
tests are `after_published`: students see them once the teacher publishes the grades.

    python -m assignments.grade SUBMISSION --gradescope /autograder/results/results.json
"""
import json

from assignments.reports import write_text

PUBLIC, HIDDEN = 'visible', 'after_published'


def _output(record):
    """The test's reason, then its traceback and printed output when the record keeps them."""
    parts = [record.get('reason') or ('passed' if record['points'] == record['max_points']
                                      else 'failed')]
    parts += [record[key].rstrip() for key in ('traceback', 'output') if record.get(key)]
    return '\n'.join(parts).replace('\r\n', '\n').replace('\r', '\n')


def results(records, seconds=None):
    """results.json as a dict, from the grader's per-test records (dicts with `assignment`,
    `test`, `hidden`, `points`, `max_points`, `reason`, and optional `traceback`, `output`:
    give them as they may be shown, e.g. through reports.feedback)."""
    tests, per = [], {}
    for r in records:
        tests.append({'name': '%s: %s' % (r['assignment'], r['test']),
                      'score': float(r['points']), 'max_score': float(r['max_points']),
                      'output': _output(r), 'visibility': HIDDEN if r['hidden'] else PUBLIC})
        got, most = per.get(r['assignment'], (0.0, 0.0))
        per[r['assignment']] = (got + r['points'], most + r['max_points'])
    summary = ['%s: %g/%g' % (name, got, most) for name, (got, most) in per.items()]
    document = {'score': float(sum(t['score'] for t in tests)), 'output': '\n'.join(summary),
                'tests': tests}
    if seconds is not None:
        document['execution_time'] = int(round(seconds))
    return document


def write_results(path, records, seconds=None):
    """Write results.json at `path` (to a temporary file in its folder, then renamed)."""
    write_text(path, json.dumps(results(records, seconds), indent=1, allow_nan=False) + '\n')
