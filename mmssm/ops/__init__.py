"""Torch ops of mmssm: the selective scan (:mod:`.selective_scan`, which
describes the module layout) and its backends.

``import mmssm.ops`` needs torch only; numba (CPU kernels) and triton (GPU
kernels) are imported on first use and are optional.
"""
from .selective_scan import (SCAN_IMPLS, SCAN_ORDERS, resolve_scan_order,
                             selective_scan, selective_scan_ref)

__all__ = [
    'selective_scan', 'selective_scan_ref', 'resolve_scan_order',
    'SCAN_ORDERS', 'SCAN_IMPLS'
]
