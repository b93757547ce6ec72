"""OpenMP threads: how many MXNet's engine uses, and none extra for the Python thread.

MXNet 1.9.1 starts OpenMP with half the cores unless OMP_NUM_THREADS is set, which measured
2x slower on a 2-core machine. A value the user set is kept.
"""
import ctypes
import os


def default_omp_threads():
    """Set OMP_NUM_THREADS to the number of usable cores unless the user chose a value."""
    if 'OMP_NUM_THREADS' not in os.environ:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # macOS and Windows have no sched_getaffinity
            cores = os.cpu_count() or 1
        os.environ['OMP_NUM_THREADS'] = str(cores)
    return int(os.environ['OMP_NUM_THREADS'])


def serial_openmp_in_this_thread():
    """MXNet work done in the calling thread runs its OpenMP loops on that thread alone; the
    engine's threads, which do the training, keep OMP_NUM_THREADS. Call it from the Python
    thread after MXNet is imported (utils/__init__.py does).

    Why, measured on 2 cores: one `asnumpy` of a 10-element array on the Python thread took a
    mobilenet0.25 training loop at 96 px from 1800-1950 to 1090-1150 images/sec for the rest of
    the process (creating the pictures with `asnumpy`, as utils.decoded does, was enough); with
    this call it stays at 1710-1750, and decoding takes the same time. OMP_WAIT_POLICY=ACTIVE
    removes the slowdown too, which points at libgomp's waiting: once it counts more OpenMP
    threads in use than cores, a waiting thread spins 1000 times instead of 300000 before it
    sleeps, and each of a small net's many short parallel loops then pays for waking threads.
    Returns False where MXNet was built without the call.
    """
    from mxnet.base import _LIB
    setter = getattr(_LIB, 'MXSetNumOMPThreads', None)
    if setter is None:
        return False
    setter(ctypes.c_int(1))
    return True
