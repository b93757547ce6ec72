r"""Reproduction: a dist_sync worker's initial pull answered with the first gradient sum.

    python -m utils.training.launch -n 2 -- \
        python -m benchmarks.dist_init_order [--rounds 50] [--ordered]

What gluon.Trainer does on a 'dist_sync' kvstore with update_on_kvstore=False, in its first
`step`: kv.broadcast(key, weight, out=weight) for every parameter (rank 0 pushes its value,
a barrier, then every worker pulls), followed at once by kv.pushpull(key, gradient) for every
parameter. Nothing in MXNet orders a worker's pull of a key before its pushpull of that key
(they write different arrays), and the ps-lite bundled with MXNet 1.9.1 keeps a server's
incoming requests in a std::priority_queue on the request priority, which is 0 for both: equal
priorities come out in any order. When a server is slow (a loaded machine), it can merge both
workers' gradients before it serves a pull, and the pull returns the gradient sum, which
becomes that worker's weight.

Each round uses fresh keys, weights 1, 2, 3, 4 and gradients 100 x (rank + 1); a weight that
is not its initial value afterwards was overwritten (300 = the gradient sum of two workers).
--ordered waits for the pulled weights and passes a barrier before the first pushpull, which
is what utils.training.loop.init_distributed does. Run it with two busy processes beside it
(`python -c 'while 1: pass' &`) to see overwrites; an idle machine rarely shows them.
"""
import argparse

import utils  # noqa: F401  (sets OMP_NUM_THREADS before MXNet loads)
import mxnet as mx
import numpy as np

SHAPES = [(8, 6), (8,), (2, 8), (2,)]  # the test network's parameters


def one_round(kv, first_key, ordered):
    """Overwritten parameters of one first step, as (index, value) pairs."""
    keys = [first_key + i for i in range(len(SHAPES))]
    weights = [mx.nd.full(shape, 1.0 + i) for i, shape in enumerate(SHAPES)]
    grads = [mx.nd.full(shape, 100.0 * (kv.rank + 1)) for shape in SHAPES]
    for key, weight in zip(keys, weights):
        kv.broadcast(key, weight, out=weight)  # Trainer._init_params
    if ordered:
        for weight in weights:
            weight.wait_to_read()
        kv._barrier()
    for i, (key, grad) in enumerate(zip(keys, grads)):
        kv.pushpull(key, grad, priority=-i)  # Trainer._allreduce_grads
    return [(i, float(w.asnumpy().flat[0])) for i, w in enumerate(weights)
            if not np.all(w.asnumpy() == 1.0 + i)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=50)
    parser.add_argument('--ordered', action='store_true',
                        help='wait for the pulls and pass a barrier before the first push')
    args = parser.parse_args()
    kv = mx.kv.create('dist_sync')
    overwritten = []
    for r in range(args.rounds):
        overwritten += [(r,) + hit for hit in one_round(kv, r * len(SHAPES), args.ordered)]
    print('rank %d: %d rounds, %s, %d overwritten weights (round, parameter, value): %s'
          % (kv.rank, args.rounds, 'ordered' if args.ordered else 'as gluon.Trainer',
             len(overwritten), overwritten[:5]))


if __name__ == '__main__':
    main()
