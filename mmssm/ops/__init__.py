from .selective_scan import (SCAN_IMPLS, SCAN_ORDERS, resolve_scan_order,
                             selective_scan, selective_scan_ref)

__all__ = [
    'selective_scan', 'selective_scan_ref', 'resolve_scan_order',
    'SCAN_ORDERS', 'SCAN_IMPLS'
]
