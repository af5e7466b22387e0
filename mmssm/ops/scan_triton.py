"""Triton path of the selective scan (``impl='triton'``, CUDA tensors).

:class:`SelectiveScanTritonFunction` is the ``autograd.Function`` of the core
``y, last = scan(u, dt, A, B, C, perm)``: it calls the launch helpers of
:mod:`mmssm.kernels.selective_scan` (which holds the kernels and imports
nothing of mmssm) and keeps what the backward needs; :func:`selective_scan_triton`
puts the elementwise prologue and epilogue of
:func:`mmssm.ops.scan_common.run_scan_function` around it, exactly as the CPU
path does. This module imports triton; :func:`mmssm.ops.selective_scan`
imports it on the first Triton call only. The kernels run on CPU tensors
under ``TRITON_INTERPRET=1`` (how the tests check them).
"""
import torch

from ..kernels.selective_scan import scan_backward, scan_forward
from .scan_common import (fill_grad_outputs, prepare_scan_inputs,
                          run_scan_function)

__all__ = ['selective_scan_triton', 'SelectiveScanTritonFunction']


class SelectiveScanTritonFunction(torch.autograd.Function):
    """``y, last = scan(u, dt, A, B, C)`` with the Triton kernels.

    Inputs as :class:`mmssm.ops.scan_cpu.SelectiveScanCPUFunction`: ``u``,
    ``dt`` ``(Bt, D, L)``, ``A`` ``(D, N)``, ``B``, ``C`` ``(Bt, G, N, L)``,
    ``perm`` ``(K, L)``; ``block_d``, ``block_l`` and ``split_l`` override the
    channels per program, the tile length and the splits per sequence (None:
    automatic). The kernels compute in float32.
    """

    @staticmethod
    def forward(ctx, u, dt, A, B, C, perm, block_d, block_l, split_l):
        u, dt, A, B, C, perm = prepare_scan_inputs(u, dt, A, B, C, perm)
        y, last, ckpt, plan = scan_forward(u, dt, A, B, C, perm, block_d,
                                           block_l, split_l)
        ctx.save_for_backward(u, dt, A, B, C, perm, ckpt)
        ctx.plan = plan
        return y.to(u.dtype), last.to(u.dtype)

    @staticmethod
    def backward(ctx, gy, glast):
        u, dt, A, B, C, perm, ckpt = ctx.saved_tensors
        gy, glast = fill_grad_outputs(u, A.shape[1], gy, glast)
        du, ddt, da, db, dc = scan_backward(u, dt, A, B, C, perm, ckpt,
                                            ctx.plan, gy.contiguous(),
                                            glast.float())
        return (du.to(u.dtype), ddt.to(dt.dtype), da.to(A.dtype),
                db.to(B.dtype), dc.to(C.dtype), None, None, None, None)


def selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                          return_last_state, perm, block_d=None, block_l=None,
                          split_l=None):
    """Triton selective scan on checked inputs (see
    :func:`mmssm.ops.selective_scan`); ``block_d``/``block_l`` override the
    channels per program and the tile length (tests use small tiles),
    ``split_l`` the number of splits per sequence (split-L mode; None chooses
    from the batch, the channels and the GPU's multiprocessors)."""
    if z is not None and z.shape[1] != u.shape[1]:
        z = z.repeat(1, u.shape[1] // z.shape[1], 1)
    return run_scan_function(SelectiveScanTritonFunction,
                             (block_d, block_l, split_l), u, delta, A, B, C,
                             D, z, delta_bias, delta_softplus,
                             return_last_state, perm, backend='triton')
