"""New output heads put on a truncated base network (the detection chapter's two)."""
from mxnet.gluon import nn


def text_head(outputs=5):
    """The text's head (listing 5.9): Flatten -> Dense(200, relu) -> Dense(5)."""
    head = nn.HybridSequential(prefix='head_')
    with head.name_scope():
        head.add(nn.Flatten(), nn.Dense(200, activation='relu'), nn.Dense(outputs))
    return head


def conv_head(channels=16, outputs=5):
    """A 1x1 convolution to `channels` before the text's head: 16x fewer Dense weights.

    The 1x1 convolution keeps where things are (the box needs it, a global pooling would
    lose it) and shrinks what the first Dense layer sees from 96-128 channels to 16.
    """
    head = nn.HybridSequential(prefix='head_')
    with head.name_scope():
        head.add(nn.Conv2D(channels, 1, activation='relu'), nn.Flatten(),
                 nn.Dense(200, activation='relu'), nn.Dense(outputs))
    return head
