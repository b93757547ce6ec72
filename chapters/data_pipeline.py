# %% [markdown]
# # Loading and preprocessing data: tf.data's Data API and TFRecord, with gluon.data and RecordIO
#
# Follows the reading notes "Hands-on Machine Learning(3)" (《Hands-on Machine Learning》第二部分
# 阅读笔记(3), on the book's chapter "Loading and Preprocessing Data with TensorFlow"): the Data
# API, reading several files interleaved, and TFRecord.
#
# What it shows, in Gluon: a dataset from arrays, chained transforms, shuffling, batching and
# the choice for the last batch, reading several files interleaved, several worker processes
# and prefetching. Then the counterpart of TFRecord: an image folder packed into one MXNet
# RecordIO file (`mxnet.recordio`, what `im2rec` writes) and read back with
# `ImageRecordDataset`, and a measurement of images per second from the folder and from the
# record file with 0, 1 and 2 worker processes.
#
# Run it: `python -m chapters.data_pipeline [--quick] [--workers 0 1 2]`, or its notebook.
# `--quick` (400 generated pictures) took 12 s on 2 cores shared with other jobs (load 7-8,
# OMP_NUM_THREADS=1); an idle machine is faster.

# %%
import utils  # sets OMP_NUM_THREADS before MXNet loads

import csv
import os
import shutil
import time

import numpy as np
from mxnet import gluon, recordio
from mxnet.gluon.data.vision import transforms

from utils import opt
from utils.cli import process_count, readable_dir
from utils.data.datasets import IMAGE_SUFFIXES
from utils.errors import UserError
from utils.files import atomic_path
from utils.display.plotting import plt, save_figure

# %% [markdown]
# ## Settings

# %%
args = utils.settings(
    'data_pipeline', "Loading and preprocessing data: tf.data's Data API and TFRecord, with "
    'gluon.data and RecordIO',
    images=opt(None, 'an image folder (one sub-folder per class) to pack and measure; '
                     'default: generated scenes in OUT/images', metavar='DIR',
               type=readable_dir),
    num_images=opt(1000, 'generated images', quick=400),
    workers=opt([0, 1, 2], 'worker process counts to measure', nargs='+',
                type=process_count),
    repeats=opt(2, 'passes per measurement, the best one counts', quick=1),
    batch_size=opt(32, 'images per batch'),
    encoding=opt('raw', "what the record holds: the files' own bytes (raw, like im2rec "
                        "--pass-through), or the pictures re-encoded",
                 choices=['raw', '.png', '.jpg']))
run = utils.Run(args, 'data_pipeline')
utils.seed_everything(args.seed)
CLASSES = ('triangle', 'rectangle')


def show(batches):
    return ' '.join(str(b.asnumpy().astype(int).tolist()) for b in batches)


# %% [markdown]
# ## The Data API
# `tf.data.Dataset.from_tensor_slices(X)` is `gluon.data.SimpleDataset` / `ArrayDataset`:
# items are slices along the first axis. Batching belongs to the `DataLoader`, and what it
# does with a short last batch is `last_batch`: 'keep' (tf's default), 'discard'
# (`drop_remainder=True`) or 'rollover' (the leftover starts the next epoch).

# %%
def data_api_demo(seed):
    """The text's small examples; returns what they print, for the metrics."""
    out = {}
    X = np.arange(10)
    dataset = gluon.data.SimpleDataset(X)
    # dataset.repeat(3).batch(7): three copies in a row, batches of 7
    repeated = gluon.data.SimpleDataset(np.concatenate([X] * 3))
    out['repeat_batch'] = show(gluon.data.DataLoader(repeated, 7))
    print('repeat(3).batch(7):        ', out['repeat_batch'])
    # the same with three epochs of the DataLoader, for each choice of last batch
    for last_batch in ('keep', 'discard', 'rollover'):
        loader = gluon.data.DataLoader(dataset, 7, last_batch=last_batch)
        epochs = [show(loader) for _ in range(3)]
        out['last_batch_' + last_batch] = epochs
        print('3 epochs, last_batch=%-9s' % (last_batch + ':'), ' | '.join(epochs))
    # map: a lazy transform of every item; transform_first: of the first element of pairs
    doubled = dataset.transform(lambda x: x * 2)
    out['map'] = [int(x) for x in doubled]
    print('map(lambda x: x * 2):      ', out['map'])
    pairs = gluon.data.ArrayDataset(X, X % 2)
    scaled = pairs.transform_first(lambda x: x / 10.0)
    print('transform_first(x / 10):   ', [(float(x), int(y)) for x, y in scaled.take(3)])
    # filter and take
    out['filter_take'] = [int(x) for x in doubled.filter(lambda x: x < 10).take(3)]
    print('filter(x < 10).take(3):    ', out['filter_take'])
    # shuffle: DataLoader(shuffle=True) permutes the whole dataset each epoch (NumPy's
    # generator: seed it); tf's shuffle(buffer_size) only mixes within a buffer
    np.random.seed(seed)
    out['shuffle'] = show(gluon.data.DataLoader(repeated, 7, shuffle=True))
    print('shuffled, batches of 7:    ', out['shuffle'])
    return out


run.metrics['data_api'] = data_api_demo(args.seed)


# %% [markdown]
# ## Reading several files interleaved
# The text splits a data set into CSV files, lists them in a random order and reads
# `cycle_length` of them at a time, one line from each in turn (`interleave`). Gluon has no
# interleave transform: `interleave` below is a plain generator, and the lines become a
# dataset that is parsed (`transform`), shuffled and batched by the DataLoader, its workers
# parsing in parallel (`num_parallel_calls`) and prefetching batches (`prefetch`).

# %%
N_INPUTS = 8


def write_csv_files(folder, n_files=10, rows=200, seed=0):
    """A housing-like regression set (8 features, 1 target) split into CSV files."""
    rng = np.random.RandomState(seed)
    x = rng.normal(size=(n_files * rows, N_INPUTS)) * np.arange(1, N_INPUTS + 1)
    y = x @ rng.normal(size=N_INPUTS) / 10 + rng.normal(scale=0.1, size=len(x))
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(n_files):
        path = os.path.join(folder, 'my_train_%02d.csv' % i)
        with atomic_path(path) as tmp, open(tmp, 'w', newline='') as f:
            writer = csv.writer(f)
            writer.writerow(['x%d' % k for k in range(N_INPUTS)] + ['target'])
            writer.writerows(np.hstack([x, y[:, None]])[i * rows:(i + 1) * rows].round(5))
        paths.append(path)
    return paths, x.mean(axis=0), x.std(axis=0)


def list_files(paths, seed):
    """tf.data.Dataset.list_files: the paths in a random (seeded) order."""
    return [paths[i] for i in np.random.RandomState(seed).permutation(len(paths))]


def interleave(paths, cycle_length=5, skip=1):
    """Lines of `cycle_length` files at a time, one from each in turn, as tf's interleave
    reads them: when a file ends, its slot opens the next file on its next turn. The first
    `skip` lines of every file (the header) are left out."""
    pending = list(paths)
    slots = [None] * cycle_length
    i = 0
    try:
        while pending or any(slots):
            f = slots[i]
            if f is None:
                if pending:
                    slots[i] = f = open(pending.pop(0))
                    for _ in range(skip):
                        f.readline()
                    continue
            else:
                line = f.readline()
                if line:
                    yield line
                else:
                    f.close()
                    slots[i] = None
            i = (i + 1) % cycle_length
    finally:
        for f in slots:
            if f is not None:
                f.close()


def make_preprocess(x_mean, x_std):
    """The text's preprocess(line): parse a CSV line, scale the features."""
    def preprocess(line):
        fields = np.array(line.split(','), dtype=np.float32)
        return ((fields[:N_INPUTS] - x_mean) / x_std).astype(np.float32), fields[N_INPUTS:]
    return preprocess


def csv_reader_dataset(filepaths, x_mean, x_std, n_readers=5, batch_size=32, num_workers=0,
                       seed=0):
    """The text's csv_reader_dataset: interleaved files, parsed, shuffled, batched,
    prefetched."""
    lines = gluon.data.SimpleDataset(list(interleave(list_files(filepaths, seed), n_readers)))
    dataset = lines.transform(make_preprocess(x_mean, x_std), lazy=True)
    # Worker threads, like tf.data's num_parallel_calls: a worker process forked from a process
    # whose MXNet and OpenMP threads are running can deadlock, and the loader lives on here.
    return gluon.data.DataLoader(dataset, batch_size, shuffle=True, num_workers=num_workers,
                                 prefetch=2 * max(1, num_workers) if num_workers else None,
                                 thread_pool=True)


paths, x_mean, x_std = write_csv_files(os.path.join(args.out, 'csv'), seed=args.seed)
order = list_files(paths, args.seed)
print('list_files: %s ...; interleave(cycle_length=5), first lines:'
      % ', '.join(os.path.basename(p) for p in order[:5]))
for line in list(interleave(order, cycle_length=5))[:5]:
    print('  ' + line.strip())
train_set = csv_reader_dataset(paths, x_mean, x_std, num_workers=min(args.workers[-1], 2),
                               seed=args.seed)
X, y = next(iter(train_set))
print('a batch from %d files: X %s, y %s, X mean %.3f, std %.3f'
      % (len(paths), X.shape, y.shape, X.mean().asscalar(), float(np.std(X.asnumpy()))))


# %% [markdown]
# ## RecordIO, MXNet's TFRecord
# A record file is a sequence of binary records; `MXIndexedRecordIO` adds an index file
# (`.idx`, record number -> byte offset) so a shuffled DataLoader can read any record. Each
# image record is a header (label, id) and the encoded picture (`recordio.pack_img`, or the
# file's own bytes as `im2rec --pass-through` does). RecordIO has no compression option:
# JPEG or PNG already compress the pixels.

# %%
def make_image_folder(root, n, seed=0):
    """n generated scenes as JPEG files (quality 95, like most photo data sets), half
    triangles and half rectangles."""
    import cv2
    if os.path.isdir(root) and sum(len(files) for _, _, files in os.walk(root)) == n:
        return root
    shutil.rmtree(root, ignore_errors=True)
    for i, name in enumerate(CLASSES):
        count = n // 2 + (n % 2 if i == 0 else 0)
        images, _ = utils.make_scenes(count, seed=seed * 10 + i, kinds=(name,))
        os.makedirs(os.path.join(root, name))
        for j, img in enumerate(images):
            cv2.imwrite(os.path.join(root, name, '%04d.jpg' % j), img[:, :, ::-1],
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
    return root


def pack_folder(root, prefix, encoding='raw'):
    """Pack an image folder into prefix.rec + prefix.idx; returns (rec path, count, synsets).

    encoding 'raw': each file's bytes as they are; '.png' (lossless) or '.jpg' (quality 95):
    decoded and re-encoded by `recordio.pack_img`. Labels are the class folders' indices.
    """
    import cv2
    folder = utils.image_folder(root)  # checked: classes, pictures, one-line errors
    rec_path, idx_path = prefix + '.rec', prefix + '.idx'
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    with atomic_path(rec_path) as rec_tmp, atomic_path(idx_path) as idx_tmp:
        record = recordio.MXIndexedRecordIO(idx_tmp, rec_tmp, 'w')
        for i, (path, label) in enumerate(folder.items):
            header = recordio.IRHeader(0, float(label), i, 0)
            if encoding == 'raw':
                with open(path, 'rb') as f:
                    packed = recordio.pack(header, f.read())
            else:
                img = cv2.imread(path, cv2.IMREAD_COLOR)
                if img is None:
                    raise UserError('%s cannot be decoded as an image: replace or delete it'
                                    % path)
                packed = recordio.pack_img(header, img, quality=95, img_fmt=encoding)
            record.write_idx(i, packed)
        record.close()
    return rec_path, len(folder.items), folder.synsets


def folder_bytes(root):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(root)
               for f in names if f.lower().endswith(IMAGE_SUFFIXES))


root = args.images or make_image_folder(os.path.join(args.out, 'images'), args.num_images,
                                        args.seed)
start = time.time()
rec_path, count, synsets = pack_folder(
    root, os.path.join(args.out, 'images_%s' % args.encoding.strip('.')), args.encoding)
pack_seconds = time.time() - start
folder_ds = utils.image_folder(root)
record_ds = gluon.data.vision.ImageRecordDataset(rec_path)
img, label = record_ds[0]
print('packed %d pictures of %s (%s) into %s in %.1f sec: %.1f MB in %d files -> %.1f MB '
      'in one file; record 0: %s, label %s' % (
          count, root, ', '.join(synsets), rec_path, pack_seconds, folder_bytes(root) / 1e6,
          count, os.path.getsize(rec_path) / 1e6, img.shape, label))


# %% [markdown]
# ## Images per second: the folder against the record file, 0, 1 and 2 workers
# Both datasets decode the picture and apply the same transform (flip, to tensor,
# normalise); the DataLoader shuffles and batches. Worker processes are started when the
# DataLoader is built, and that is included in the time.

# %%
def train_transform():
    return transforms.Compose([transforms.RandomFlipLeftRight(), transforms.ToTensor(),
                               transforms.Normalize(utils.IMAGENET_MEAN, utils.IMAGENET_STD)])


def images_per_sec(dataset, batch_size, num_workers, repeats=1):
    """Best of `repeats` full passes: images per second (and the seconds of that pass)."""
    best = None
    for _ in range(repeats):
        start = time.time()
        loader = gluon.data.DataLoader(dataset.transform_first(train_transform()), batch_size,
                                       shuffle=True, num_workers=num_workers)
        count = 0
        for X, _ in loader:
            X.wait_to_read()
            count += X.shape[0]
        seconds = time.time() - start
        del loader
        best = seconds if best is None else min(best, seconds)
    return count / best, best


def plot_throughput(rows, path):
    fig, ax = plt.subplots(figsize=(6, 3.5))
    sources = sorted({r['source'] for r in rows}, key=[r['source'] for r in rows].index)
    workers = sorted({r['workers'] for r in rows})
    width = 0.8 / len(sources)
    for k, source in enumerate(sources):
        values = [next(r['images_per_sec'] for r in rows
                       if r['source'] == source and r['workers'] == w) for w in workers]
        ax.bar(np.arange(len(workers)) + k * width, values, width, label=source)
    ax.set_xticks(np.arange(len(workers)) + width * (len(sources) - 1) / 2)
    ax.set_xticklabels([str(w) for w in workers])
    ax.set(xlabel='worker processes', ylabel='images / sec')
    ax.legend()
    save_figure(fig, path)


rows = []
for name, dataset in (('image folder', folder_ds), ('record file', record_ds)):
    for workers in args.workers:
        ips, seconds = images_per_sec(dataset, args.batch_size, workers, args.repeats)
        rows.append({'source': name, 'workers': workers, 'images_per_sec': ips,
                     'seconds': seconds})
utils.print_table(['source', 'workers', 'images/sec', 'seconds'],
                  [[r['source'], r['workers'], r['images_per_sec'], r['seconds']] for r in rows],
                  [None, '%d', '%.1f', '%.2f'])
print('(%d images, batch %d, OMP_NUM_THREADS=%s, %d cores; files in the page cache)'
      % (count, args.batch_size, os.environ.get('OMP_NUM_THREADS'), os.cpu_count() or 1))
plot_throughput(rows, run.figure('throughput.png'))

# %% [markdown]
# ## When each wins
#
# - Decoding and augmenting cost the same from either source: on a machine where the files
#   are already in memory (as here) the two read at about the same rate, and the record file
#   only saves opening one file per picture.
# - The record file wins when opening many small files is what is slow: network file
#   systems, spinning disks, cloud buckets, or a data set larger than memory (one sequential
#   read, one file to copy to a GPU machine).
# - Worker processes win when decoding and augmentation keep one core busy while others are
#   free: with 2 cores that the training itself needs, workers only take cores away from it,
#   and starting them costs a fraction of a second per epoch.

# %%
run.metrics.update(images=count, encoding=args.encoding, record_file=rec_path,
                   pack_seconds=pack_seconds, folder_mb=folder_bytes(root) / 1e6,
                   record_mb=os.path.getsize(rec_path) / 1e6, throughput=rows)
run.finish()
