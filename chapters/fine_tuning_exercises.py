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
# And `digits`: exercises 1 and 2 of Deep Learning with JavaScript, chapter 5, on its
# mnist-transfer-cnn example (a convnet learns the digits 0-4, then 5-9 with its convolutions
# frozen), on scikit-learn's digits; with `--quick` it took 33 s of CPU (134 s wall on a
# machine at load average 15, one thread).
#
# Every exercise prints a table and saves a PNG. `python -m chapters.fine_tuning_exercises
# --exercise 2 --quick` runs one (`all` is the default); they take the chapter's settings and
# run offline on the face photos where hotdog cannot be had (exercise 3 on Fashion-MNIST's
# shoes when it is installed: `make fashion-mnist`). Work is shared: the pretrained weights are
# loaded once for every fine-tuned net, one fine-tuning run serves exercises 1 (as the start of
# its longer run), 2 and 4 (and 5 on hotdog), whose settings are equal, and the frozen base of
# exercise 4 runs once per image. Each exercise prints its wall and CPU seconds. All five with
# `--quick` took 237 s on an idle 2-core machine (2 threads, `benchmarks/quick_modes.py`).

# %%
import utils  # sets OMP_NUM_THREADS before MXNet loads

import math
import os
import time

import numpy as np
from mxnet import gluon, init, nd
from mxnet.gluon import nn

from utils import opt

from utils.data import digits, fashion_mnist

from utils.pretrained import class_rows
from utils.data.datasets import load_faces
from utils.training.few_shot import per_class_subset
from utils.data.split import IndexSampler
from utils.display.plotting import plt, save_figure

# %% [markdown]
# ## Settings
#
# The fine-tuning chapter's settings, the exercise to run, and exercise 1's schedule.

# %%
args = utils.settings(
    'fine_tuning_exercises', 'The five exercises of the fine-tuning chapter',
    exercise=opt('all', 'which exercise (digits: Deep Learning with JavaScript 5.4, 1-2)',
                 choices=['all', '1', '2', '3', '4', '5', 'digits']),
    long_epochs=opt(None, 'exercise 1: epochs (default 3x --epochs)', type=utils.cli.positive_int),
    decay_epoch=opt(None, 'exercise 1: divide the learning rate by 10 here (default: two '
                          'thirds of --long-epochs)', type=utils.cli.positive_int),
    digit_shots=opt([1, 5, 10, 20, 50], 'exercise digits: training examples per class of 5-9',
                    nargs='+', quick=[1, 5, 20]),
    digit_seeds=opt(5, 'exercise digits: how many draws of those examples', quick=3),
    digit_steps=opt(150, 'exercise digits: training steps of each net on 5-9'),
    **utils.FINE_TUNING_SETTINGS, **utils.HOTDOG_SETTINGS)
if args.long_epochs is None:
    args.long_epochs = 3 * args.epochs
if args.decay_epoch is None:
    args.decay_epoch = (2 * args.long_epochs) // 3
chosen = ([1, 2, 3, 4, 5, 'digits'] if args.exercise == 'all' else
          [args.exercise if args.exercise == 'digits' else int(args.exercise)])
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
results, timings = {}, {}


def finetune_from(model_name):
    return reuse_first(pretrained_net, model_name, len(pretrained_net.features))


def reuse_first(pretrained_net, model_name, children):
    """A new 2-class net with the pretrained weights of `features[:children]` (copied, so
    training it leaves `pretrained_net` as ImageNet left it), the rest at random."""
    net = utils.new_classifier(model_name)
    net.initialize(init.Xavier())
    net(nd.zeros((1, 3, 32, 32)))  # finish deferred initialisation before copying
    copy_weights(net.features[:children], pretrained_net.features[:children])
    return net


def copy_weights(to_block, from_block):
    """Set every parameter of `to_block` to the value of its twin in `from_block` (same
    architecture; the first device's copy when it is on several)."""
    for mine, theirs in zip(to_block.collect_params().values(),
                            from_block.collect_params().values()):
        mine.set_data(theirs.list_data()[0])


def train(net, **changes):
    return utils.train_fine_tuning(net, ctx, train_imgs, test_imgs,
                                   **utils.train_settings(args, **changes))


shared_runs = {}


def finetune_run(**changes):
    """`finetune_net` trained with the settings (and `changes`), as (net, history). Several
    exercises ask for the same run: it is trained once and shared."""
    key = tuple(sorted(utils.train_settings(args, **changes).items()))
    if key not in shared_runs:
        net = finetune_from(model_name)
        shared_runs[key] = (net, train(net, **changes))
    else:
        print('(the fine-tuning run with these settings is already trained: reused)')
    return shared_runs[key]


def timed(number, exercise):
    """Run one exercise; print and keep its wall and CPU seconds (and the machine's load)."""
    wall, cpu = time.time(), time.process_time()
    result = exercise()
    seconds = {'wall': round(time.time() - wall, 1), 'cpu': round(time.process_time() - cpu, 1),
               'load': round(os.getloadavg()[0], 1)}
    print('exercise %s: %.1f s wall, %.1f s CPU (load average %.1f)'
          % (number, seconds['wall'], seconds['cpu'], seconds['load']))
    timings[str(number)] = seconds
    return result


def accuracy_rows(histories):
    """[name, final test accuracy, mean of the last 3 epochs] per run."""
    return [[name, h['test_acc'][-1], np.mean(h['test_acc'][-3:])]
            for name, h in histories.items()]


# %% [markdown]
# ## Exercise 1: train longer, until both converge
#
# Three times the epochs, and the learning rate divided by 10 at two thirds of them (a step
# schedule, as simple as the text's SGD): calls of `train` before and after the drop. The
# first `--epochs` of finetune_net are the chapter's run, which exercises 2, 4 and 5 share
# (`finetune_run`): a copy of that trained net goes on from there. SGD without momentum keeps
# no state between steps and `first_epoch` continues the per-epoch shuffles and draws, so this
# is the run one long `train` call would give.

# %%
def train_with_decay(net, epochs, done=None):
    """Train `net` to `epochs`, the learning rate / 10 from args.decay_epoch on; `done`: the
    history of the epochs it has already trained at the first rate."""
    history = done or {}
    trained = len(history.get('test_acc', ()))
    for start, end, rate in ((trained, min(args.decay_epoch, epochs), args.learning_rate),
                             (max(trained, args.decay_epoch), epochs, args.learning_rate / 10)):
        if end > start:
            later = train(net, epochs=end - start, learning_rate=rate, first_epoch=start)
            history = {key: history.get(key, []) + later[key] for key in later}
    return history


def copy_of(trained_net):
    """A new net of the same model with `trained_net`'s weights, to train on without
    changing it."""
    net = reuse_first(trained_net, model_name, 0)  # initialised, nothing copied yet
    copy_weights(net, trained_net)
    return net


def exercise_1():
    histories = {}
    if args.epochs <= args.decay_epoch:  # the shared run is the schedule's start
        shared_net, shared_history = finetune_run()
        finetune_net = copy_of(shared_net)
        histories['finetune_net'] = train_with_decay(finetune_net, args.long_epochs,
                                                     done=shared_history)
    else:
        finetune_net = finetune_from(model_name)
        histories['finetune_net'] = train_with_decay(finetune_net, args.long_epochs)
    scratch_net = utils.new_classifier(model_name)
    scratch_net.initialize(init.Xavier())
    histories['scratch_net'] = train_with_decay(scratch_net, args.long_epochs)
    utils.plot_history(histories, run.figure('exercise1_longer.png'),
                       title='%d epochs, lr / 10 at epoch %d'
                       % (args.long_epochs, args.decay_epoch))
    utils.print_table(['net', 'final test acc', 'mean last 3', 'final train acc'],
                      [row + [histories[row[0]]['train_acc'][-1]]
                       for row in accuracy_rows(histories)],
                      [None, '%.3f', '%.3f', '%.3f'])
    return {'epochs': args.long_epochs, 'histories': histories}, finetune_net


if 1 in chosen:
    print('\n== Exercise 1 ==')
    results['1'], longer_finetune_net = timed(1, exercise_1)

# %% [markdown]
# ## Exercise 2: reuse fewer layers
#
# `reuse_first` gives a new 2-class net the pretrained weights of the first `children` blocks
# of `features` only; the rest start at random. Stages: ResNet v2's children 0-4 are the stem
# and 5-8 its four stages; MobileNetV2's 0-2 are the stem, then 17 bottlenecks (children
# 3-19) grouped by output stride /4, /8, /16, /32. Reusing all of them is the chapter's
# `finetune_net`: that run is shared with exercises 4 and 5 (`finetune_run`).


# %%
def stage_ends(model_name):
    """Number of `features` children up to the end of the stem and of each of 4 stages."""
    if model_name.startswith('resnet'):
        return [5, 6, 7, 8, 9]
    return [3, 6, 9, 16, 20]


def exercise_2():
    ends = stage_ends(model_name)
    choices = [('all', len(pretrained_net.features))] + [(str(k), ends[k]) for k in (3, 2, 1, 0)]
    histories, copied = {}, {}
    for label, children in choices:
        print('-- reusing %s stage(s): features[:%d] from ImageNet' % (label, children))
        if label == 'all':  # the chapter's finetune_net: exercises 4 and 5 share this run
            histories['k=all'] = finetune_run()[1]
        else:
            histories['k=%s' % label] = train(reuse_first(pretrained_net, model_name, children))
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
    results['2'] = timed(2, exercise_2)

# %% [markdown]
# ## Exercise 3: the ImageNet hotdog row
#
# The text says the hotdog class is index 713 and takes its row of the output weight:
# `hotdog_w = nd.split(weight.data(), 1000, axis=0)[713]`. Row 713 is 'photocopier'; the row
# named 'hotdog' is 934. `init_from_row` makes that row the new net's hotdog row. The
# not-hotdog row stands for the other 999 classes together, whose logit is their log-sum-exp:
# a linear row cannot express it, so it takes their mean weight and mean bias plus log(999),
# which equals the log-sum-exp when those logits are equal and is a smooth stand-in otherwise.
# (The class names sort 'hotdog' before 'not-hotdog'.)
#
# Offline there is no hotdog, but Fashion-MNIST's shoes have ImageNet classes of their own:
# sandal, running shoe (sneaker) and cowboy boot (ankle boot), found by name. Each class's
# output row then starts from its ImageNet row (weight and bias), against row 713 for every
# class, random rows and a fresh layer, few-shot, over seeds (utils.pretrained.class_rows). Without
# Fashion-MNIST the faces stand in: no ImageNet class is "face", so the 1000 rows are ranked
# by how well each alone separates the training photos (the AUC of its logit).

# %%
TEXT_HOTDOG_INDEX = 713
HOTDOG_INDEX = utils.imagenet_classes().index('hotdog')  # 934
FASHION_SHOES = ('Sandal', 'Sneaker', 'Ankle boot')


def output_rows(net):
    """Output weight as (classes, inputs) and bias: Dense (ResNet) or 1x1 conv (MobileNetV2)."""
    layer = class_rows.output_layer(net)
    weight, bias = class_rows.class_rows(net)
    return layer, weight, bias


def init_from_row(net, pretrained_net, row):
    net(nd.zeros((1, 3, 32, 32)))  # finish deferred initialisation before setting rows
    layer, weight, bias = output_rows(net)
    _, imagenet_w, imagenet_b = output_rows(pretrained_net)
    others = [i for i in range(imagenet_w.shape[0]) if i != row]
    new_w = nd.stack(imagenet_w[row], imagenet_w[others].mean(axis=0))
    new_b = nd.stack(imagenet_b[row], imagenet_b[others].mean() + math.log(len(others)))
    layer.weight.set_data(new_w.reshape(layer.weight.shape))
    layer.bias.set_data(new_b.reshape(layer.bias.shape))


def hotdog_rows():
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


def shoe_or_face_data():
    """(name, train pool, test set, to_inputs, ImageNet row of each class or None, classes)."""
    def to_inputs(images):
        return utils.preprocess_batch(images, args.image_size).asnumpy()
    if fashion_mnist.find_fashion_mnist():
        pool = fashion_mnist.load_classes('train', FASHION_SHOES)
        test = fashion_mnist.load_classes('test', FASHION_SHOES, 200 if args.quick else None)
        named = fashion_mnist.imagenet_rows(FASHION_SHOES)
        return ('Fashion-MNIST', pool, test,
                lambda images: to_inputs(fashion_mnist.as_product_photos(images)),
                [named[c] for c in FASHION_SHOES], list(FASHION_SHOES))
    print('Fashion-MNIST not found: the faces stand in. To get it: %s' % fashion_mnist.HOW_TO_GET)
    train_set, test_set, synsets = load_faces(args.image_size, seed=args.seed)
    return ('faces', train_set, test_set,
            lambda images: to_inputs(images.clip(0, 255).astype('uint8')), None, synsets)


def shoe_rows():
    data, pool, test, to_inputs, named, classes = shoe_or_face_data()
    shots, seeds = ((4,), (0, 1, 2)) if args.quick else ((4, 16), (0, 1, 2, 3, 4))
    names = utils.imagenet_classes()
    print('%s: %s; %d training images to draw from, %d test images'
          % (data, ', '.join(classes), len(pool[1]), len(test[1])))
    if named:
        print('ImageNet rows by name: %s' % ', '.join(
            '%s -> %d %s' % (c, r, names[r]) for c, r in zip(classes, named)))
    study = class_rows.compare_initialisations(
        model_name, pool, test, to_inputs, named_rows=named, shots=shots, seeds=seeds,
        print_fn=lambda *a: None)  # only the output layer learns, on cached features
    if named is None:
        print('Top 5 rows by training AUC (%d per class, seed %d): row name AUC'
              % (shots[-1], seeds[0]))
        for cls, top in zip(classes, study['top_rows'][shots[-1]][0]):
            print('  %-9s %s' % (cls, ', '.join('%d %s %.3f' % t[:3] for t in top)))
    print(class_rows.summary_table(study['results'], seeds))
    return {'data': data, 'classes': classes, 'named_rows': named,
            'results': {str(k): v for k, v in study['results'].items()}}


def exercise_3():
    classes = utils.imagenet_classes()
    print('class %d: %s (the index the text gives)' % (TEXT_HOTDOG_INDEX,
                                                       classes[TEXT_HOTDOG_INDEX]))
    print('class %d: %s' % (HOTDOG_INDEX, classes[HOTDOG_INDEX]))
    _, weight, bias = output_rows(pretrained_net)
    hotdog_w = nd.split(weight, 1000, axis=0)[HOTDOG_INDEX]
    print('hotdog_w.shape', hotdog_w.shape, '(bias: one number per class,', bias.shape, ')')
    names = {str(TEXT_HOTDOG_INDEX): classes[TEXT_HOTDOG_INDEX],
             str(HOTDOG_INDEX): classes[HOTDOG_INDEX]}
    if dataset == 'hotdog':
        return dict(hotdog_rows(), names=names)
    return dict(shoe_rows(), names=names)


if 3 in chosen:
    print('\n== Exercise 3 ==')
    results['3'] = timed(3, exercise_3)

# %% [markdown]
# ## Exercise 4: freeze the reused weights
#
# The reused weights do not train at all: `features` is only run forward, so its output for
# each image can be computed once and kept (`utils.cache_features`), and only the output layer
# learns, on those features, with the chapter's settings for it (learning rate x
# `--output-lr-mult`). BatchNorm keeps ImageNet's statistics too; and each training image is
# cached with one draw of the augmentations. The fine-tune-all run is the one of exercise 2.


# %%
def exercise_4():
    _, finetuned = finetune_run()
    frozen_net = finetune_from(model_name)
    start = time.time()
    train_features = utils.cache_features(frozen_net.features, train_imgs, args.batch_size, ctx[0])
    test_features = utils.cache_features(frozen_net.features, test_imgs, args.batch_size, ctx[0])
    cache_seconds = time.time() - start
    head = frozen_net.output
    head.collect_params().reset_ctx(ctx)
    trainer = gluon.Trainer(head.collect_params(), 'sgd', {
        'learning_rate': args.learning_rate * args.output_lr_mult, 'wd': args.wd})
    frozen = utils.train(utils.feature_loader(*train_features, args.batch_size, shuffle=True),
                         utils.feature_loader(*test_features, args.batch_size), head,
                         gluon.loss.SoftmaxCrossEntropyLoss(), trainer, ctx, args.epochs,
                         progress=False if args.no_progress else None, seed=args.seed)
    histories = {'fine-tune all': finetuned, 'features frozen': frozen}
    seconds = {'fine-tune all': sum(finetuned['seconds']),
               'features frozen': cache_seconds + sum(frozen['seconds'])}
    utils.print_table(['variant', 'final test acc', 'mean last 3', 'seconds'],
                      [row + [seconds[row[0]]] for row in accuracy_rows(histories)],
                      [None, '%.3f', '%.3f', '%.1f'])
    print('(features frozen: %.1f s of it caching the features once)' % cache_seconds)
    utils.plot_history(histories, run.figure('exercise4_frozen.png'),
                       title='reused weights trained or frozen')
    return {'histories': histories, 'seconds': seconds}, frozen_net


if 4 in chosen:
    print('\n== Exercise 4 ==')
    results['4'], frozen_net = timed(4, exercise_4)

# %% [markdown]
# ## Exercise 5: the images it gets wrong, and one improvement
#
# Trained on all the training photos, the nets get (nearly) every face right, so offline the
# exercise uses a few-shot set, where they do make mistakes: 8 photos per class, batch 16,
# 4x `--epochs` (40 at `--quick`; the fine-tuning chapter's data-scarce settings). The
# fine-tuned net and the net trained from scratch see the same subset; the mistakes of both
# are shown side by side. The improvement measured over seeds: the new output layer learning
# 10x faster than the reused layers (`output_lr_mult`). That idea is not in this text (its
# `train` gives every layer learning rate 0.01); it comes from the later editions of Dive into
# Deep Learning, whose fine-tuning section gives the output layer ten times the learning rate
# of the reused ones (`lr_mult` 10 in the MXNet version). On hotdog the chapter's full runs
# are used.

# %%
FEW_SHOT = dict(per_class=8, batch_size=16, epochs=4 * args.epochs, seeds=(0, 1, 2))


def true_class_probs(net):
    """(p(true class), prediction, label) of every test image."""
    out, labels = utils.predict_dataset(net, test_imgs, 64, ctx[0])
    probs = nd.softmax(nd.array(out)).asnumpy()
    labels = labels.astype(int)
    return probs[np.arange(len(probs)), labels], probs.argmax(axis=1), labels


def few_shot_variants(seed):
    """Fine-tune (output lr x1, x10) and scratch on one few-shot subset: {name: (history, probs,
    preds, labels)}."""
    keep = per_class_subset(train_labels, FEW_SHOT['per_class'], seed)
    subset = train_imgs.sample(IndexSampler(keep))
    out = {}
    for name, mult in (('fine-tune', 1.0), ('fine-tune, output lr x10', 10.0),
                       ('scratch', 1.0)):
        utils.seed_everything(seed)
        if name == 'scratch':
            net = utils.new_classifier(model_name)
            net.initialize(init.Xavier())
        else:
            net = finetune_from(model_name)
        history = utils.train_fine_tuning(
            net, ctx, subset, test_imgs, **utils.train_settings(
                args, batch_size=FEW_SHOT['batch_size'], epochs=FEW_SHOT['epochs'],
                output_lr_mult=mult, seed=seed, progress=False))
        out[name] = (history,) + true_class_probs(net)
    return out


def show_mistakes(runs, path, most=8):
    """One row per net: its misclassified test photos, least sure first."""
    fig, axes = plt.subplots(len(runs), most, figsize=(most * 1.6, len(runs) * 2.0),
                             squeeze=False)
    for axes_row, (name, (_, probs, preds, labels)) in zip(axes, runs.items()):
        wrong = [i for i in np.argsort(probs) if preds[i] != labels[i]]
        for ax in axes_row:
            ax.axis('off')
        axes_row[0].set_title('%s: %d wrong' % (name, len(wrong)), loc='left', fontsize=9)
        for ax, i in zip(axes_row, wrong[:most]):
            ax.imshow(utils.denormalise(test_imgs[i][0].expand_dims(axis=0))[0].asnumpy())
            ax.text(0, -2, '\n%s p=%.2f' % (train_imgs.synsets[labels[i]], probs[i]), fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def few_shot_mistakes():
    rows, per_seed = [], {}
    for seed in FEW_SHOT['seeds']:
        per_seed[seed] = few_shot_variants(seed)
        if seed == FEW_SHOT['seeds'][0]:
            show_mistakes({k: per_seed[seed][k] for k in ('fine-tune', 'scratch')},
                          run.figure('exercise5_mistakes.png'))
    for name in per_seed[FEW_SHOT['seeds'][0]]:
        finals = [per_seed[s][name][0]['test_acc'][-1] for s in FEW_SHOT['seeds']]
        last3 = [np.mean(per_seed[s][name][0]['test_acc'][-3:]) for s in FEW_SHOT['seeds']]
        wrong = [int((per_seed[s][name][2] != per_seed[s][name][3]).sum())
                 for s in FEW_SHOT['seeds']]
        rows.append([name, np.mean(finals), ' '.join('%.2f' % v for v in finals),
                     np.mean(last3), ' '.join(map(str, wrong))])
    print('%d training photos per class, %d test photos, seeds %s'
          % (FEW_SHOT['per_class'], len(test_imgs), ' '.join(map(str, FEW_SHOT['seeds']))))
    utils.print_table(['net', 'final test acc', 'per seed', 'mean last 3', 'wrong per seed'],
                      rows, [None, '%.3f', None, '%.3f', None])
    return {'rows': rows, 'settings': FEW_SHOT,
            'histories': {'%s, seed %d' % (name, s): per_seed[s][name][0]
                          for s in FEW_SHOT['seeds'] for name in per_seed[s]}}


def full_set_mistakes():
    runs, rows = {}, []
    for label, mult in (('text settings', 1.0), ('output lr x10', 10.0)):
        net, h = finetune_run(output_lr_mult=mult)
        runs[label] = (h,) + true_class_probs(net)
        rows.append([label, h['test_acc'][-1], np.mean(h['test_acc'][-3:]),
                     int((runs[label][2] != runs[label][3]).sum())])
    utils.print_table(['variant', 'final test acc', 'mean last 3', 'wrong'], rows,
                      [None, '%.3f', '%.3f', '%d'])
    show_mistakes(runs, run.figure('exercise5_mistakes.png'))
    return {'rows': rows, 'histories': {k: v[0] for k, v in runs.items()}}


def exercise_5():
    if dataset == 'hotdog':
        return full_set_mistakes()
    return few_shot_mistakes()


if 5 in chosen:
    print('\n== Exercise 5 ==')
    train_labels = np.array([label for _, label in train_imgs]) if dataset != 'hotdog' else None
    results['5'] = timed(5, exercise_5)

# %% [markdown]
# ## Deep Learning with JavaScript, 5.4, exercises 1 and 2: digits 0-4, then 5-9
#
# Chapter 5 of Deep Learning with JavaScript (the text the detection chapter follows) ends with
# exercises on its mnist-transfer-cnn example: a convnet trained on the digits 0-4 is trained
# again on 5-9 with its two conv2d layers frozen (`trainable = false`). Exercise 1 asks for the
# trainable and non-trainable parameter counts (`summary()`), and what changes when `compile()`
# comes before `trainable` is set; exercise 2, to check that `fit()` leaves the frozen conv2d
# weights as they were, and changes them when nothing is frozen.
#
# The digits here are scikit-learn's (`utils.data.digits`: 1797 8x8 images, about 180 per digit;
# MNIST's 28x28 ship in no package the project installs), and the net is the example's: two 3x3
# convolutions with 32 filters and relu, 2x2 max-pooling, dropout 0.25, flatten, dense 128 relu,
# dropout 0.5, dense 5. It learns 0-4 first (80% of them; the rest measures it). Then 5-9, whose
# labels become 0-4 as in the example, from a few examples per class (drawn from half of each
# digit, nested for a seed; the other half is the test set), three ways:
#
# - **frozen features**: the pretrained convolutions, frozen, under a new head;
# - **all trained**: the same start, nothing frozen (the example's other setting);
# - **scratch**: the same net from random weights.
#
# Each net takes `--digit-steps` Adam steps (learning rate 1e-3) on batches of up to 32.
#
# Gluon has no `compile()`: a `gluon.Trainer` holds the parameters it updates, and a parameter
# whose `grad_req` is 'null' gets no gradient and is skipped. So freezing works at the next
# step even when the Trainer was built before (in Keras it needs `compile()` again), while
# unfreezing layers that a Trainer was not given changes nothing until a new Trainer holds
# them: the Gluon form of the text's "compile again". The last table checks both.
#
# Not ported from those exercises: exercise 3 converts Keras' MobileNetV2 to TensorFlow.js and
# reads its `summary()` in the browser; neither Keras nor TensorFlow.js is part of this port,
# whose MobileNetV2 already comes converted from torchvision's weights (its layers:
# `utils.pretrained.torchvision_weights`). Exercise 4 unfreezes layers of the speech-commands
# model: no
# speech-commands model or recordings ship in a package the project installs; its question,
# whether the frozen dense weights stay unchanged until the layers are unfrozen and trained
# again, is the one the tables below answer for convolutions. Exercises 5 to 7 (label
# scaling, how many layers to unfreeze) are run by the detection chapter's `--exercises`.


# %%
def digits_net(classes=5):
    """The mnist-transfer-cnn convnet: net[0] the features (the two conv2d), net[1] the head."""
    features = nn.HybridSequential(prefix='features_')
    head = nn.HybridSequential(prefix='head_')
    with features.name_scope():
        features.add(nn.Conv2D(32, 3, activation='relu'), nn.Conv2D(32, 3, activation='relu'),
                     nn.MaxPool2D(2), nn.Dropout(0.25), nn.Flatten())
    with head.name_scope():
        head.add(nn.Dense(128, activation='relu'), nn.Dropout(0.5), nn.Dense(classes))
    net = nn.HybridSequential()
    net.add(features, head)
    net.initialize(init.Xavier(), ctx=ctx)
    net(nd.zeros((1, 1, 8, 8), ctx=ctx[0]))  # finish deferred initialisation
    return net


def train_digits(net, images, labels, steps, seed, trainer=None):
    """`steps` Adam steps on batches of up to 32 (whole epochs, at least `steps`)."""
    utils.seed_everything(seed)
    batch = min(32, len(labels))
    epochs = -(-steps * batch // len(labels))
    if trainer is None:
        trainer = gluon.Trainer(utils.trainable_params(net), 'adam', {'learning_rate': 1e-3})
    net.hybridize()
    return utils.train(utils.feature_loader(images, labels, batch, shuffle=True), None, net,
                       gluon.loss.SoftmaxCrossEntropyLoss(), trainer, ctx, epochs,
                       progress=False, print_fn=lambda *a: None)


def digits_accuracy(net, images, labels):
    return utils.evaluate_accuracy(utils.feature_loader(images, labels, 256), net, ctx)


def conv_weights(net):
    return [p.data().asnumpy().copy() for p in net[0].collect_params().values()]


def changed(before, net):
    return any(not np.array_equal(a, b) for a, b in zip(before, conv_weights(net)))


def transferred(pretrained, frozen):
    """A new net with `pretrained`'s features (copied; frozen or not) and a new head."""
    net = digits_net()
    copy_weights(net[0], pretrained[0])
    utils.set_trainable(net[0], not frozen)
    return net


def parameter_count(params):
    return int(sum(np.prod(p.shape) for p in params.values()))


def trainer_order(pretrained, images, labels, steps=20):
    """Exercise 1b in Gluon: does the time the Trainer is built matter?"""
    found = {}
    net = transferred(pretrained, frozen=False)
    trainer = gluon.Trainer(net.collect_params(), 'adam', {'learning_rate': 1e-3})
    utils.set_trainable(net[0], False)  # frozen after the Trainer was built
    before = conv_weights(net)
    train_digits(net, images, labels, steps, 0, trainer)
    found["frozen after the Trainer was built"] = changed(before, net)
    net = transferred(pretrained, frozen=True)
    trainer = gluon.Trainer(utils.trainable_params(net), 'adam', {'learning_rate': 1e-3})
    utils.set_trainable(net[0], True)  # unfrozen, the Trainer holds the head only
    before = conv_weights(net)
    train_digits(net, images, labels, steps, 0, trainer)
    found['unfrozen, the same Trainer (head only)'] = changed(before, net)
    train_digits(net, images, labels, steps, 0)  # a new Trainer over what is trainable now
    found['unfrozen, a new Trainer'] = changed(before, net)
    return found


def exercise_digits():
    images, labels = digits.load_digits()
    (x04, y04), (x59, y59) = digits.halves(images, labels)
    test04, train04 = map(np.sort, utils.split_per_class(y04, 0.2, args.seed))
    test59, pool59 = map(np.sort, utils.split_per_class(y59, 0.5, args.seed))
    print('scikit-learn digits %s: 0-4 %d images (%d to train), 5-9 %d (%d to draw from, %d '
          'to test)' % (images.shape[1:], len(y04), len(train04), len(y59), len(pool59),
                        len(test59)))
    pretrained = digits_net()
    start = time.time()
    train_digits(pretrained, x04[train04], y04[train04], 10 * len(train04) // 32, args.seed)
    pretrained_acc = digits_accuracy(pretrained, x04[test04], y04[test04])
    print('pretrained on 0-4: test accuracy %.3f (%.1f s)'
          % (pretrained_acc, time.time() - start))
    frozen_net = transferred(pretrained, frozen=True)
    counts = {'trainable': parameter_count(utils.trainable_params(frozen_net)),
              'frozen': parameter_count(frozen_net.collect_params())
              - parameter_count(utils.trainable_params(frozen_net))}
    print('frozen features: %(trainable)d trainable parameters (the new head), %(frozen)d '
          'frozen (the two conv2d)' % counts)
    pool_labels = y59[pool59]
    variants = ('frozen features', 'all trained', 'scratch')
    accuracy = {v: {} for v in variants}
    seconds = {v: 0.0 for v in variants}
    conv_changed = {v: [] for v in variants[:2]}
    nets = {}
    for shots in args.digit_shots:
        for seed in range(args.digit_seeds):
            drawn = pool59[per_class_subset(pool_labels, shots, seed)]
            for variant in variants:
                net = (digits_net() if variant == 'scratch' else
                       transferred(pretrained, frozen=variant == 'frozen features'))
                before = conv_weights(net)
                start = time.time()
                train_digits(net, x59[drawn], y59[drawn], args.digit_steps, seed)
                seconds[variant] += time.time() - start
                accuracy[variant].setdefault(shots, []).append(
                    digits_accuracy(net, x59[test59], y59[test59]))
                if variant in conv_changed:
                    conv_changed[variant].append(changed(before, net))
                nets[variant] = net
    rows = [[shots] + [np.mean(accuracy[v][shots]) for v in variants]
            for shots in args.digit_shots]
    print('test accuracy on 5-9 (%d images), mean of %d seeds, %d steps per net'
          % (len(test59), args.digit_seeds, args.digit_steps))
    utils.print_table(['examples per class'] + list(variants), rows,
                      ['%d', '%.3f', '%.3f', '%.3f'])
    runs = len(args.digit_shots) * args.digit_seeds
    print('seconds per net: %s' % ', '.join(
        '%s %.2f' % (v, seconds[v] / runs) for v in variants))
    print('conv2d weights changed by training: %s' % ', '.join(
        '%s %s' % (v, 'yes' if all(c) else 'no' if not any(c) else 'in some runs')
        for v, c in conv_changed.items()))
    order = trainer_order(pretrained, x59[pool59], y59[pool59])
    utils.print_table(['Trainer and grad_req', 'conv2d weights changed'],
                      [[k, 'yes' if v else 'no'] for k, v in order.items()], [None, None])
    return {'pretrained_test_acc': pretrained_acc, 'parameters': counts,
            'test_images': len(test59), 'steps': args.digit_steps,
            'seeds': args.digit_seeds, 'rows': rows,
            'accuracy': {v: {str(k): a for k, a in accuracy[v].items()} for v in variants},
            'seconds_per_net': {v: seconds[v] / runs for v in variants},
            'conv_changed': conv_changed, 'trainer_order': order}, dict(nets, pretrained=pretrained)


if 'digits' in chosen:
    print('\n== Exercise digits (Deep Learning with JavaScript 5.4, 1-2) ==')
    results['digits'], digit_nets = timed('digits', exercise_digits)

# %%
run.metrics.update(dataset=dataset, model=model_name, devices=[str(c) for c in ctx],
                   exercises=results, seconds=timings)
run.finish()
