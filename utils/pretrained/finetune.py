"""The fine-tuning text's recipe, shared by its chapter and its exercises: its settings and
its `train` (saved from chapters/fine_tuning.py, see bookgen.saved), and which pretrained
network."""
from mxnet import gluon

import utils  # the saved train_fine_tuning calls utils.train, as the text does
from ..cli import PIXELS, fraction, non_negative_float, one_of, opt
from ..errors import UserError
from .model_store import get_pretrained, known_models
from .torchvision_weights import OFFLINE_MODEL

MODEL_FOR = {'hotdog': 'resnet18_v2', 'faces': OFFLINE_MODEL}

# @saved from chapters/fine_tuning.py: edit it there, then `python -m bookgen.saved`
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


# @saved from chapters/fine_tuning.py: edit it there, then `python -m bookgen.saved`
def train_fine_tuning(net, ctx, train_imgs, test_imgs, batch_size=64, epochs=10,
                      learning_rate=0.01, wd=0.001, output_lr_mult=1.0, bn_momentum=0.9,
                      progress=None, seed=None, first_epoch=0):
    """The text's train(): hybridize, SGD, softmax cross-entropy, utils.train on `ctx`.

    output_lr_mult: learning-rate multiplier of `net.output`; bn_momentum: of every BatchNorm's
    running averages. first_epoch: as in utils.train, for a schedule trained in several calls.
    Returns the history.
    """
    utils.set_bn_momentum(net, bn_momentum)
    train_data = gluon.data.DataLoader(train_imgs, batch_size, shuffle=True)
    test_data = gluon.data.DataLoader(test_imgs, batch_size)

    # make sure the parameters live on ctx
    net.collect_params().reset_ctx(ctx)
    # static_alloc without static_shape, which took more memory for the same time
    # (python -m benchmarks.graph_memory)
    net.hybridize(static_alloc=True)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    if output_lr_mult != 1:
        net.output.collect_params().setattr('lr_mult', output_lr_mult)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {
        'learning_rate': learning_rate, 'wd': wd})
    history = utils.train(train_data, test_data, net, loss, trainer, ctx, epochs,
                          progress=progress, seed=seed, first_epoch=first_epoch)
    utils.release_graph(net)  # a net kept for later gives its training buffers back
    return history
