"""OpenMP thread count, set before MXNet is imported.

MXNet 1.9.1 starts OpenMP with half the cores unless OMP_NUM_THREADS is set, which measured
2x slower on a 2-core machine. A value the user set is kept.
"""
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
