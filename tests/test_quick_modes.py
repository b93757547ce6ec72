"""benchmarks/quick_modes.py: each chapter in its own process, its wall time, peak RSS and
headline metric, on a fake chapter tree and on the smallest real chapter."""
import json
import os
import textwrap

import pytest

from benchmarks import quick_modes as qm

FAKE = '''
import argparse, json, time
p = argparse.ArgumentParser()
p.add_argument('--quick', action='store_true')
p.add_argument('--no-progress', action='store_true')
p.add_argument('--out')
p.add_argument('--metrics-json')
args = p.parse_args()
block = bytearray({mib} << 20)  # touched: resident
for i in range(0, len(block), 4096):
    block[i] = 1
time.sleep(1)  # the peak is sampled every 0.2 s
if {fail}:
    raise SystemExit('error: {name} refuses to run')
with open(args.metrics_json, 'w') as f:
    json.dump({{'chapter': '{name}', 'quick': args.quick,
               'history': {{'test_acc': [0.5, 0.875]}}}}, f)
'''


@pytest.fixture
def fake_root(tmp_path):
    (tmp_path / 'chapters').mkdir()
    (tmp_path / 'chapters' / '__init__.py').write_text('')
    for name, mib, fail in (('train_basics', 200, False), ('other', 20, False),
                            ('broken', 20, True)):
        (tmp_path / 'chapters' / (name + '.py')).write_text(
            textwrap.dedent(FAKE.format(mib=mib, fail=fail, name=name)))
    return str(tmp_path)


def test_rows_of_fake_chapters(fake_root, tmp_path):
    assert qm.all_chapters(fake_root) == ['broken', 'other', 'train_basics']
    work = str(tmp_path / 'work')
    os.makedirs(work)
    big = qm.run_chapter('train_basics', work, 60, root=fake_root)
    small = qm.run_chapter('other', work, 60, root=fake_root)
    broken = qm.run_chapter('broken', work, 60, root=fake_root)
    assert big['status'] == 0 and big['metrics']['quick'] is True
    assert big['headline'] == 'test acc 0.875'  # read from its --metrics-json
    assert small['headline'] == ''  # a chapter without a headline reader: wall time only
    # each child's own peak: the 200 MiB chapter, not the largest child so far
    assert big['peak_rss_mib'] >= 200 and small['peak_rss_mib'] < 150
    assert broken['status'] == 1 and broken['metrics'] is None
    assert broken['headline'] == 'failed (status 1): error: broken refuses to run'
    table = qm.format_table([big, small, broken])
    assert table.splitlines()[1].split()[:2] == ['train_basics', '%.1f' % big['wall_seconds']]


def test_timeout_is_a_row_not_a_hang(fake_root, tmp_path):
    (tmp_path / 'chapters' / 'slow.py').write_text('import time\ntime.sleep(30)\n')
    row = qm.run_chapter('slow', str(tmp_path), 1, root=fake_root)
    assert row['status'] is None and row['headline'] == 'timed out after 1 s'
    assert row['wall_seconds'] < 20


def test_headlines_from_metrics():
    hist = lambda acc: {'test_acc': [0.1, acc]}  # noqa: E731
    assert qm.headline('fine_tuning', {'dataset': 'faces', 'histories': {
        'finetune_net': hist(1.0), 'scratch_net': hist(0.7)}}) == (
            'test acc finetune 1.000, scratch 0.700 (faces)')
    assert qm.headline('simple_object_detection', {'shape_acc': 0.99, 'mean_iou': 0.6}) == (
        'shape acc 0.990, mean IoU 0.600')
    assert qm.headline('simple_object_detection', {}) == 'shape acc n/a, mean IoU n/a'
    assert qm.headline('fine_tuning', {'histories': []}).startswith('metrics not understood')
    accuracy = {'fine-tune': {'2': {'mean': 0.97}, 'all': {'mean': 1.0}},
                'scratch': {'2': {'mean': 0.6}, 'all': {'mean': 0.9}}}
    assert qm.headline('how_much_data', {'per_class': ['2', 'all'], 'seeds': [0, 1, 2],
                                         'accuracy': accuracy}) == (
        '2 per class: fine-tune 0.970, scratch 0.600 (mean of 3 seeds)')


def test_options_name_unknown_chapters(capsys):
    with pytest.raises(SystemExit):
        qm.parse_args(['--chapters', 'train_basics,nope'])
    assert 'unknown chapter nope' in capsys.readouterr().err
    args = qm.parse_args(['--chapters', 'train_basics,fine_tuning', '--skip', 'fine_tuning'])
    assert args.chapters == ['train_basics']


def test_real_chapter_end_to_end(tmp_path, capsys):
    out = str(tmp_path / 'table.json')
    rows = qm.main(['--chapters', 'train_basics', '--work-dir', str(tmp_path / 'w'),
                    '--json', out, '--', '--epochs', '1'])
    assert rows[0]['status'] == 0 and rows[0]['headline'].startswith('test acc 0.')
    with open(out) as f:
        report = json.load(f)
    assert report['rows'][0]['chapter'] == 'train_basics' and report['cores'] >= 1
    assert 'train_basics' in capsys.readouterr().out
