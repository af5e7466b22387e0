"""CPU path of the selective scan (placeholder: falls back to the reference)."""
from .selective_scan import _scan_ref


def selective_scan_cpu(*args):
    return _scan_ref(*args)
