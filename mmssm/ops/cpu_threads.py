"""Work splitting of mmssm's CPU inference kernels over threads.

The numba kernels release the GIL; :func:`run_parallel` splits their work
items into contiguous ranges, runs all but the first on a thread pool and the
first on the calling thread. numba's own threading layers are not used (its
workqueue layer spins and costs milliseconds per launch on a busy machine;
its OpenMP layer links another copy of libgomp than torch's).

:func:`exclusive_threads` lets a whole inference pass run on these threads
alone: torch's OpenMP team is set to one thread for its duration, and the
matrix products of the fused layers are split by rows over the pool
(:func:`parallel_linear`). Without it, every numba kernel that follows a
torch operator shares a core with an OpenMP worker that spins for
milliseconds waiting for the next parallel region (GNU OpenMP's default),
which cost ~20 % of Vim-Ti's time at 1024x1024 on a 2-core machine.
"""
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    'run_parallel', 'num_threads', 'exclusive_threads', 'parallel_linear',
    'launch_is_cheap'
]

_EXECUTORS = {}
# GNU OpenMP cannot start a parallel region in a process forked after the
# parent used its team (the child waits for threads that were not copied;
# torch's own operators hang there too): forked children keep the kernels on
# the thread pool, which is built per process.
_FORKED = []
if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=lambda: _FORKED.append(True))
_STATE = threading.local()
_LOCK = threading.Lock()
_ACTIVE = 0


def num_threads() -> int:
    """Threads the kernels use: torch's count, or the count saved by an
    active :func:`exclusive_threads`."""
    return getattr(_STATE, 'threads', None) or torch.get_num_threads()


def launch_is_cheap() -> bool:
    """Whether numba kernels run as parallel regions of torch's OpenMP team
    (:mod:`mmssm.ops._omp_launch`: a launch costs microseconds, so even
    light kernels are worth splitting) rather than on the thread pool."""
    if _FORKED:
        return False
    try:
        from . import _omp_launch
    except ImportError:  # numba missing
        return False
    return _omp_launch.available()


def run_parallel(kernel, args, num_items: int, min_items_per_thread: int = 1):
    """Run ``kernel(*args, begin, end)`` over ``num_items`` work items.

    The items are split into up to :func:`num_threads` contiguous ranges.
    A numba kernel's array arguments may be given as CPU tensors (cheaper
    to pass to a launch than numpy arrays). A numba kernel whose arguments
    are contiguous arrays (or tensors) and scalars runs
    as a parallel region of torch's own OpenMP team
    (:mod:`mmssm.ops._omp_launch`); anything else runs on a thread pool,
    the calling thread taking the first range itself. Every range has
    finished (or failed) before this returns or raises.
    """
    threads = max(1, min(num_threads(),
                         num_items // max(1, min_items_per_thread)))
    numba_kernel = hasattr(kernel, 'py_func')
    if threads > 1 and numba_kernel and not _FORKED:
        from ._omp_launch import launcher
        launch = launcher(kernel, args)
        if launch is not None:
            launch(num_items, threads)
            return
    if numba_kernel:  # numba takes the arrays that tensor arguments view
        args = tuple(
            a.detach().numpy() if isinstance(a, Tensor) else a for a in args)
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
        for f in futures:
            f.exception()  # waits
    for f in futures:
        f.result()


@contextlib.contextmanager
def exclusive_threads():
    """Run the block with torch's intra-op threads set to one and the
    kernels (and :func:`parallel_linear`) on :func:`num_threads` threads.

    Restores torch's thread count on exit. Nested uses are no-ops; while
    one is active in any thread, others in other threads are no-ops too
    (the thread count is process-wide).
    """
    global _ACTIVE
    if getattr(_STATE, 'threads', None):
        yield
        return
    with _LOCK:
        first = _ACTIVE == 0
        _ACTIVE += 1
    threads = torch.get_num_threads()
    if not first or threads == 1:
        try:
            yield
        finally:
            with _LOCK:
                _ACTIVE -= 1
        return
    _STATE.threads = threads
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        _STATE.threads = None
        with _LOCK:
            _ACTIVE -= 1


def _mm_rows(x2, weight, bias, out, inference, begin, end):
    # grad and inference modes are per thread: the pool's threads have grad
    # on and inference mode off, and an inference tensor (``out`` under
    # ``torch.inference_mode()``) may only be written in inference mode
    with (torch.inference_mode() if inference else torch.no_grad()):
        _mm_rows_no_grad(x2, weight, bias, out, begin, end)


def _mm_rows_no_grad(x2, weight, bias, out, begin, end):
    if bias is None:
        torch.mm(x2[begin:end], weight.t(), out=out[begin:end])
    else:
        torch.addmm(bias, x2[begin:end], weight.t(), out=out[begin:end])


def parallel_linear(x: Tensor, weight: Tensor,
                    bias: Optional[Tensor] = None) -> Tensor:
    """``F.linear(x, weight, bias)`` with the rows split over the kernel
    threads inside :func:`exclusive_threads` (plain ``F.linear`` outside
    it, or for small inputs)."""
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    threads = getattr(_STATE, 'threads', None)
    if not threads or rows < 2 * threads or torch.is_grad_enabled():
        return F.linear(x, weight, bias)
    x2 = x.reshape(rows, x.shape[-1])
    out = x.new_empty(rows, weight.shape[0])
    run_parallel(_mm_rows, (x2, weight, bias, out,
                            torch.is_inference_mode_enabled()), rows,
                 min_items_per_thread=8)
    return out.view(*x.shape[:-1], weight.shape[0])
