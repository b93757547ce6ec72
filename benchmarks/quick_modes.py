"""Every chapter's --quick, each in its own process: wall seconds, peak RSS, headline metric.

    python -m benchmarks.quick_modes [--chapters fine_tuning,train_basics] [--skip ...]
        [--json PATH] [--timeout 1800] [-- extra chapter arguments]

Runs `python -m chapters.<name> --quick --no-progress --out DIR --metrics-json FILE` for each
chapter (all of chapters/ by default, in alphabetical order), one after another, and prints
a table. Wall seconds are measured here, around the whole process (start-up and imports
included). Peak RSS is the chapter process's largest resident set (VmHWM, read while it
runs; processes it starts itself are not counted). The headline metric is read
from the chapter's --metrics-json. Run it on a quiet machine: the load average is printed
before and after, because a busy 2-core machine makes every number several times worse.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from utils.files import atomic_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def all_chapters(root=ROOT):
    folder = os.path.join(root, 'chapters')
    return sorted(f[:-3] for f in os.listdir(folder)
                  if f.endswith('.py') and not f.startswith('_'))


def _last(history, key):
    values = (history or {}).get(key) or []
    return values[-1] if values else None


def _fmt(value, spec='%.3f'):
    return 'n/a' if value is None else spec % value


# What each chapter's run shows, read from its metrics. A chapter not named here gets its
# wall time only.
def _fine_tuning(m):
    hs = m.get('histories', {})
    return 'test acc finetune %s, scratch %s (%s)' % (
        _fmt(_last(hs.get('finetune_net'), 'test_acc')),
        _fmt(_last(hs.get('scratch_net'), 'test_acc')), m.get('dataset', '?'))


def _exercises(m):
    ex = m.get('exercises', {})
    return '%d exercise(s) run: %s (%s)' % (len(ex), ', '.join(sorted(ex)), m.get('dataset', '?'))


def _feature_extraction(m):
    accuracy = _fmt(m.get('test_accuracy'))
    return 'test acc %s after fine-tuning (%s)' % (accuracy, m.get('dataset', '?'))


def _detection(m):
    return 'shape acc %s, mean IoU %s' % (_fmt(m.get('shape_acc')), _fmt(m.get('mean_iou')))


def _custom_classes(m):
    per_class = m.get('held_out_accuracy_per_class') or {}
    values = list(per_class.values()) if isinstance(per_class, dict) else list(per_class)
    mean = sum(values) / len(values) if values else None
    return 'held-out acc %s (mean over %d classes)' % (_fmt(mean), len(values))


def _train_basics(m):
    return 'test acc %s' % _fmt(_last(m.get('history'), 'test_acc'))


def _pretrained_predict(m):
    preds = m.get('predictions') or {}
    return ', '.join('%s: %s' % (name, top[0][0]) for name, top in sorted(preds.items())
                     if top) or 'n/a'


def _data_pipeline(m):
    rows = m.get('throughput') or []
    best = max(rows, key=lambda r: r.get('images_per_sec', 0)) if rows else {}
    return '%s images; best %s img/s (%s, %s workers)' % (
        m.get('images', '?'), _fmt(best.get('images_per_sec'), '%.0f'), best.get('source', '?'),
        best.get('workers', '?'))


def _how_much_data(m):
    """Mean test accuracy of each method at the fewest photos per class."""
    fewest = min((n for n in m['per_class'] if str(n).isdigit()), key=int)
    return '%s per class: %s (mean of %d seeds)' % (
        fewest, ', '.join('%s %s' % (method, _fmt(by_size[str(fewest)]['mean']))
                          for method, by_size in m['accuracy'].items()), len(m['seeds']))


HEADLINES = {'fine_tuning': _fine_tuning, 'fine_tuning_exercises': _exercises,
             'how_much_data': _how_much_data, 'feature_extraction': _feature_extraction,
             'simple_object_detection': _detection, 'custom_classes': _custom_classes,
             'train_basics': _train_basics, 'pretrained_predict': _pretrained_predict,
             'data_pipeline': _data_pipeline}


def headline(chapter, metrics):
    fn = HEADLINES.get(chapter)
    if fn is None:
        return ''
    try:
        return fn(metrics)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as err:
        return 'metrics not understood (%s)' % type(err).__name__


def run_chapter(chapter, work_dir, timeout, extra=(), root=ROOT):
    """Run one chapter's --quick in a child process; return its row (a dict)."""
    out = os.path.join(work_dir, chapter)
    metrics_path = os.path.join(work_dir, chapter + '.json')
    log_path = os.path.join(work_dir, chapter + '.log')
    cmd = [sys.executable, '-m', 'chapters.' + chapter, '--quick', '--no-progress', '--out', out,
           '--metrics-json', metrics_path] + list(extra)
    start = time.time()
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT)
        try:
            status, peak = _wait(proc, timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            status, peak = None, None
    wall = time.time() - start
    row = {'chapter': chapter, 'wall_seconds': round(wall, 1), 'status': status,
           'peak_rss_mib': round(peak / 2.0 ** 20) if peak else None,
           'log': log_path, 'metrics': None, 'headline': ''}
    if status == 0 and os.path.exists(metrics_path):
        with open(metrics_path) as f:
            row['metrics'] = json.load(f)
        row['headline'] = headline(chapter, row['metrics'])
    elif status is None:
        row['headline'] = 'timed out after %.0f s' % timeout
    else:
        with open(log_path) as f:
            lines = f.read().strip().splitlines() or ['no output']
        row['headline'] = 'failed (status %s): %s' % (status, lines[-1][:80])
    return row


def _wait(proc, timeout):
    """(exit status, peak RSS in bytes) of the child.

    The peak is the largest VmHWM read from /proc/<pid>/status while it runs (every 0.2 s).
    The rusage of the reaped child (os.wait4) is not enough: Linux carries the RSS high-water
    mark across exec, so a child forked from a big parent reports at least the parent's size.
    Without /proc, that rusage is what is left.
    """
    deadline = time.time() + timeout
    peak = 0
    while True:
        peak = max(peak, _vm_hwm(proc.pid))
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = (os.WEXITSTATUS(status) if os.WIFEXITED(status)
                               else -os.WTERMSIG(status))
            return proc.returncode, peak or usage.ru_maxrss * 1024
        if time.time() > deadline:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        time.sleep(0.2)


def _vm_hwm(pid):
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def format_table(rows):
    lines = ['%-24s %8s %9s  %s' % ('chapter', 'wall s', 'peak MiB', 'headline')]
    for r in rows:
        lines.append('%-24s %8.1f %9s  %s' % (r['chapter'], r['wall_seconds'],
                                              _fmt(r['peak_rss_mib'], '%.0f'), r['headline']))
    return '\n'.join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--chapters', default=None,
                   help='comma-separated chapter names (default: every chapter)')
    p.add_argument('--skip', default='', help='comma-separated chapters to leave out')
    p.add_argument('--timeout', type=float, default=1800, help='seconds per chapter')
    p.add_argument('--work-dir', default=None,
                   help='where figures, logs and metrics go (default: a temporary folder)')
    p.add_argument('--json', default=None, metavar='PATH', help='write the table as JSON')
    p.add_argument('extra', nargs='*',
                   help='arguments passed to every chapter (after --, e.g. -- --devices cpu)')
    args = p.parse_args(argv)
    known = all_chapters()
    chosen = [c.strip() for c in (args.chapters or ','.join(known)).split(',') if c.strip()]
    skip = {c.strip() for c in args.skip.split(',') if c.strip()}
    bad = sorted((set(chosen) | skip) - set(known))
    if bad:
        p.error('unknown chapter %s: choose from %s' % (', '.join(bad), ', '.join(known)))
    args.chapters = [c for c in chosen if c not in skip]
    if not args.chapters:
        p.error('no chapter left to run')
    if args.timeout <= 0:
        p.error('--timeout must be positive')
    return args


def main(argv=None):
    args = parse_args(argv)
    load_before = os.getloadavg()
    print('%d chapter(s), --quick each in its own process; %s, %d cores, load %.2f %.2f %.2f '
          'before' % ((len(args.chapters), platform.platform(), os.cpu_count() or 1)
                      + load_before))
    sys.stdout.flush()
    rows = []
    with tempfile.TemporaryDirectory(prefix='quick-modes-') as tmp:
        work_dir = args.work_dir or tmp
        os.makedirs(work_dir, exist_ok=True)
        for chapter in args.chapters:
            row = run_chapter(chapter, work_dir, args.timeout, args.extra)
            print('  %-24s %7.1f s  %s' % (chapter, row['wall_seconds'], row['headline']))
            sys.stdout.flush()
            rows.append(row)
    load_after = os.getloadavg()
    print(format_table(rows))
    print('load %.2f %.2f %.2f after' % load_after)
    if args.json:
        report = {'machine': platform.platform(), 'cores': os.cpu_count(),
                  'python': platform.python_version(),
                  'omp_num_threads': os.environ.get('OMP_NUM_THREADS'),
                  'load_before': load_before, 'load_after': load_after,
                  'rows': [{k: v for k, v in r.items() if k != 'log'} for r in rows]}
        with atomic_path(args.json) as tmp_path:
            with open(tmp_path, 'w') as f:
                json.dump(report, f, indent=2)
        print('Results written to %s' % args.json)
    return rows


if __name__ == '__main__':
    sys.path.insert(0, ROOT)
    main()
