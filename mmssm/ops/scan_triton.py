"""Triton path of the selective scan (``impl='triton'``, CUDA tensors).

:class:`SelectiveScanTritonFusedFunction` is the ``autograd.Function`` of the
whole op, ``out = (scan(u, softplus(delta + delta_bias), A, B, C) + D * u) *
silu(z)``, around the fused kernels of :mod:`mmssm.kernels.selective_scan`:
``delta_bias``, softplus, the ``D`` skip and the gate are computed inside the
kernels (forward and backward), the inputs are read in their own dtype and
through their strides (no fp32 or contiguous copies), and a gate shared by
the channel chunks (``z`` ``(B, D // R, L)``) is read, not repeated. This is
what :func:`selective_scan_triton` runs eagerly.

:class:`SelectiveScanTritonFunction` is the core ``y, last = scan(u, dt, A,
B, C, perm)`` with the same kernels (no bias, softplus, ``D`` or gate): what
the torch custom op of :mod:`mmssm.ops.scan_custom_op` calls while a model is
compiled or exported, with the prologue and epilogue of
:func:`mmssm.ops.scan_common.run_scan_function` around it as for the CPU path.

This module imports triton; :func:`mmssm.ops.selective_scan` imports it on
the first Triton call only. The kernels run on CPU tensors under
``TRITON_INTERPRET=1`` (how the tests check them).
"""
import torch

from ..kernels.selective_scan import (fused_scan_backward, fused_scan_forward,
                                  order_kinds, plan_scan)
from .scan_common import (fill_grad_outputs, is_scripting,
                          run_scan_function)

__all__ = [
    'selective_scan_triton', 'SelectiveScanTritonFunction',
    'SelectiveScanTritonFusedFunction'
]


def _orders(perm: torch.Tensor, device: torch.device):
    """``perm`` as contiguous int32 on ``device`` and the kind of each order
    (:func:`mmssm.kernels.selective_scan.order_kinds`), remembered on the order
    tensor itself (the named orders are cached tensors, so this runs once
    per order; no value is read on the host)."""
    memo = None if is_scripting() else getattr(perm, '_mmssm_triton', None)
    if memo is not None and memo[0] == (perm._version, device):
        return memo[1], memo[2]
    perm32 = perm.to(device=device, dtype=torch.int32).contiguous()
    kinds = order_kinds(perm32)
    # not remembered under inference_mode: inference tensors cannot be saved
    # for a later training call's backward
    if not (is_scripting() or torch.is_inference_mode_enabled()):
        try:
            perm._mmssm_triton = ((perm._version, device), perm32, kinds)
        except (AttributeError, RuntimeError):  # e.g. inference tensors
            pass
    return perm32, kinds


def _plan(u, A, B4, perm, opts):
    """The launch plan from ``opts = (block_d, chunk, split_l[, dict of
    other plan_scan fields])``."""
    block_d, chunk, split_l = opts[:3]
    kw = dict(block_d=block_d, chunk=chunk, split_l=split_l)
    if len(opts) > 3 and opts[3]:
        kw.update({k: v for k, v in opts[3].items() if v is not None})
    return plan_scan(u.shape[0], u.shape[1], u.shape[2], A.shape[1],
                     perm.shape[0], B4.shape[1], u.device, **kw)


class SelectiveScanTritonFusedFunction(torch.autograd.Function):
    """``out, last = (scan + D * u) * silu(z)`` with the fused kernels.

    Args (forward): ``u``, ``delta`` ``(Bt, D, L)``; ``A`` ``(D, N)``;
    ``B``, ``C`` ``(Bt, G, N, L)``; ``Dskip``, ``bias`` ``(D,)`` or None;
    ``z`` ``(Bt, DZ, L)`` or None; ``softplus`` (bool); ``perm`` ``(K, L)``;
    ``opts`` ``(block_d, chunk, split_l[, plan overrides])``. ``out`` has
    ``u``'s dtype, ``last`` is float32.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, Dskip, z, bias, softplus, perm,
                opts):
        perm32, kinds = _orders(perm, u.device)
        A32 = A.float().contiguous()
        d32 = None if Dskip is None else Dskip.float().contiguous()
        b32 = None if bias is None else bias.float().contiguous()
        plan = _plan(u, A32, B, perm32, opts)
        out, last, ckpt = fused_scan_forward(u, delta, A32, B, C, d32, z, b32,
                                             softplus, perm32, kinds, plan)
        ctx.save_for_backward(u, delta, A32, B, C, d32, z, b32, perm32,
                              kinds, ckpt)
        ctx.softplus, ctx.plan = softplus, plan
        ctx.dtypes = (A.dtype, B.dtype, C.dtype,
                      None if Dskip is None else Dskip.dtype,
                      None if bias is None else bias.dtype)
        return out, last

    @staticmethod
    def backward(ctx, gout, glast):
        u, delta, A32, B, C, d32, z, b32, perm32, kinds, ckpt = \
            ctx.saved_tensors
        gout, glast = fill_grad_outputs(u, A32.shape[1], gout, glast)
        du, ddl, dz, da, db, dc, dd, dbias = fused_scan_backward(
            u, delta, A32, B, C, d32, z, b32, ctx.softplus, perm32, kinds,
            ctx.plan, ckpt, gout, glast)
        a_dt, b_dt, c_dt, d_dt, bias_dt = ctx.dtypes
        return (du, ddl, da.to(a_dt), db.to(b_dt), dc.to(c_dt),
                None if dd is None else dd.to(d_dt), dz,
                None if dbias is None else dbias.to(bias_dt), None, None,
                None)


class SelectiveScanTritonFunction(torch.autograd.Function):
    """Core ``y, last = scan(u, dt, A, B, C)`` with the fused kernels (no
    bias, softplus, ``D`` or gate): the Triton core of the custom op.

    Inputs as :class:`mmssm.ops.scan_cpu.SelectiveScanCPUFunction`: ``u``,
    ``dt`` ``(Bt, D, L)``, ``A`` ``(D, N)``, ``B``, ``C`` ``(Bt, G, N, L)``,
    ``perm`` ``(K, L)``; ``block_d``, ``block_l`` (the chunk) and ``split_l``
    override the plan (None: automatic).
    """

    @staticmethod
    def forward(ctx, u, dt, A, B, C, perm, block_d, block_l, split_l):
        perm32, kinds = _orders(perm, u.device)
        A32 = A.float().contiguous()
        plan = _plan(u, A32, B, perm32, (block_d, block_l, split_l))
        y, last, ckpt = fused_scan_forward(u, dt, A32, B, C, None, None, None,
                                           False, perm32, kinds, plan)
        ctx.save_for_backward(u, dt, A32, B, C, perm32, kinds, ckpt)
        ctx.plan, ctx.a_dtype = plan, A.dtype
        return y, last.to(u.dtype)

    @staticmethod
    def backward(ctx, gy, glast):
        u, dt, A32, B, C, perm32, kinds, ckpt = ctx.saved_tensors
        gy, glast = fill_grad_outputs(u, A32.shape[1], gy, glast)
        du, ddt, _, da, db, dc, _, _ = fused_scan_backward(
            u, dt, A32, B, C, None, None, None, False, perm32, kinds,
            ctx.plan, ckpt, gy, glast)
        return (du, ddt, da.to(ctx.a_dtype), db.to(B.dtype), dc.to(C.dtype),
                None, None, None, None)


def selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                          return_last_state, perm, block_d=None, block_l=None,
                          split_l=None, plan=None):
    """Triton selective scan on checked inputs (see
    :func:`mmssm.ops.selective_scan`).

    ``block_d``/``block_l`` override the channels per program and the chunk
    (checkpoint spacing; tests use small ones), ``split_l`` the number of
    splits per sequence (None chooses from the batch, the channels and the
    GPU's multiprocessors), ``plan`` (dict) any other field of
    :func:`mmssm.kernels.selective_scan.plan_scan` (benchmarks). ``z`` may be
    ``(B, D // R, L)`` (a gate shared by ``R`` channel chunks). While a
    model is compiled or exported the core custom op runs instead, with the
    elementwise parts around it.
    """
    if perm is None:
        perm = torch.arange(u.shape[-1], device=u.device)[None]
    if torch.compiler.is_compiling():
        if z is not None and z.shape[1] != u.shape[1]:
            z = z.repeat(1, u.shape[1] // z.shape[1], 1)
        return run_scan_function(SelectiveScanTritonFunction,
                                 (block_d, block_l, split_l), u, delta, A, B,
                                 C, D, z, delta_bias, delta_softplus,
                                 return_last_state, perm, backend='triton')
    B4 = B if B.dim() == 4 else B[:, None]
    C4 = C if C.dim() == 4 else C[:, None]
    out, last = SelectiveScanTritonFusedFunction.apply(
        u, delta, A, B4, C4, D, z, delta_bias, bool(delta_softplus), perm,
        (block_d, block_l, split_l, plan))
    return (out, last) if return_last_state else out
