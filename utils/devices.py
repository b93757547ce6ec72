"""Which devices to train on: GPUs when present, else the CPU, or what the user asks for."""
import os

import mxnet as mx

from .errors import UserError

DEVICES_HELP = ("devices to train on: 'auto' (all GPUs, else the CPU), 'cpu', 'cpu:N' "
                "(N CPU contexts, to run the multi-device path without GPUs), 'gpu:0,1'. "
                "Default: $MX_DEVICES or 'auto'")


def try_gpu(i=0):
    """gpu(i) if it exists, else cpu()."""
    return mx.gpu(i) if mx.context.num_gpus() > i else mx.cpu()


def try_all_gpus():
    """All GPUs, or [cpu()] when there is none (the textbook's behaviour)."""
    gpus = [mx.gpu(i) for i in range(mx.context.num_gpus())]
    return gpus or [mx.cpu()]


def parse_devices(spec=None):
    """Turn 'auto', 'cpu', 'cpu:2' or 'gpu:0,1' into a list of contexts.

    With no spec, $MX_DEVICES is used, then 'auto'.
    """
    spec = (spec or os.environ.get('MX_DEVICES') or 'auto').strip().lower()
    if spec == 'auto':
        return try_all_gpus()
    kind, _, rest = spec.partition(':')
    if kind == 'cpu':
        if not rest:
            return [mx.cpu()]
        if rest.isdigit() and int(rest) > 0:
            return [mx.cpu(i) for i in range(int(rest))]
    elif kind == 'gpu':
        ids = rest.split(',') if rest else ['0']
        if all(i.isdigit() for i in ids):
            available = mx.context.num_gpus()
            missing = [i for i in ids if int(i) >= available]
            if missing:
                raise UserError('devices %r: this machine has %d GPU(s); use --devices cpu '
                                'or a GPU index below %d' % (spec, available, available))
            return [mx.gpu(int(i)) for i in ids]
    raise UserError("devices %r not understood: use 'auto', 'cpu', 'cpu:N' or 'gpu:0,1'" % spec)
