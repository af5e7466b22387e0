"""Triton selective scan (placeholder: falls back to the reference)."""
from mmssm.ops.selective_scan import _scan_ref


def selective_scan_triton(*args):
    return _scan_ref(*args)
