"""Assignment 2: the chapter's finetune_net: pretrained features, a new output layer."""
from mxnet import init
from mxnet.gluon.model_zoo import vision


def make_finetune_net(pretrained_net, classes=2, output_lr_mult=10.0):
    """MobileNetV2 with pretrained_net's features and a new, faster-learning output."""
    ### BEGIN SOLUTION
    finetune_net = vision.mobilenet_v2_1_0(classes=classes)
    finetune_net.features = pretrained_net.features
    finetune_net.output.initialize(init.Xavier())
    finetune_net.output.collect_params().setattr('lr_mult', output_lr_mult)
    return finetune_net
    ### END SOLUTION
