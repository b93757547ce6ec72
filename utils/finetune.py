"""The fine-tuning text's recipe, shared by its chapter and its exercises: which pretrained
network, and its `train` (hybridize, SGD, softmax cross-entropy, utils.train)."""
from mxnet import gluon

from .block import release_graph, set_bn_momentum
from .cli import PIXELS, fraction, non_negative_float, one_of, opt
from .errors import UserError
from .model_store import get_pretrained, known_models
from .torchvision_weights import OFFLINE_MODEL
from .training import train

MODEL_FOR = {'hotdog': 'resnet18_v2', 'faces': OFFLINE_MODEL}

# The settings of the text's train() (utils.cli.settings), shared by the chapter and its
# exercises: the text's values, and what --quick changes for a short run on a CPU.
FINE_TUNING_SETTINGS = dict(
    model=opt('auto', "pretrained model: auto (hotdog: resnet18_v2 from the model store, "
                      "faces: mobilenetv2_1.0 from the offline weights) or any name "
                      "utils.get_pretrained knows",
              type=one_of(['auto'] + known_models(), 'model')),
    epochs=opt(10, 'training epochs of each net'),
    batch_size=opt(64, 'images per batch', quick=32),
    image_size=opt(224, 'crop size in pixels', quick=96, type=PIXELS),
    learning_rate=opt(0.01, "SGD's learning rate"),
    wd=opt(0.001, 'weight decay', type=non_negative_float),
    output_lr_mult=opt(1.0, 'learning-rate multiplier of the new output layer', quick=10.0),
    bn_momentum=opt(0.9, 'momentum of the BatchNorm running averages of both nets', quick=0.5,
                    type=fraction()),
)


def train_settings(args, **changes):
    """The keyword arguments of train_fine_tuning from the settings, with `changes`."""
    kwargs = dict(batch_size=args.batch_size, epochs=args.epochs,
                  learning_rate=args.learning_rate, wd=args.wd,
                  output_lr_mult=args.output_lr_mult, bn_momentum=args.bn_momentum,
                  progress=False if args.no_progress else None, seed=args.seed)
    kwargs.update(changes)
    return kwargs


def pretrained_for(dataset, model='auto'):
    """(name, network): `model`, or for 'auto' the text's ResNet-18 v2 on hotdog and the
    offline MobileNetV2 on faces, falling back to the offline one when the store is out of
    reach."""
    if model != 'auto':
        return model, get_pretrained(model)
    try:
        return MODEL_FOR[dataset], get_pretrained(MODEL_FOR[dataset])
    except UserError as err:
        if MODEL_FOR[dataset] == OFFLINE_MODEL:
            raise
        print('%s; using %s instead' % (err, OFFLINE_MODEL))
        return OFFLINE_MODEL, get_pretrained(OFFLINE_MODEL)


def train_fine_tuning(net, ctx, train_imgs, test_imgs, batch_size=64, epochs=10,
                      learning_rate=0.01, wd=0.001, output_lr_mult=1.0, bn_momentum=0.9,
                      progress=None, seed=None, first_epoch=0):
    """The text's train(): hybridize, SGD, softmax cross-entropy, utils.train on `ctx`.

    output_lr_mult: learning-rate multiplier of `net.output`; bn_momentum: of every BatchNorm's
    running averages (the fine-tuning chapter tells why --quick lowers it). first_epoch: as in
    utils.train, for a schedule trained in several calls. Returns the history.
    """
    set_bn_momentum(net, bn_momentum)
    train_data = gluon.data.DataLoader(train_imgs, batch_size, shuffle=True)
    test_data = gluon.data.DataLoader(test_imgs, batch_size)

    # make sure the parameters live on ctx
    net.collect_params().reset_ctx(ctx)
    # static_alloc without static_shape: with it, training MobileNetV2 at 96 px (batch 32)
    # took the process to 1.3 GiB, then 1.5 as test batches of other sizes came, against
    # 1.0-1.1 GiB here, for the same CPU time (python -m benchmarks.graph_memory).
    net.hybridize(static_alloc=True)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    if output_lr_mult != 1:
        net.output.collect_params().setattr('lr_mult', output_lr_mult)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {
        'learning_rate': learning_rate, 'wd': wd})
    history = train(train_data, test_data, net, loss, trainer, ctx, epochs,
                    progress=progress, seed=seed, first_epoch=first_epoch)
    release_graph(net)  # a net kept for later gives its training buffers back
    return history
