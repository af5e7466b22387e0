"""Work splitting of mmssm's numba CPU kernels over threads.

The kernels release the GIL; :func:`run_parallel` splits their work items
into ``torch.get_num_threads()`` contiguous ranges, runs all but the first on
a thread pool and the first on the calling thread. numba's own threading
layers are not used (its workqueue layer spins and costs milliseconds per
launch on a busy machine).
"""
import os
from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = ['run_parallel']

_EXECUTORS = {}


def run_parallel(kernel, args, num_items: int, min_items_per_thread: int = 1):
    """Run ``kernel(*args, begin, end)`` over ``num_items`` work items.

    The items are split into up to ``torch.get_num_threads()`` contiguous
    ranges, run on a thread pool (the numba kernels release the GIL); the
    calling thread takes the first range itself.
    """
    threads = max(1, min(torch.get_num_threads(),
                         num_items // max(1, min_items_per_thread)))
    if threads == 1:
        kernel(*args, 0, num_items)
        return
    # Keyed by pid too: a forked child has none of its parent's threads.
    key = (os.getpid(), threads)
    if key not in _EXECUTORS:
        _EXECUTORS[key] = ThreadPoolExecutor(
            threads - 1, thread_name_prefix='mmssm_cpu')
    bounds = [num_items * i // threads for i in range(threads + 1)]
    futures = [
        _EXECUTORS[key].submit(kernel, *args, bounds[i], bounds[i + 1])
        for i in range(1, threads)
    ]
    try:
        kernel(*args, bounds[0], bounds[1])
    finally:
        # every range has finished (or failed) before the buffers are used
        # or freed; the first error is raised
        for f in futures:
            f.exception()
    for f in futures:
        f.result()
