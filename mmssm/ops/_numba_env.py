"""Code-generation setting shared by mmssm's numba kernels (imported first).

LLVM tunes recent Intel CPUs to prefer 256-bit vectors even where AVX-512 is
available ("prefer-256-bit"); the scan kernels are bound by vector arithmetic
(``exp`` of every state), and 512-bit vectors make them ~1.4x faster on an
AVX-512 machine. Unless the user has set ``NUMBA_CPU_FEATURES`` (or numba has
already compiled something in this process, in which case nothing changes),
numba is told to use the host's features without that preference. On CPUs
without AVX-512 the flag has no effect. Numerics do not change (same
operations, wider vectors).
"""
import os

from numba.core import config


def _prefer_wide_vectors() -> None:
    if os.environ.get('NUMBA_CPU_FEATURES') or config.CPU_FEATURES:
        return
    try:
        import llvmlite.binding as llvm
        features = llvm.get_host_cpu_features().flatten()
    except Exception:  # noqa: BLE001 - an unknown host keeps numba's default
        return
    if '+avx512f' in features.split(','):
        config.CPU_FEATURES = features + ',-prefer-256-bit'


_prefer_wide_vectors()
