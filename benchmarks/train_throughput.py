"""Training throughput: utils.train against the compute-bound limit and against d2l.train_ch13.

    python -m benchmarks.train_throughput [--model resnet18_v2] [--image-size 224]
        [--batch-size 32] [--devices cpu] [--repeat 3] [--json PATH]

One run, one machine, one model, one image folder (generated: JPEG images in two classes),
the same batch size, augmentation and hybridization (static_alloc, static_shape) for every
variant:

  limit        batches decoded and augmented once, already on the device; forward, backward and
               SGD step only: no data loading, no metrics, no per-batch wait.
  utils.train  ImageFolderDataset + DataLoader + utils.train, as the chapters use them: the
               pictures decoded once into memory (utils.data.decoded; --decode every-epoch: not),
               gluon's transforms on every picture (--augment numpy: cropped in numpy and
               normalised per batch as the DataLoader makes it,
               utils.data.transforms.CroppedBatches).
  d2l          d2l.train_ch13 (d2l 1.0.3, mxnet.np interface, npx.set_np()) on the same folder.

Each variant runs in its own process (d2l needs npx.set_np(); peak RSS is per variant). Weights
are randomly initialised: throughput does not depend on their values. Images per second count
training batches only (data loading included for utils.train and d2l, evaluation excluded),
after warm-up batches that build the cached graphs. Run it on a quiet machine: another busy
process on a 2-core machine slows OpenMP several-fold and makes the ratios meaningless.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ('limit', 'utils.train', 'd2l')
MODELS = ('resnet18_v2', 'mobilenet0.25')
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------------------
# The image folder

def make_image_folder(root, count, seed=0):
    """`count` JPEG images, half per class, 256 to 384 pixels a side, in root/{circles,stripes}.

    Class 0 draws a bright disc, class 1 stripes, both over smooth random colour and noise:
    real JPEG decoding work, not a benchmark of blank pictures.
    """
    import numpy as np
    from PIL import Image
    rng = np.random.RandomState(seed)
    for cls in ('circles', 'stripes'):
        os.makedirs(os.path.join(root, cls), exist_ok=True)
    for i in range(count):
        cls = i % 2
        h, w = rng.randint(256, 385, size=2)
        yy, xx = np.mgrid[0:h, 0:w].astype('float32')
        base = rng.uniform(0, 255, size=3)
        slope = rng.uniform(-0.3, 0.3, size=(2, 3))
        img = base + yy[..., None] * slope[0] + xx[..., None] * slope[1]
        img += rng.normal(scale=12, size=(h, w, 3))
        if cls == 0:
            cy, cx, r = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w, rng.uniform(40, 100)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(150, 255, size=3)
        else:
            period = rng.randint(12, 40)
            img[(xx.astype(int) // period) % 2 == 0] *= 0.4
        name = os.path.join(root, ('circles', 'stripes')[cls], '%04d.jpg' % i)
        Image.fromarray(np.clip(img, 0, 255).astype('uint8')).save(name, quality=90)
    return root


# ---------------------------------------------------------------------------------------------
# The variants, each run in a child process

def _augmentation(size):
    """d2l's fine-tuning augmentation; gluon transforms run unchanged in nd and np mode."""
    from mxnet.gluon.data.vision import transforms
    return transforms.Compose([transforms.RandomResizedCrop(size),
                               transforms.RandomFlipLeftRight(),
                               transforms.ToTensor(),
                               transforms.Normalize(MEAN, STD)])


def _net(model, ctx, hybridize=True):
    from mxnet import init
    from mxnet.gluon.model_zoo import vision
    net = vision.get_model(model, classes=2)
    net.initialize(init.Xavier(), ctx=ctx)
    if hybridize:
        net.hybridize(static_alloc=True, static_shape=True)
    return net


def _loader_kwargs(cfg):
    """DataLoader workers: 0 decodes on the training thread, as the chapters do; N > 0 uses N
    threads (thread_pool=True: no copies between processes, and RSS stays in one process)."""
    return {'num_workers': cfg['num_workers'], 'thread_pool': True} if cfg['num_workers'] else {}


def _rss_mib():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def run_limit(cfg):
    import utils
    from mxnet import autograd, gluon, nd
    ctx = utils.parse_devices(cfg['devices'])
    utils.training.loop.seed_everything(cfg['seed'])
    dataset = gluon.data.vision.ImageFolderDataset(cfg['folder'])
    dataset = dataset.transform_first(_augmentation(cfg['image_size']))
    loader = gluon.data.DataLoader(dataset, cfg['batch_size'], shuffle=True, last_batch='discard')
    # Every batch decoded once and split over the devices before the clock starts.
    batches = [utils.training.loop.split_batch(x, y, ctx) for x, y in loader]
    nd.waitall()
    net = _net(cfg['model'], ctx)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.01, 'wd': 0.001})

    def step(xs, ys):
        with autograd.record():
            losses = [loss(net(x), y) for x, y in zip(xs, ys)]
        for lo in losses:
            lo.backward()
        trainer.step(cfg['batch_size'])

    for i in range(cfg['warmup']):
        step(*batches[i % len(batches)])
    nd.waitall()
    start = time.time()
    for _ in range(cfg['epochs']):
        for xs, ys in batches:
            step(xs, ys)
    nd.waitall()
    seconds = time.time() - start
    return {'images': cfg['epochs'] * len(batches) * cfg['batch_size'], 'seconds': seconds}


def _training_setup(cfg, decode_once=False, numpy_augment=False):
    """What utils.train and d2l share: devices, the augmented folder, net, loss, SGD.

    Called after npx.set_np() in the d2l process, so its arrays are mxnet.np arrays there.
    decode_once: the pictures decoded once into memory when they fit (utils.data.decoded, as the
    chapters load them); RandomResizedCrop needs the whole picture, so none is resized.
    numpy_augment: the dataset keeps the numpy pictures as they are; the DataLoader's
    batchify_fn (utils.data.transforms.CroppedBatches) crops them into each batch.
    """
    import utils
    from mxnet import gluon
    from utils.data.decoded import decode_once as decoded
    ctx = utils.parse_devices(cfg['devices'])
    utils.training.loop.seed_everything(cfg['seed'])
    dataset = gluon.data.vision.ImageFolderDataset(cfg['folder'])
    if decode_once:
        dataset = decoded(dataset, name='image folder', print_fn=lambda *a: None,
                          as_numpy=numpy_augment)
    if not numpy_augment:
        dataset = dataset.transform_first(_augmentation(cfg['image_size']))
    net = _net(cfg['model'], ctx)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.01, 'wd': 0.001})
    return ctx, dataset, net, loss, trainer


def run_utils_train(cfg):
    import utils
    from mxnet import gluon
    from utils.data.transforms import CroppedBatches, RandomResizedCropFlip
    numpy_augment = cfg['augment'] == 'numpy'
    ctx, dataset, net, loss, trainer = _training_setup(cfg, cfg['decode'] == 'once',
                                                       numpy_augment)
    batchify = (dict(batchify_fn=CroppedBatches(RandomResizedCropFlip(cfg['image_size'])))
                if numpy_augment else {})
    quiet = dict(progress=False, print_fn=lambda *a: None)
    warm = gluon.data.DataLoader(dataset.take(cfg['warmup'] * cfg['batch_size']),
                                 cfg['batch_size'], shuffle=True, **batchify)
    utils.train(warm, None, net, loss, trainer, ctx, 1, **quiet)
    train_data = gluon.data.DataLoader(dataset, cfg['batch_size'], shuffle=True,
                                       **batchify, **_loader_kwargs(cfg))
    history = utils.train(train_data, None, net, loss, trainer, ctx, cfg['epochs'], **quiet)
    images = cfg['epochs'] * len(dataset)
    seconds = sum(len(dataset) / ips for ips in history['images_per_sec'])
    return {'images': images, 'seconds': seconds}


class _TimedLoader:
    """Wraps a DataLoader; adds up the time from each epoch's first request to its end.

    train_ch13 reads every batch's loss back (float(...)), so when the loader is exhausted
    every batch has been computed.
    """

    def __init__(self, loader):
        self.loader, self.seconds, self.images = loader, 0.0, 0

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        start = time.time()
        for features, labels in self.loader:
            self.images += labels.shape[0]
            yield features, labels
        self.seconds += time.time() - start


def run_d2l(cfg):
    import contextlib
    import io

    import utils  # noqa: F401  (OMP_NUM_THREADS, as in the other variants)
    import matplotlib
    matplotlib.use('Agg')
    # Resolve pyplot's backend before d2l imports IPython: with IPython >= 9, matplotlib 3.7.2
    # would otherwise try to install IPython's display hook and fail (backend2gui is gone).
    import matplotlib.pyplot as plt
    plt.switch_backend('Agg')
    from mxnet import gluon, npx
    npx.set_np()
    from d2l import mxnet as d2l
    ctx, dataset, net, loss, trainer = _training_setup(cfg)
    warm = gluon.data.DataLoader(dataset.take(cfg['warmup'] * cfg['batch_size']),
                                 cfg['batch_size'], shuffle=True)
    for features, labels in warm:
        d2l.train_batch_ch13(net, features, labels, loss, trainer, ctx)
    train_iter = _TimedLoader(gluon.data.DataLoader(dataset, cfg['batch_size'], shuffle=True,
                                                    **_loader_kwargs(cfg)))
    test_iter = gluon.data.DataLoader(dataset.take(cfg['batch_size']), cfg['batch_size'])
    # train_ch13 draws an Animator (display() prints a figure repr outside a notebook): kept,
    # it is part of d2l's loop; its output is swallowed.
    with contextlib.redirect_stdout(io.StringIO()):
        d2l.train_ch13(net, train_iter, test_iter, loss, trainer, cfg['epochs'], devices=ctx)
    return {'images': train_iter.images, 'seconds': train_iter.seconds}


RUNNERS = {'limit': run_limit, 'utils.train': run_utils_train, 'd2l': run_d2l}


def child_main(variant, cfg_json):
    cfg = json.loads(cfg_json)
    result = RUNNERS[variant](cfg)
    result.update(variant=variant, images_per_sec=result['images'] / result['seconds'],
                  peak_rss_mib=_rss_mib())
    print('RESULT ' + json.dumps(result))


# ---------------------------------------------------------------------------------------------
# The parent: generate the folder, run every variant in its own process, print the table

def run_variant(variant, cfg, timeout):
    cmd = [sys.executable, '-m', 'benchmarks.train_throughput', '--child', variant,
           json.dumps(cfg)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ['no output'])[-1]
        raise SystemExit('error: variant %s failed (status %d): %s'
                         % (variant, proc.returncode, tail))
    return json.loads(lines[-1][len('RESULT '):])


def summarize(runs):
    """Median images/sec and largest peak RSS per variant, and the two ratios."""
    table = {}
    for variant in VARIANTS:
        mine = [r for r in runs if r['variant'] == variant]
        if mine:
            table[variant] = {
                'images_per_sec': statistics.median(r['images_per_sec'] for r in mine),
                'all_images_per_sec': [round(r['images_per_sec'], 2) for r in mine],
                'peak_rss_mib': max(r['peak_rss_mib'] for r in mine)}
    ratios = {}
    ut = table.get('utils.train', {}).get('images_per_sec')
    for other in ('limit', 'd2l'):
        if ut and other in table:
            ratios['utils.train/%s' % other] = ut / table[other]['images_per_sec']
    return table, ratios


def format_table(table, ratios):
    lines = ['%-12s %12s %22s %14s' % ('variant', 'images/sec', 'runs', 'peak RSS MiB')]
    for variant, row in table.items():
        lines.append('%-12s %12.1f %22s %14.0f'
                     % (variant, row['images_per_sec'],
                        ' '.join('%.1f' % v for v in row['all_images_per_sec']),
                        row['peak_rss_mib']))
    for name, value in ratios.items():
        lines.append('%-24s %.2f' % (name, value))
    return '\n'.join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--model', choices=MODELS, default='resnet18_v2',
                   help='random initialisation: throughput does not depend on the weights')
    p.add_argument('--image-size', type=int, default=224, help='crop size, e.g. 224 or 96')
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--devices', default='cpu', help="'cpu', 'cpu:N' or 'gpu:0,1'")
    p.add_argument('--images', type=int, default=256,
                   help='images in the generated folder (one epoch)')
    p.add_argument('--epochs', type=int, default=1, help='timed epochs per variant')
    p.add_argument('--warmup', type=int, default=2, help='untimed batches before the clock')
    p.add_argument('--repeat', type=int, default=1,
                   help='runs per variant (interleaved); the table shows the median')
    p.add_argument('--variants', default=','.join(VARIANTS),
                   help='comma-separated subset of %s' % ', '.join(VARIANTS))
    p.add_argument('--data-dir', default=None,
                   help='image folder to use (generated there when empty); default: a '
                        'temporary folder, deleted afterwards')
    p.add_argument('--num-workers', type=int, default=0,
                   help='DataLoader decoding threads for utils.train and d2l (0: the chapters\' '
                        'setting, decoding on the training thread)')
    p.add_argument('--decode', choices=('once', 'every-epoch'), default='once',
                   help="utils.train: pictures decoded once into memory when they fit (the "
                        "chapters' loaders), or decoded again in every epoch")
    p.add_argument('--augment', choices=('numpy', 'gluon'), default='gluon',
                   help="utils.train: gluon's transforms on every picture (as d2l, the limit and "
                        'the chapters), or a crop in numpy and one normalisation per batch '
                        '(utils.data.transforms)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--timeout', type=float, default=1800, help='seconds per variant run')
    p.add_argument('--json', default=None, metavar='PATH', help='write the results as JSON')
    args = p.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(',') if v.strip()]
    bad = [v for v in args.variants if v not in VARIANTS]
    if bad:
        p.error('unknown variant %s: choose from %s' % (', '.join(bad), ', '.join(VARIANTS)))
    for name in ('image_size', 'batch_size', 'images', 'epochs', 'repeat'):
        if getattr(args, name) < 1:
            p.error('--%s must be at least 1' % name.replace('_', '-'))
    if args.warmup < 0 or args.num_workers < 0:
        p.error('--warmup and --num-workers must be 0 or more')
    if args.images < args.batch_size:
        p.error('--images must be at least --batch-size')
    if 'd2l' in args.variants and args.images // args.batch_size < 5:
        # train_ch13 updates its plot every (batches per epoch // 5) batches
        p.error('d2l.train_ch13 needs at least 5 batches per epoch: raise --images')
    return args


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, ROOT)
    from utils.threads import default_omp_threads
    threads = default_omp_threads()  # the children inherit it
    with tempfile.TemporaryDirectory(prefix='throughput-') as tmp:
        folder = args.data_dir or os.path.join(tmp, 'images')
        if not (os.path.isdir(folder) and os.listdir(folder)):
            t = time.time()
            make_image_folder(folder, args.images, args.seed)
            print('Generated %d JPEG images in %s (%.1f s)' % (args.images, folder,
                                                               time.time() - t))
        cfg = {'folder': folder, 'model': args.model, 'image_size': args.image_size,
               'batch_size': args.batch_size, 'devices': args.devices, 'epochs': args.epochs,
               'warmup': args.warmup, 'seed': args.seed, 'num_workers': args.num_workers,
               'decode': args.decode, 'augment': args.augment}
        load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
        print('%s, batch %d, %dx%d, devices %s, loader threads %d, decoding %s, '
              'augmentation %s, OMP_NUM_THREADS=%d, %d cores, load %.2f before'
              % (args.model, args.batch_size, args.image_size, args.image_size, args.devices,
                 args.num_workers, args.decode, args.augment, threads, os.cpu_count() or 1,
                 load))
        sys.stdout.flush()
        runs = []
        for r in range(args.repeat):
            for variant in args.variants:
                result = run_variant(variant, cfg, args.timeout)
                print('  run %d %-12s %7.1f images/sec  %6.0f MiB' % (
                    r + 1, variant, result['images_per_sec'], result['peak_rss_mib']))
                sys.stdout.flush()
                runs.append(result)
    table, ratios = summarize(runs)
    print(format_table(table, ratios))
    if args.json:
        report = {'config': {k: v for k, v in cfg.items() if k != 'folder'},
                  'omp_num_threads': threads, 'cores': os.cpu_count(),
                  'machine': platform.platform(), 'load_before': load,
                  'runs': runs, 'table': table, 'ratios': ratios}
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=2)
        print('Results written to %s' % args.json)
    return table, ratios


if __name__ == '__main__':
    if len(sys.argv) == 4 and sys.argv[1] == '--child':
        sys.path.insert(0, ROOT)
        child_main(sys.argv[2], sys.argv[3])
    else:
        main()
