"""Which devices to train on: GPUs when present, else the CPU, or what the user asks for."""
import os

from .errors import UserError

# CPU contexts share the machine's cores and MXNet's engine: several of them only stand in for
# GPUs, to run the multi-device code path (each batch split, gradients summed) on a laptop.
# 8 is as many GPUs as one machine usually holds; more contexts test nothing 8 do not, and
# each one adds a copy of the parameters and a share of every batch to split and sum.
MAX_CPU_CONTEXTS = 8

DEVICES_HELP = ("devices to train on: 'auto' (all GPUs, else the CPU), 'cpu', 'cpu:N' "
                "(N CPU contexts, up to %d, to run the multi-device path without GPUs), "
                "'gpu:0,1'. Default: $MX_DEVICES or 'auto'" % MAX_CPU_CONTEXTS)


def usable_cores():
    """The cores this process may run on (its affinity mask; all cores where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return os.cpu_count() or 1


def most_processes():
    """The most worker processes an option may ask this machine for: 4 per usable core, and at
    least 8. Each is a whole Python process holding MXNet (about 250 MB); past a few per core
    they only queue for a core, and a few hundred would exhaust the memory of most machines."""
    return max(8, 4 * usable_cores())


def try_gpu(i=0):
    """gpu(i) if it exists, else cpu()."""
    import mxnet as mx
    return mx.gpu(i) if mx.context.num_gpus() > i else mx.cpu()


def try_all_gpus():
    """All GPUs, or [cpu()] when there is none (the textbook's behaviour)."""
    import mxnet as mx
    gpus = [mx.gpu(i) for i in range(mx.context.num_gpus())]
    return gpus or [mx.cpu()]


def device_spec(spec):
    """('auto', None), ('cpu', N) or ('gpu', [indices]) for a --devices value that this
    machine can serve; a ValueError saying what to give instead for any other."""
    text = spec.strip().lower()
    if text == 'auto':
        return 'auto', None
    kind, _, rest = text.partition(':')
    if kind == 'cpu':
        if not rest:
            return 'cpu', 1
        if rest.isdigit() and int(rest) > 0:
            if int(rest) > MAX_CPU_CONTEXTS:
                raise ValueError('%r: at most cpu:%d (CPU contexts only stand in for GPUs; '
                                 'more share the same cores and test nothing more)'
                                 % (spec, MAX_CPU_CONTEXTS))
            return 'cpu', int(rest)
    elif kind == 'gpu':
        ids = rest.split(',') if rest else ['0']
        if all(i.strip().isdigit() for i in ids):
            ids = [int(i) for i in ids]
            if len(set(ids)) < len(ids):
                raise ValueError('%r names a GPU twice: give each index once' % spec)
            import mxnet as mx  # counting GPUs asks MXNet (and CUDA): only for a GPU spec
            available = mx.context.num_gpus()
            if max(ids) >= available:
                raise ValueError('%r: this machine has %d GPU(s); use cpu%s' % (
                    spec, available, ' or GPU indices below %d' % available if available else ''))
            return 'gpu', ids
    raise ValueError("%r not understood: use 'auto', 'cpu', 'cpu:N' or 'gpu:0,1'" % spec)


def parse_devices(spec=None):
    """Turn 'auto', 'cpu', 'cpu:2' or 'gpu:0,1' into a list of contexts.

    With no spec, $MX_DEVICES is used, then 'auto'.
    """
    import mxnet as mx
    spec = spec or os.environ.get('MX_DEVICES') or 'auto'
    try:
        kind, which = device_spec(spec)
    except ValueError as err:
        source = '' if spec != os.environ.get('MX_DEVICES') else ' ($MX_DEVICES)'
        raise UserError('devices %s%s' % (err, source)) from None
    if kind == 'auto':
        return try_all_gpus()
    if kind == 'cpu':
        return [mx.cpu(i) for i in range(which)] if which > 1 else [mx.cpu()]
    return [mx.gpu(i) for i in which]
