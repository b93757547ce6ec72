"""The five exercises of the fine-tuning chapter, one runnable answer each.

    python -m chapters.fine_tuning_exercises --exercise 2 --quick

1. train finetune_net and scratch_net longer, with a learning-rate schedule, until they converge;
2. reuse fewer layers: only the first k stages of `features` come from ImageNet;
3. the ImageNet hotdog row (the text says 713, which is 'photocopier'; 934 is 'hotdog') as the
   initial hotdog row of the 2-class output;
4. freeze the reused weights (grad_req='null' on features) against full fine-tuning;
5. the images the fine-tuned net gets wrong, and one measured improvement.

Every exercise prints a table and saves a PNG; they take the chapter's options (dataset, model,
epochs, image size, devices) and run offline on the face photos where hotdog cannot be had.
"""
# %%
import utils  # sets OMP_NUM_THREADS before MXNet loads

import math
import time

import numpy as np
from mxnet import gluon, init, nd

from chapters.fine_tuning import (MEAN, STD, build_parser, first_conv, get_data,
                                  get_pretrained_net, new_net, parse_args, train)
from utils.cli import Run, devices_from, progress_from
from utils.errors import main_guard

TEXT_HOTDOG_INDEX, HOTDOG_INDEX = 713, 934


def settings(args, **changes):
    base = dict(batch_size=args.batch_size, epochs=args.epochs, learning_rate=args.learning_rate,
                wd=args.wd, output_lr_mult=args.output_lr_mult, bn_momentum=args.bn_momentum,
                progress=progress_from(args),
                seed=args.seed)
    base.update(changes)
    return base


def finetune_from(model_name):
    """The chapter's finetune_net, from a fresh copy of the pretrained weights (training
    changes the features it shares with its pretrained net)."""
    net = new_net(model_name)
    net.features = utils.get_pretrained(model_name).features
    net.output.initialize(init.Xavier())
    return net


def print_table(header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in [header] + rows:
        print('  '.join(str(x).rjust(w) for x, w in zip(row, widths)))


# %% Exercise 1: train longer until both converge
def exercise_1(args, data, pretrained, model_name, ctx, run):
    """Longer training; the learning rate is divided by 10 at --decay-epoch (cosine-free, as
    simple as the text's SGD)."""
    train_imgs, test_imgs = data
    epochs = args.long_epochs
    histories = {}
    for name in ('finetune_net', 'scratch_net'):
        if name == 'finetune_net':
            net = finetune_from(model_name)
        else:
            net = new_net(model_name)
            net.initialize(init.Xavier())
        histories[name] = train_with_decay(net, ctx, train_imgs, test_imgs, args, epochs)
    utils.plot_history(histories, run.figure('exercise1_longer.png'),
                       title='%d epochs, lr / 10 at epoch %d' % (epochs, args.decay_epoch))
    rows = [[name, '%.3f' % h['test_acc'][-1], '%.3f' % np.mean(h['test_acc'][-3:]),
             '%.3f' % h['train_acc'][-1]] for name, h in histories.items()]
    print_table(['net', 'final test acc', 'mean last 3', 'final train acc'], rows)
    return {'epochs': epochs, 'histories': histories}


def train_with_decay(net, ctx, train_imgs, test_imgs, args, epochs):
    """Two calls of the chapter's train(): before and after the learning-rate drop."""
    first = min(args.decay_epoch, epochs)
    history = train(net, ctx, train_imgs, test_imgs, **settings(args, epochs=first))
    if epochs > first:
        later = train(net, ctx, train_imgs, test_imgs, **settings(
            args, epochs=epochs - first, learning_rate=args.learning_rate / 10))
        history = {key: history[key] + later[key] for key in history}
    return history


# %% Exercise 2: reuse fewer layers
def stage_ends(model_name):
    """Number of `features` children up to the end of the stem and of each of 4 stages.

    ResNet v2: children 0-4 are the stem, 5-8 the four stages. MobileNetV2: 0-2 the stem, then
    17 bottlenecks (children 3-19) grouped by output stride /4, /8, /16, /32.
    """
    if model_name.startswith('resnet'):
        return [5, 6, 7, 8, 9]
    return [3, 6, 9, 16, 20]


def reuse_first(pretrained_net, model_name, children):
    """A 2-class net whose first `children` blocks of features copy the pretrained ones."""
    net = new_net(model_name)
    net.initialize(init.Xavier())
    net(nd.zeros((1, 3, 32, 32)))  # finish deferred initialisation before copying
    for mine, theirs in zip(net.features[:children], pretrained_net.features[:children]):
        for p_mine, p_theirs in zip(mine.collect_params().values(),
                                    theirs.collect_params().values()):
            p_mine.set_data(p_theirs.data())
    return net


def exercise_2(args, data, pretrained, model_name, ctx, run):
    train_imgs, test_imgs = data
    ends = stage_ends(model_name)
    choices = [('all', len(pretrained.features))] + [
        (str(k), ends[k]) for k in (3, 2, 1, 0)]
    histories, rows = {}, []
    for label, children in choices:
        print('-- reusing %s stage(s): features[:%d] from ImageNet' % (label, children))
        net = reuse_first(pretrained, model_name, children)
        h = train(net, ctx, train_imgs, test_imgs, **settings(args))
        histories['k=%s' % label] = h
        rows.append([label, children, '%.3f' % h['test_acc'][-1],
                     '%.3f' % np.mean(h['test_acc'][-3:])])
    utils.plot_history(histories, run.figure('exercise2_reuse_fewer.png'),
                       title='stages of features reused from ImageNet')
    print_table(['stages reused (k)', 'features children copied', 'final test acc',
                 'mean last 3'], rows)
    return {'histories': histories}


# %% Exercise 3: the ImageNet hotdog row
def output_rows(net):
    """Output weight as (classes, inputs) and bias: Dense (ResNet) or 1x1 conv (MobileNetV2)."""
    layer = net.output if isinstance(net.output, gluon.nn.Dense) else net.output[0]
    weight = layer.weight.data()
    return layer, weight.reshape((weight.shape[0], -1)), layer.bias.data()


def init_from_row(net, pretrained_net, row):
    """Hotdog row = ImageNet row `row`; not-hotdog row from all other 999 rows.

    The not-hotdog probability is the sum of the other 999 classes' probabilities, whose
    logit is their log-sum-exp: a linear row cannot express it, so it takes their mean
    weight and mean bias plus log(999), which equals the log-sum-exp when those logits
    are equal and is a smooth stand-in otherwise. synsets sort 'hotdog' before 'not-hotdog'.
    """
    net(nd.zeros((1, 3, 32, 32)))  # finish deferred initialisation before setting rows
    layer, weight, bias = output_rows(net)
    _, imagenet_w, imagenet_b = output_rows(pretrained_net)
    others = [i for i in range(imagenet_w.shape[0]) if i != row]
    new_w = nd.stack(imagenet_w[row], imagenet_w[others].mean(axis=0))
    new_b = nd.stack(imagenet_b[row], imagenet_b[others].mean() + math.log(len(others)))
    layer.weight.set_data(new_w.reshape(layer.weight.shape))
    layer.bias.set_data(new_b.reshape(layer.bias.shape))


def exercise_3(args, data, pretrained, model_name, ctx, run):
    classes = utils.imagenet_classes()
    text_name = classes[TEXT_HOTDOG_INDEX]
    print('class %d: %s (the index the text gives)' % (TEXT_HOTDOG_INDEX, text_name))
    print('class %d: %s' % (HOTDOG_INDEX, classes[HOTDOG_INDEX]))
    _, weight, bias = output_rows(pretrained)
    hotdog_w = nd.split(weight, 1000, axis=0)[HOTDOG_INDEX]
    print('hotdog_w.shape', hotdog_w.shape, '(bias: one number per class,', bias.shape, ')')
    if args.dataset_name != 'hotdog':
        print('The accuracy part of this exercise needs the hotdog data (not available here): '
              'put data/hotdog.zip in place or run where the network is reachable.')
        return {'names': {str(TEXT_HOTDOG_INDEX): classes[TEXT_HOTDOG_INDEX],
                          str(HOTDOG_INDEX): classes[HOTDOG_INDEX]}}
    train_imgs, test_imgs = data
    test_data = gluon.data.DataLoader(test_imgs, args.batch_size)
    rows, histories = [], {}
    for label, row in (('row 713', TEXT_HOTDOG_INDEX), ('row 934', HOTDOG_INDEX),
                       ('random', None)):
        net = finetune_from(model_name)
        if row is not None:
            init_from_row(net, pretrained, row)
        net.collect_params().reset_ctx(ctx)
        before = utils.evaluate_accuracy(test_data, net, ctx)
        h = train(net, ctx, train_imgs, test_imgs, **settings(args, epochs=1))
        histories[label] = h
        rows.append([label, '%.3f' % before, '%.3f' % h['test_acc'][-1]])
    print_table(['output init', 'test acc before training', 'after 1 epoch'], rows)
    utils.plot_history(histories, run.figure('exercise3_hotdog_row.png'),
                       title='output initialised from an ImageNet row')
    return {'rows': rows, 'histories': histories}


# %% Exercise 4: freeze the reused weights
def exercise_4(args, data, pretrained, model_name, ctx, run):
    train_imgs, test_imgs = data
    histories, rows = {}, []
    for label, frozen in (('fine-tune all', False), ('features frozen', True)):
        net = finetune_from(model_name)
        if frozen:
            # the weights stay; BatchNorm running statistics still follow the new data
            net.features.collect_params().setattr('grad_req', 'null')
        h = train(net, ctx, train_imgs, test_imgs, **settings(args))
        histories[label] = h
        rows.append([label, '%.3f' % h['test_acc'][-1], '%.3f' % np.mean(h['test_acc'][-3:]),
                     '%.1f' % np.median(h['seconds'])])
    print_table(['variant', 'final test acc', 'mean last 3', 'median sec/epoch'], rows)
    utils.plot_history(histories, run.figure('exercise4_frozen.png'),
                       title='reused weights trained or frozen')
    return {'histories': histories}


# %% Exercise 5: the images it gets wrong, and one improvement
def predictions(net, dataset, ctx):
    """(probabilities of the true class, predicted labels) over a dataset."""
    loader = gluon.data.DataLoader(dataset, 64)
    probs, preds, labels = [], [], []
    for X, y in loader:
        out = nd.softmax(net(X.as_in_context(ctx[0]))).asnumpy()
        labels.append(y.asnumpy().astype(int))
        preds.append(out.argmax(axis=1))
        probs.append(out[np.arange(len(out)), labels[-1]])
    return np.concatenate(probs), np.concatenate(preds), np.concatenate(labels)


def exercise_5(args, data, pretrained, model_name, ctx, run):
    train_imgs, test_imgs = data
    results, rows = {}, []
    for label, mult in (('text settings', 1.0), ('output lr x10', 10.0)):
        net = finetune_from(model_name)
        start = time.time()
        h = train(net, ctx, train_imgs, test_imgs, **settings(args, output_lr_mult=mult))
        probs, preds, labels = predictions(net, test_imgs, ctx)
        results[label] = (h, probs, preds, labels)
        rows.append([label, '%.3f' % h['test_acc'][-1], '%.3f' % np.mean(h['test_acc'][-3:]),
                     int((preds != labels).sum()), '%.0f' % (time.time() - start)])
    print_table(['variant', 'final test acc', 'mean last 3', 'wrong', 'seconds'], rows)
    _, probs, preds, labels = results['text settings']
    worst = np.argsort(probs)[:8]  # the wrong ones first, then the least sure right ones
    synsets = train_imgs.synsets
    imgs = [(test_imgs[i][0] * STD + MEAN).transpose((1, 2, 0)).clip(0, 1) for i in worst]
    verdicts = ['WRONG' if preds[i] != labels[i] else 'ok' for i in worst]
    titles = ['%s %s\np(true)=%.2f' % (verdict, synsets[labels[i]], probs[i])
              for verdict, i in zip(verdicts, worst)]
    utils.show_images(imgs, 2, 4, titles=titles, scale=2,
                      path=run.figure('exercise5_mistakes.png'))
    for i in worst[:int((preds != labels).sum())]:
        print('wrong: test image %d, true %s, p(true)=%.3f' % (i, synsets[labels[i]], probs[i]))
    return {'rows': rows, 'histories': {k: v[0] for k, v in results.items()}}


EXERCISES = {1: exercise_1, 2: exercise_2, 3: exercise_3, 4: exercise_4, 5: exercise_5}


@main_guard
def main(argv=None):
    parser = build_parser(__doc__.splitlines()[0], default_out='out/fine_tuning_exercises')
    parser.add_argument('--exercise', default='all', choices=['all', '1', '2', '3', '4', '5'])
    parser.add_argument('--long-epochs', type=int, default=None,
                        help='exercise 1: epochs (default 3x --epochs)')
    parser.add_argument('--decay-epoch', type=int, default=None,
                        help='exercise 1: divide the learning rate by 10 here '
                             '(default: two thirds of --long-epochs)')
    args = parse_args(argv, parser)
    args.long_epochs = args.long_epochs or 3 * args.epochs
    args.decay_epoch = args.decay_epoch or (2 * args.long_epochs) // 3
    run = Run(args, 'fine_tuning_exercises')
    ctx = devices_from(args)
    utils.training.seed_everything(args.seed)
    train_imgs, test_imgs, args.dataset_name, _ = get_data(args, args.image_size)
    model_name, pretrained = get_pretrained_net(args.model, args.dataset_name)
    args.model = model_name
    print('%s, %s, first conv %s' % (args.dataset_name, model_name,
                                     first_conv(pretrained).weight.shape))
    chosen = sorted(EXERCISES) if args.exercise == 'all' else [int(args.exercise)]
    run.metrics.update(dataset=args.dataset_name, model=model_name,
                       devices=[str(c) for c in ctx], exercises={})
    for number in chosen:
        print('\n== Exercise %d ==' % number)
        run.metrics['exercises'][str(number)] = EXERCISES[number](
            args, (train_imgs, test_imgs), pretrained, model_name, ctx, run)
    run.finish()
    return run.metrics


if __name__ == '__main__':
    main()
