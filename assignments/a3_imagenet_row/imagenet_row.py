"""Assignment 3: initialise a new output row from the ImageNet class of the same name."""
import utils


def class_index(classes, name):
    """Position of `name` in `classes`."""
    ### BEGIN SOLUTION
    if name not in classes:
        raise ValueError('no class named %r' % name)
    return list(classes).index(name)
    ### END SOLUTION


def init_output_row(new_output, pretrained_output, index, row):
    """Row `row` of new_output's weight and bias := row `index` of pretrained_output's."""
    ### BEGIN SOLUTION
    for name in ('weight', 'bias'):
        mine = getattr(new_output, name)
        theirs = getattr(pretrained_output, name).data()
        value = mine.data().copy()
        value[row] = theirs[index].as_in_context(value.context)
        mine.set_data(value)
    ### END SOLUTION


def hotdog_output(finetune_net, pretrained_net):
    """Row 0 of finetune_net's output from ImageNet's 'hotdog' row; returns that row's index."""
    ### BEGIN SOLUTION
    index = class_index(utils.imagenet_classes(), 'hotdog')
    init_output_row(finetune_net.output[0], pretrained_net.output[0], index, 0)
    return index
    ### END SOLUTION
