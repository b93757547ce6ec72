"""New output heads put on a truncated base network (the detection chapter's three): the
text's `build_new_head` (saved from the chapter, see bookgen.saved) and two of the port's."""
from mxnet.gluon import nn


# @saved from chapters/simple_object_detection.py: edit it there, then `python -m bookgen.saved`
def build_new_head(outputs=5):
    """The text's buildNewHead (listing 5.9): Flatten -> Dense(200, relu) -> Dense(5)."""
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


def conv3x3_head(channels=32, outputs=5, dropout=0.5):
    """A 1x1 convolution to `channels`, two 3x3 convolutions, then the text's head.

    Each 3x3 convolution combines a grid cell with its neighbours: a box's edges fall in
    different cells of the small grid (8x8 at 128 px), and reading them together locates
    them more finely than the Dense layer alone learns to from a few thousand scenes.
    Dropout before the Dense layer, because this head otherwise memorises its scenes.
    """
    head = nn.HybridSequential(prefix='head_')
    with head.name_scope():
        head.add(nn.Conv2D(channels, 1, activation='relu'),
                 nn.Conv2D(channels, 3, padding=1, activation='relu'),
                 nn.Conv2D(channels, 3, padding=1, activation='relu'),
                 nn.Flatten(), nn.Dropout(dropout),
                 nn.Dense(200, activation='relu'), nn.Dense(outputs))
    return head
