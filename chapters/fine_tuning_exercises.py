# %% [markdown]
# # Fine-tuning: the five exercises, one runnable answer each
#
# Follows the exercises ("练习") at the end of the Gluon tutorial "Fine-tuning: 通过微调来迁移学习"
# (the MXNet edition of Dive into Deep Learning, 动手学深度学习), after `chapters/fine_tuning.py`.
#
# 1. Train longer, until both nets converge: do `scratch_net` and `finetune_net` end apart?
# 2. `finetune_net` reuses every weight of `pretrained_net` but the output: reuse fewer.
# 3. ImageNet has a hotdog class: reuse its row of the output layer.
# 4. Do not train the reused weights at all.
# 5. The images the fine-tuned net gets wrong, and how to do better.
#
# Every exercise prints a table and saves a PNG. `python -m chapters.fine_tuning_exercises
# --exercise 2 --quick` runs one (`all` is the default); they take the chapter's settings and
# run offline on the face photos where hotdog cannot be had. All five at `--quick`, offline,
# took 650 s on 2 cores shared with other jobs (load 5-9, OMP_NUM_THREADS=1); exercise 3 alone
# takes seconds offline.

# %%
import utils  # sets OMP_NUM_THREADS before MXNet loads

import math
import time

import numpy as np
from mxnet import gluon, init, nd

from utils import opt

# %% [markdown]
# ## Settings
#
# The fine-tuning chapter's settings, the exercise to run, and exercise 1's schedule.

# %%
args = utils.settings(
    'fine_tuning_exercises', 'The five exercises of the fine-tuning chapter',
    exercise=opt('all', 'which exercise', choices=['all', '1', '2', '3', '4', '5']),
    long_epochs=opt(None, 'exercise 1: epochs (default 3x --epochs)', type=utils.cli.positive_int),
    decay_epoch=opt(None, 'exercise 1: divide the learning rate by 10 here (default: two '
                          'thirds of --long-epochs)', type=utils.cli.positive_int),
    **utils.FINE_TUNING_SETTINGS, **utils.HOTDOG_SETTINGS)
if args.long_epochs is None:
    args.long_epochs = 3 * args.epochs
if args.decay_epoch is None:
    args.decay_epoch = (2 * args.long_epochs) // 3
chosen = [1, 2, 3, 4, 5] if args.exercise == 'all' else [int(args.exercise)]
run = utils.Run(args, 'fine_tuning_exercises')
ctx = utils.parse_devices(args.devices)
utils.seed_everything(args.seed)

# %% [markdown]
# The chapter's data and pretrained network. `finetune_from` builds the chapter's
# `finetune_net` from a fresh copy of the pretrained weights: training changes the features
# a net shares with its pretrained net, and each variant below must start from ImageNet's.

# %%
train_imgs, test_imgs, dataset, _ = utils.hotdog_or_faces(args, args.image_size)
model_name, pretrained_net = utils.pretrained_for(dataset, args.model)
print('%s, %s, first conv %s' % (dataset, model_name,
                                 utils.first_conv(pretrained_net).weight.shape))
results = {}


def finetune_from(model_name):
    net = utils.new_classifier(model_name)
    net.features = utils.get_pretrained(model_name).features
    net.output.initialize(init.Xavier())
    return net


def train(net, **changes):
    return utils.train_fine_tuning(net, ctx, train_imgs, test_imgs,
                                   **utils.train_settings(args, **changes))


def accuracy_rows(histories):
    """[name, final test accuracy, mean of the last 3 epochs] per run."""
    return [[name, h['test_acc'][-1], np.mean(h['test_acc'][-3:])]
            for name, h in histories.items()]


# %% [markdown]
# ## Exercise 1: train longer, until both converge
#
# Three times the epochs, and the learning rate divided by 10 at two thirds of them (a step
# schedule, as simple as the text's SGD): two calls of `train`, before and after the drop.

# %%
def train_with_decay(net, epochs):
    first = min(args.decay_epoch, epochs)
    history = train(net, epochs=first)
    if epochs > first:
        later = train(net, epochs=epochs - first, learning_rate=args.learning_rate / 10,
                      first_epoch=first)
        history = {key: history[key] + later[key] for key in history}
    return history


def exercise_1():
    histories = {}
    for name in ('finetune_net', 'scratch_net'):
        if name == 'finetune_net':
            net = finetune_from(model_name)
        else:
            net = utils.new_classifier(model_name)
            net.initialize(init.Xavier())
        histories[name] = train_with_decay(net, args.long_epochs)
    utils.plot_history(histories, run.figure('exercise1_longer.png'),
                       title='%d epochs, lr / 10 at epoch %d'
                       % (args.long_epochs, args.decay_epoch))
    utils.print_table(['net', 'final test acc', 'mean last 3', 'final train acc'],
                      [row + [histories[row[0]]['train_acc'][-1]]
                       for row in accuracy_rows(histories)],
                      [None, '%.3f', '%.3f', '%.3f'])
    return {'epochs': args.long_epochs, 'histories': histories}


if 1 in chosen:
    print('\n== Exercise 1 ==')
    results['1'] = exercise_1()

# %% [markdown]
# ## Exercise 2: reuse fewer layers
#
# `reuse_first` gives a new 2-class net the pretrained weights of the first `children` blocks
# of `features` only; the rest start at random. Stages: ResNet v2's children 0-4 are the stem
# and 5-8 its four stages; MobileNetV2's 0-2 are the stem, then 17 bottlenecks (children
# 3-19) grouped by output stride /4, /8, /16, /32.


# %%
def stage_ends(model_name):
    """Number of `features` children up to the end of the stem and of each of 4 stages."""
    if model_name.startswith('resnet'):
        return [5, 6, 7, 8, 9]
    return [3, 6, 9, 16, 20]


def reuse_first(pretrained_net, model_name, children):
    net = utils.new_classifier(model_name)
    net.initialize(init.Xavier())
    net(nd.zeros((1, 3, 32, 32)))  # finish deferred initialisation before copying
    for mine, theirs in zip(net.features[:children], pretrained_net.features[:children]):
        for p_mine, p_theirs in zip(mine.collect_params().values(),
                                    theirs.collect_params().values()):
            p_mine.set_data(p_theirs.data())
    return net


def exercise_2():
    ends = stage_ends(model_name)
    choices = [('all', len(pretrained_net.features))] + [(str(k), ends[k]) for k in (3, 2, 1, 0)]
    histories, copied = {}, {}
    for label, children in choices:
        print('-- reusing %s stage(s): features[:%d] from ImageNet' % (label, children))
        net = reuse_first(pretrained_net, model_name, children)
        histories['k=%s' % label] = train(net)
        copied['k=%s' % label] = children
    utils.plot_history(histories, run.figure('exercise2_reuse_fewer.png'),
                       title='stages of features reused from ImageNet')
    utils.print_table(['stages reused (k)', 'features children copied', 'final test acc',
                       'mean last 3'],
                      [[name[2:], copied[name], acc, mean]
                       for name, acc, mean in accuracy_rows(histories)],
                      [None, '%d', '%.3f', '%.3f'])
    return {'histories': histories}


if 2 in chosen:
    print('\n== Exercise 2 ==')
    results['2'] = exercise_2()

# %% [markdown]
# ## Exercise 3: the ImageNet hotdog row
#
# The text says the hotdog class is index 713 and takes its row of the output weight:
# `hotdog_w = nd.split(weight.data(), 1000, axis=0)[713]`. Row 713 is 'photocopier'; 'hotdog'
# is 934. `init_from_row` makes that row the new net's hotdog row. The not-hotdog row stands
# for the other 999 classes together, whose logit is their log-sum-exp: a linear row cannot
# express it, so it takes their mean weight and mean bias plus log(999), which equals the
# log-sum-exp when those logits are equal and is a smooth stand-in otherwise. (The class
# names sort 'hotdog' before 'not-hotdog'.)

# %%
TEXT_HOTDOG_INDEX, HOTDOG_INDEX = 713, 934


def output_rows(net):
    """Output weight as (classes, inputs) and bias: Dense (ResNet) or 1x1 conv (MobileNetV2)."""
    layer = net.output if isinstance(net.output, gluon.nn.Dense) else net.output[0]
    weight = layer.weight.data()
    return layer, weight.reshape((weight.shape[0], -1)), layer.bias.data()


def init_from_row(net, pretrained_net, row):
    net(nd.zeros((1, 3, 32, 32)))  # finish deferred initialisation before setting rows
    layer, weight, bias = output_rows(net)
    _, imagenet_w, imagenet_b = output_rows(pretrained_net)
    others = [i for i in range(imagenet_w.shape[0]) if i != row]
    new_w = nd.stack(imagenet_w[row], imagenet_w[others].mean(axis=0))
    new_b = nd.stack(imagenet_b[row], imagenet_b[others].mean() + math.log(len(others)))
    layer.weight.set_data(new_w.reshape(layer.weight.shape))
    layer.bias.set_data(new_b.reshape(layer.bias.shape))


def exercise_3():
    classes = utils.imagenet_classes()
    print('class %d: %s (the index the text gives)' % (TEXT_HOTDOG_INDEX,
                                                       classes[TEXT_HOTDOG_INDEX]))
    print('class %d: %s' % (HOTDOG_INDEX, classes[HOTDOG_INDEX]))
    _, weight, bias = output_rows(pretrained_net)
    hotdog_w = nd.split(weight, 1000, axis=0)[HOTDOG_INDEX]
    print('hotdog_w.shape', hotdog_w.shape, '(bias: one number per class,', bias.shape, ')')
    if dataset != 'hotdog':
        print('The accuracy part of this exercise needs the hotdog data (not available here): '
              'put data/hotdog.zip in place or run where the network is reachable.')
        return {'names': {str(TEXT_HOTDOG_INDEX): classes[TEXT_HOTDOG_INDEX],
                          str(HOTDOG_INDEX): classes[HOTDOG_INDEX]}}
    test_data = gluon.data.DataLoader(test_imgs, args.batch_size)
    rows, histories = [], {}
    for label, row in (('row 713', TEXT_HOTDOG_INDEX), ('row 934', HOTDOG_INDEX),
                       ('random', None)):
        net = finetune_from(model_name)
        if row is not None:
            init_from_row(net, pretrained_net, row)
        net.collect_params().reset_ctx(ctx)
        before = utils.evaluate_accuracy(test_data, net, ctx)
        histories[label] = train(net, epochs=1)
        rows.append([label, before, histories[label]['test_acc'][-1]])
    utils.print_table(['output init', 'test acc before training', 'after 1 epoch'], rows,
                      [None, '%.3f', '%.3f'])
    utils.plot_history(histories, run.figure('exercise3_hotdog_row.png'),
                       title='output initialised from an ImageNet row')
    return {'rows': rows, 'histories': histories}


if 3 in chosen:
    print('\n== Exercise 3 ==')
    results['3'] = exercise_3()

# %% [markdown]
# ## Exercise 4: freeze the reused weights
#
# `grad_req = 'null'` on `features`: their weights stay as ImageNet left them, only the
# output trains (BatchNorm running statistics still follow the new data). It is also faster:
# no gradients for the features.


# %%
def exercise_4():
    histories, seconds = {}, {}
    for label, frozen in (('fine-tune all', False), ('features frozen', True)):
        net = finetune_from(model_name)
        if frozen:
            net.features.collect_params().setattr('grad_req', 'null')
        histories[label] = train(net)
        seconds[label] = np.median(histories[label]['seconds'])
    utils.print_table(['variant', 'final test acc', 'mean last 3', 'median sec/epoch'],
                      [row + [seconds[row[0]]] for row in accuracy_rows(histories)],
                      [None, '%.3f', '%.3f', '%.1f'])
    utils.plot_history(histories, run.figure('exercise4_frozen.png'),
                       title='reused weights trained or frozen')
    return {'histories': histories}


if 4 in chosen:
    print('\n== Exercise 4 ==')
    results['4'] = exercise_4()

# %% [markdown]
# ## Exercise 5: the images it gets wrong, and one improvement
#
# The test images sorted by the probability the net gives their true class: the wrong ones
# first, then the least sure right ones. One measured improvement: the new output layer
# learning 10x faster than the reused layers (`--output-lr-mult 10`).


# %%
def exercise_5():
    results, rows = {}, []
    for label, mult in (('text settings', 1.0), ('output lr x10', 10.0)):
        net = finetune_from(model_name)
        start = time.time()
        h = train(net, output_lr_mult=mult)
        out, labels = utils.predict_dataset(net, test_imgs, 64, ctx[0])
        probs = nd.softmax(nd.array(out)).asnumpy()
        preds = probs.argmax(axis=1)
        true_probs = probs[np.arange(len(probs)), labels.astype(int)]
        results[label] = (h, true_probs, preds, labels.astype(int))
        rows.append([label, h['test_acc'][-1], np.mean(h['test_acc'][-3:]),
                     int((preds != labels).sum()), time.time() - start])
    utils.print_table(['variant', 'final test acc', 'mean last 3', 'wrong', 'seconds'], rows,
                      [None, '%.3f', '%.3f', '%d', '%.0f'])
    _, probs, preds, labels = results['text settings']
    worst = np.argsort(probs)[:8]
    synsets = train_imgs.synsets
    imgs = [utils.denormalise(test_imgs[i][0].expand_dims(axis=0))[0] for i in worst]
    verdicts = ['WRONG' if preds[i] != labels[i] else 'ok' for i in worst]
    titles = ['%s %s\np(true)=%.2f' % (verdict, synsets[labels[i]], probs[i])
              for verdict, i in zip(verdicts, worst)]
    utils.show_images(imgs, 2, 4, titles=titles, scale=2,
                      path=run.figure('exercise5_mistakes.png'))
    for i in worst[:int((preds != labels).sum())]:
        print('wrong: test image %d, true %s, p(true)=%.3f' % (i, synsets[labels[i]], probs[i]))
    return {'rows': rows, 'histories': {k: v[0] for k, v in results.items()}}


if 5 in chosen:
    print('\n== Exercise 5 ==')
    results['5'] = exercise_5()

# %%
run.metrics.update(dataset=dataset, model=model_name, devices=[str(c) for c in ctx],
                   exercises=results)
run.finish()
