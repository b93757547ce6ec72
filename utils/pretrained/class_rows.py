"""A new output layer whose class rows start from ImageNet rows, and what that is worth few-shot.

The fine-tuning text's exercise: ImageNet has a hotdog class, so the new 2-class output layer
can start its hotdog row from ImageNet's (row 934; the text's 713 is 'photocopier'). Here:

    set_class_rows(net, pretrained_net, [774, 770, 514])  # weight AND bias of each class row
    aucs = row_aucs(imagenet_logits, labels)              # (classes, 1000) one-vs-rest AUCs
    rows = best_rows(aucs, row_margins(imagenet_logits, labels))  # no class fits by name
    results = compare_initialisations(data, rows, ...)    # accuracy before / 1 epoch / end

`compare_initialisations` trains the same few-shot subsets from several starting output layers
(the named rows, one row for every class, random rows, a fresh Xavier layer, the rows with the
best training AUC), with either only the output layer trained on cached features or the whole
network fine-tuned with frozen BatchNorm statistics.
"""
import time

import numpy as np
from mxnet import autograd, gluon, init, nd
from scipy.stats import rankdata

from .block import freeze_batchnorm
from ..errors import UserError
from . import model_store
from .model_store import get_pretrained
from ..training.loop import evaluate_accuracy, seed_everything, train

TEXT_ROW = 713  # the source text's "hotdog" index, which is 'photocopier'

VARIANTS = ('ImageNet rows', 'row 713 for all', 'random rows', 'fresh layer',
            'best AUC rows')


# %% Output rows

def output_layer(net):
    """The layer holding the class rows of a classifier or of its `.output` block: a Dense
    (ResNet) or the 1x1 Conv2D with a bias of utils.get_pretrained's MobileNetV2."""
    block = getattr(net, 'output', net)
    if isinstance(block, (gluon.nn.Dense, gluon.nn.Conv2D)):
        return block
    for child in block._children.values():
        if isinstance(child, (gluon.nn.Dense, gluon.nn.Conv2D)):
            return child
    raise UserError('no Dense or Conv2D output layer in %s' % type(block).__name__)


def class_rows(net):
    """(weight (classes, inputs), bias (classes,)) of the output layer, as NDArrays."""
    layer = output_layer(net)
    if layer.bias is None:
        raise UserError('the output layer of %s has no bias: its rows cannot be copied whole'
                        % type(net).__name__)
    weight = layer.weight.data()
    return weight.reshape((weight.shape[0], -1)), layer.bias.data()


def set_class_rows(net, source_net, rows):
    """Class k of `net` starts from row rows[k] of `source_net` (weight and bias).

    `net`'s output layer must already have its shape (run one batch through it first).
    """
    layer = output_layer(net)
    weight, bias = class_rows(source_net)
    if len(rows) != layer.weight.shape[0]:
        raise UserError('%d rows given for an output layer of %d classes'
                        % (len(rows), layer.weight.shape[0]))
    picked = nd.array(np.asarray(rows), dtype='int32')
    layer.weight.set_data(nd.take(weight, picked).reshape(layer.weight.shape))
    layer.bias.set_data(nd.take(bias, picked))


# %% Choosing rows when no ImageNet class fits by name

def row_aucs(logits, labels, classes=None):
    """(classes, rows) array: how well each row's logit alone tells class k from the others.

    The AUC is the probability that a random image of class k gets a higher logit than a
    random image of another class (ties count half): 0.5 is chance, 1 a perfect separation.
    Computed from ranks (Mann-Whitney U) for all rows at once.
    """
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels)
    classes = int(labels.max()) + 1 if classes is None else classes
    ranks = rankdata(logits, axis=0)  # ties get their average rank
    aucs = np.empty((classes, logits.shape[1]))
    for k in range(classes):
        positive = labels == k
        n_pos, n_neg = int(positive.sum()), int((~positive).sum())
        if n_pos == 0 or n_neg == 0:
            raise UserError('row_aucs needs examples of class %d and of the others' % k)
        aucs[k] = (ranks[positive].sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return aucs


def row_margins(logits, labels, classes=None):
    """(classes, rows) array: (mean logit of class k - mean of the others) / pooled standard
    deviation. Breaks the ties of row_aucs: with a few images per class, many rows separate
    them perfectly (AUC 1), some by far more than others."""
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels)
    classes = int(labels.max()) + 1 if classes is None else classes
    margins = np.empty((classes, logits.shape[1]))
    for k in range(classes):
        inside, outside = logits[labels == k], logits[labels != k]
        spread = np.sqrt((inside.var(axis=0) + outside.var(axis=0)) / 2) + 1e-12
        margins[k] = (inside.mean(axis=0) - outside.mean(axis=0)) / spread
    return margins


def _ranked(aucs, margins, k):
    """Rows for class k, best first: by AUC, then by margin, then by index."""
    tie = np.zeros(aucs.shape[1]) if margins is None else margins[k]
    return np.lexsort((np.arange(aucs.shape[1]), -tie, -aucs[k]))


def best_rows(aucs, margins=None):
    """One distinct row per class, each class's best (AUC, then margin); when two classes want
    the same row, the one with the higher AUC keeps it and the other takes its next best."""
    ranked = [list(_ranked(aucs, margins, k)) for k in range(aucs.shape[0])]
    chosen, used = {}, set()
    while len(chosen) < aucs.shape[0]:
        # every class still without a row proposes its best free row; the strongest wins
        proposals = [(aucs[k, next(r for r in ranked[k] if r not in used)], -k, k)
                     for k in range(aucs.shape[0]) if k not in chosen]
        _, _, k = max(proposals)
        row = next(r for r in ranked[k] if r not in used)
        chosen[k] = int(row)
        used.add(row)
    return [chosen[k] for k in range(aucs.shape[0])]


def top_rows(aucs, names, count=5, margins=None):
    """Per class, the `count` best rows as (row, ImageNet name, AUC, margin or None)."""
    return [[(int(r), names[r], float(aucs[k, r]),
              None if margins is None else float(margins[k, r]))
             for r in _ranked(aucs, margins, k)[:count]]
            for k in range(aucs.shape[0])]


# %% Few-shot data

def few_shot_indices(labels, per_class, seed):
    """`per_class` random indices of every class (a different draw for every seed)."""
    rng = np.random.default_rng(seed)
    picked = []
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        if len(members) < per_class:
            raise UserError('class %d has %d examples, fewer than the %d asked for'
                            % (k, len(members), per_class))
        picked.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(picked))


def features_of(net, inputs, batch_size=100):
    """`net.features` of float32 NCHW inputs (numpy), in inference mode, as numpy."""
    outs = []
    with autograd.predict_mode():
        for i in range(0, len(inputs), batch_size):
            outs.append(net.features(nd.array(inputs[i:i + batch_size])).asnumpy())
    return np.concatenate(outs)


# %% The comparison

def new_classifier(model_name, classes):
    """(classifier with `classes` outputs and a fresh copy of the pretrained features,
    the pretrained 1000-class network those features come from)."""
    pretrained = get_pretrained(model_name)
    net = model_store.new_classifier(model_name, classes)
    net.features = pretrained.features
    net.output.initialize(init.Xavier())
    return net, pretrained


def new_output(pretrained, classes):
    """A Xavier-initialised output layer of the same kind as `pretrained`'s, `classes` rows."""
    if isinstance(output_layer(pretrained), gluon.nn.Conv2D):  # MobileNetV2: 1x1 conv + bias
        head = gluon.nn.HybridSequential()
        head.add(gluon.nn.Conv2D(classes, 1, use_bias=True), gluon.nn.Flatten())
    else:
        head = gluon.nn.Dense(classes)
    head.initialize(init.Xavier())
    return head


def initial_rows(variant, named_rows, aucs, rng, total_rows=1000, margins=None):
    """The ImageNet rows a variant starts its classes from (None: a fresh Xavier layer)."""
    classes = len(named_rows) if named_rows is not None else aucs.shape[0]
    if variant == 'ImageNet rows':
        return list(named_rows)
    if variant == 'row %d for all' % TEXT_ROW:
        return [TEXT_ROW] * classes
    if variant == 'random rows':  # distinct rows, none of the named ones
        pool = np.setdiff1d(np.arange(total_rows), named_rows if named_rows else [])
        return [int(r) for r in rng.choice(pool, classes, replace=False)]
    if variant == 'fresh layer':
        return None
    if variant == 'best AUC rows':
        return best_rows(aucs, margins)
    raise UserError('unknown initialisation %r; known: %s' % (variant, ', '.join(VARIANTS)))


def _fit(net, data, labels, epochs, batch_size, learning_rate, output_lr_mult, wd, ctx, seed):
    """utils.train without evaluation, quietly (SGD has no state to carry between calls)."""
    loader = gluon.data.DataLoader(gluon.data.ArrayDataset(nd.array(data), nd.array(labels)),
                                   batch_size, shuffle=True)
    output_layer(net).collect_params().setattr('lr_mult', output_lr_mult)
    trainer = gluon.Trainer(net.collect_params(), 'sgd',
                            {'learning_rate': learning_rate, 'wd': wd})
    return train(loader, None, net, gluon.loss.SoftmaxCrossEntropyLoss(), trainer, ctx, epochs,
                 progress=False, seed=seed, print_fn=lambda *args: None)


def _accuracy(net, data, labels, ctx, batch_size=100):
    loader = gluon.data.DataLoader(gluon.data.ArrayDataset(nd.array(data), nd.array(labels)),
                                   batch_size)
    return evaluate_accuracy(loader, net, ctx)


def measure_variant(model_name, rows, train_set, test_set, *, train_what='output', epochs=20,
                    batch_size=16, learning_rate=0.01, output_lr_mult=1.0, wd=0.001,
                    ctx=None, seed=0, pretrained=None):
    """Test accuracy before training, after one epoch and after `epochs`, from one start.

    rows: the ImageNet rows of the classes, or None for a fresh Xavier output layer.
    train_what 'output': train_set / test_set hold cached `features` (N, C, 1, 1) and only the
        output layer learns (the pretrained network is frozen, BatchNorm in inference mode).
    train_what 'all': they hold normalised images; everything is fine-tuned, with BatchNorm
        kept on its ImageNet statistics (few grey images per batch would replace them).
    pretrained: the 1000-class network, to avoid loading it again ('output' only).
    The defaults suit 'output'; 'all' needs about learning_rate=1e-4, output_lr_mult=100 (with
    BatchNorm frozen, one epoch at 1e-3 already makes every prediction the same class).
    """
    from mxnet import cpu
    start = time.time()
    ctx = ctx or [cpu()]
    (x_train, y_train), (x_test, y_test) = train_set, test_set
    classes = int(max(y_train.max(), y_test.max())) + 1
    seed_everything(seed)  # the fresh layer's Xavier draw depends on the seed only
    if train_what == 'output':
        source = pretrained or get_pretrained(model_name)
        model = new_output(source, classes)
    elif train_what == 'all':  # a fresh copy: fine-tuning changes the features
        model, source = new_classifier(model_name, classes)
        freeze_batchnorm(model.features)
    else:
        raise UserError("train_what must be 'output' or 'all', not %r" % train_what)
    model(nd.array(x_test[:1]))  # finish deferred initialisation before setting rows
    if rows is not None:
        set_class_rows(model, source, rows)
    model.collect_params().reset_ctx(ctx)
    model.hybridize(static_alloc=True)
    before = _accuracy(model, x_test, y_test, ctx)
    settings = dict(batch_size=batch_size, learning_rate=learning_rate,
                    output_lr_mult=output_lr_mult, wd=wd, ctx=ctx)
    first = _fit(model, x_train, y_train, 1, seed=seed, **settings)
    after_one = _accuracy(model, x_test, y_test, ctx)
    rest = {'loss': []}
    if epochs > 1:  # another seed, so these epochs do not repeat the first one's shuffle
        rest = _fit(model, x_train, y_train, epochs - 1, seed=seed + 7919, **settings)
    after_all = _accuracy(model, x_test, y_test, ctx) if epochs > 1 else after_one
    return {'before': before, 'one_epoch': after_one, 'end': after_all,
            'final_loss': (rest['loss'] or first['loss'])[-1], 'seconds': time.time() - start}


def compare_initialisations(model_name, train_pool, test_set, to_inputs, *, named_rows=None,
                            variants=None, shots=(16,), seeds=(0, 1, 2), train_what='output',
                            print_fn=print, **settings):
    """Every variant's accuracy (before / one epoch / end) on the same few-shot subsets.

    train_pool, test_set: (images, labels) the subsets are drawn from / measured on;
    to_inputs(images) -> normalised float32 NCHW numpy. named_rows: ImageNet row of each class
    by name (None when no class has one: the 'ImageNet rows' variant is then left out).
    For each number of shots and each seed, one subset of the pool, shared by every variant;
    the 1000 ImageNet rows are ranked by their AUC on that subset only. `settings` go to
    measure_variant. Returns {'results': {shots: {variant: [one dict per seed]}},
    'top_rows': {shots: [per seed: top_rows(...)]}}.
    """
    from .imagenet import imagenet_classes
    if variants is None:
        variants = [v for v in VARIANTS if named_rows is not None or v != 'ImageNet rows']
    pretrained = get_pretrained(model_name)
    pretrained.hybridize(static_alloc=True)
    names = imagenet_classes()

    def prepared(images):  # in slices: the normalised inputs of 3000 images take 330 MB
        return np.concatenate([to_inputs(images[i:i + 200]) for i in range(0, len(images), 200)])

    test_x = prepared(test_set[0])
    if train_what == 'output':
        test_x = features_of(pretrained, test_x)
    out = {'results': {}, 'top_rows': {}}
    for count in shots:
        out['results'][count] = {v: [] for v in variants}
        out['top_rows'][count] = []
        for seed in seeds:
            idx = few_shot_indices(train_pool[1], count, seed)
            train_x, train_y = prepared(train_pool[0][idx]), train_pool[1][idx]
            features = features_of(pretrained, train_x)
            with autograd.predict_mode():
                logits = pretrained.output(nd.array(features)).asnumpy()
            aucs, margins = row_aucs(logits, train_y), row_margins(logits, train_y)
            out['top_rows'][count].append(top_rows(aucs, names, margins=margins))
            if train_what == 'output':
                train_x = features
            rng = np.random.default_rng([seed, count])
            for variant in variants:
                rows = initial_rows(variant, named_rows, aucs, rng, margins=margins)
                result = measure_variant(model_name, rows, (train_x, train_y),
                                         (test_x, test_set[1]), train_what=train_what,
                                         seed=seed, pretrained=pretrained, **settings)
                result['rows'] = rows
                out['results'][count][variant].append(result)
                print_fn('%d shots, seed %d, %-16s %s: before %.3f, one epoch %.3f, end %.3f '
                         '(%.1f s)' % (count, seed, variant, rows, result['before'],
                                       result['one_epoch'], result['end'], result['seconds']))
    return out


def summary_table(results, seeds):
    """One text table per number of shots: mean accuracy over seeds, and each seed's value."""
    lines = []
    for count, by_variant in results.items():
        lines.append('%d images per class, %d seeds (%s): test accuracy, mean [per seed]'
                     % (count, len(seeds), ' '.join(map(str, seeds))))
        lines.append('%-16s %-22s %-22s %-22s' % ('output init', 'no training', 'one epoch',
                                                  'end'))
        for variant, runs in by_variant.items():
            cells = []
            for key in ('before', 'one_epoch', 'end'):
                values = [r[key] for r in runs]
                cells.append('%.3f [%s]' % (np.mean(values),
                                            ' '.join('%.2f' % v for v in values)))
            lines.append('%-16s %-22s %-22s %-22s' % (variant, *cells))
        lines.append('')
    return '\n'.join(lines)
