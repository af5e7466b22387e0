"""CPU path of the selective scan: an ``autograd.Function`` with an explicit
backward and bounded memory.

The scan itself (``u``, ``dt``, ``A``, ``B``, ``C`` -> ``y``, last state) runs in
:class:`SelectiveScanCPUFunction`; ``delta_bias``, softplus, the ``D`` skip and
the ``z`` gate are elementwise on ``(B, D, L)`` tensors and are left to autograd
around it. Memory: the forward keeps the inputs, the output and one state
``(B, D, N)`` every ``every`` visited tokens (``O(B * D * L + B * D * N * L /
every)``); the backward recomputes one segment of states at a time, like the
mamba_ssm CUDA kernel, instead of keeping the ``(B, D, L, N)`` states.

Two engines compute it:

* numba (when importable, the default): compiled, vectorised over the
  channels of a block of 16, the (batch, block) items split over
  ``torch.get_num_threads()`` Python threads (the kernels release the GIL;
  numba's own threading layer is not used); the tokens
  are read and written through the order index, in the layout the op gets
  them: no permuted or transposed copies.
* torch (fallback when numba is missing, or ``MMSSM_SCAN_CPU_ENGINE=torch``):
  the same algorithm as a Python loop over the tokens, vectorised over
  ``(B, D, N)``; correct but several times slower.

Computation is in float32 for float32/float16/bfloat16 inputs and in float64
for float64 inputs (for ``gradcheck``). The elementwise prologue and epilogue
and the first lines of the Function's forward and backward are shared with the
Triton path (:mod:`mmssm.ops.scan_common`). :func:`mmssm.ops.selective_scan`
imports this module on its first CPU call; without numba it imports all the
same and uses the torch engine.
"""
import math
import os

import torch
from torch import Tensor

from .cpu_threads import run_parallel
from .scan_common import (cpu_fast_path_allowed, fill_grad_outputs,
                          prepare_scan_inputs, run_scan_function)
from .scan_order import channel_index

try:
    from . import _scan_numba
except ImportError:  # numba or llvmlite missing: the torch engine is used
    _scan_numba = None

__all__ = ['selective_scan_cpu', 'SelectiveScanCPUFunction', 'cpu_engine']

#: Environment variable selecting the engine (``numba`` or ``torch``).
ENGINE_ENV = 'MMSSM_SCAN_CPU_ENGINE'
#: Tokens between two saved states (the backward recomputes that many).
CKPT_EVERY = 64
_BLOCK = 16


def cpu_engine() -> str:
    """The engine the CPU path uses now: ``'numba'`` or ``'torch'``."""
    engine = os.environ.get(ENGINE_ENV, '') or (
        'numba' if _scan_numba is not None else 'torch')
    if engine not in ('numba', 'torch'):
        raise ValueError(f"{ENGINE_ENV} must be 'numba' or 'torch', got "
                         f'{engine!r}')
    if engine == 'numba' and _scan_numba is None:
        raise ImportError(f'{ENGINE_ENV}=numba but numba is not importable')
    return engine


def _block_plan(dim: int, groups: int, num_orders: int):
    """Split the channels into blocks of one group and one order each.

    Returns four int64 tensors (start, length, group, order) of the blocks.
    """
    per_group, per_order = dim // groups, dim // num_orders
    seg = math.gcd(per_group, per_order)
    start, length, group, order = [], [], [], []
    for s in range(0, dim, seg):
        for b in range(s, s + seg, _BLOCK):
            start.append(b)
            length.append(min(_BLOCK, s + seg - b))
            group.append(b // per_group)
            order.append(b // per_order)
    return tuple(
        torch.tensor(x, dtype=torch.int64)
        for x in (start, length, group, order))


def _nb(x: Tensor):
    """A kernel argument: the tensor itself (``run_parallel`` hands its
    address to a launch, or its numpy view to a direct call)."""
    return x.detach()


class SelectiveScanCPUFunction(torch.autograd.Function):
    """``y, last = scan(u, dt, A, B, C)`` on the CPU, explicit backward.

    Inputs are ``u``, ``dt`` ``(Bt, D, L)`` (``dt`` after bias and softplus),
    ``A`` ``(D, N)``, ``B``, ``C`` ``(Bt, G, N, L)``, all of one float dtype,
    and ``perm`` ``(K, L)`` int64 (the visiting order of each channel chunk).
    """

    @staticmethod
    def forward(ctx, u, dt, A, B, C, perm, engine):
        # Under torch.jit tracing (FLOP counting) the call is recorded as one
        # PythonOp; its body runs untraced so that sizes are plain ints.
        tracing_state = torch._C._get_tracing_state()
        if tracing_state is None:
            return SelectiveScanCPUFunction._forward(ctx, u, dt, A, B, C,
                                                     perm, engine)
        torch._C._set_tracing_state(None)
        try:
            return SelectiveScanCPUFunction._forward(ctx, u, dt, A, B, C,
                                                     perm, engine)
        finally:
            torch._C._set_tracing_state(tracing_state)

    @staticmethod
    def _forward(ctx, u, dt, A, B, C, perm, engine):
        u, dt, A, B, C, perm = prepare_scan_inputs(u, dt, A, B, C, perm)
        nbatch, dim, length = u.shape
        groups, nstate = B.shape[1], A.shape[1]
        every = min(CKPT_EVERY, length)
        nseg = -(-length // every)
        if engine == 'numba':
            plan = _block_plan(dim, groups, perm.shape[0])
            y = torch.empty_like(u)
            ckpt = u.new_empty(nbatch, nseg, nstate, dim)
            last = u.new_empty(nbatch, nstate, dim)
            run_parallel(_scan_numba.scan_fwd,
                          (_nb(u), _nb(dt), _nb(A.t().contiguous()), _nb(B),
                           _nb(C), _nb(perm), *(_nb(x) for x in plan), every,
                           _nb(y), _nb(ckpt), _nb(last)),
                          nbatch * plan[0].shape[0])
            last = last.transpose(1, 2).contiguous()
        else:
            y, ckpt, last = _torch_fwd(u, dt, A, B, C, perm, every)
        ctx.save_for_backward(u, dt, A, B, C, perm, ckpt)
        ctx.engine = engine
        ctx.every = every
        return y, last

    @staticmethod
    def backward(ctx, gy, glast):
        u, dt, A, B, C, perm, ckpt = ctx.saved_tensors
        nbatch, dim, length = u.shape
        groups, nstate = B.shape[1], A.shape[1]
        gy, glast = fill_grad_outputs(u, nstate, gy, glast)
        if ctx.engine == 'numba':
            plan = _block_plan(dim, groups, perm.shape[0])
            nblk = plan[0].shape[0]
            gy = gy.contiguous()
            du = torch.empty_like(u)
            ddt = torch.empty_like(u)
            dat = u.new_empty(nbatch, nstate, dim)
            dbp = u.new_empty(nbatch, nblk, nstate, length)
            dcp = u.new_empty(nbatch, nblk, nstate, length)
            run_parallel(
                _scan_numba.scan_bwd,
                (_nb(u), _nb(dt), _nb(A.t().contiguous()), _nb(B), _nb(C),
                 _nb(perm), *(_nb(x) for x in plan), ctx.every, _nb(ckpt),
                 _nb(gy), _nb(glast.transpose(1, 2).contiguous()), _nb(du),
                 _nb(ddt), _nb(dat), _nb(dbp), _nb(dcp)), nbatch * nblk)
            # Sum the per-block partials over the blocks of each group.
            dB = u.new_zeros(nbatch, groups, nstate, length)
            dC = u.new_zeros(nbatch, groups, nstate, length)
            dB.index_add_(1, plan[2], dbp)
            dC.index_add_(1, plan[2], dcp)
            dA = dat.sum(0).t()
        else:
            du, ddt, dA, dB, dC = _torch_bwd(u, dt, A, B, C, perm, ckpt,
                                             ctx.every, gy, glast)
        return du, ddt, dA, dB, dC, None, None


def _channel_plan(perm: Tensor, dim: int, groups: int):
    """Per-channel token order ``(D, L)`` and group ``(D,)``."""
    tok = channel_index(perm, dim)
    grp = torch.arange(dim) // (dim // groups)
    return tok, grp


def _torch_fwd(u, dt, A, B, C, perm, every):
    """Torch engine forward; ``ckpt`` is ``(Bt, nseg, D, N)``."""
    nbatch, dim, length = u.shape
    tok, grp = _channel_plan(perm, dim, B.shape[1])
    ch = torch.arange(dim)
    b_t, c_t = B.transpose(2, 3), C.transpose(2, 3)  # (Bt, G, L, N)
    h = u.new_zeros(nbatch, dim, A.shape[1])
    y = torch.empty_like(u)
    ckpt = []
    for t in range(length):
        if t % every == 0:
            ckpt.append(h)
        p = tok[:, t]
        dtv, uv = dt[:, ch, p], u[:, ch, p]
        h = torch.exp(dtv[..., None] * A) * h + \
            (dtv * uv)[..., None] * b_t[:, grp, p]
        y[:, ch, p] = (h * c_t[:, grp, p]).sum(-1)
    return y, torch.stack(ckpt, 1), h


def _torch_bwd(u, dt, A, B, C, perm, ckpt, every, gy, glast):
    """Torch engine backward (segment recompute, then reverse walk)."""
    nbatch, dim, length = u.shape
    groups = B.shape[1]
    tok, grp = _channel_plan(perm, dim, groups)
    ch = torch.arange(dim)
    bidx = torch.arange(nbatch)[:, None]
    b_t, c_t = B.transpose(2, 3), C.transpose(2, 3)
    du, ddt = torch.zeros_like(u), torch.zeros_like(u)
    dA = torch.zeros_like(A)
    dB = u.new_zeros(nbatch, groups, length, A.shape[1])
    dC = torch.zeros_like(dB)
    gh = glast.clone()
    for c in range(ckpt.shape[1] - 1, -1, -1):
        t0, t1 = c * every, min(length, (c + 1) * every)
        hs, avs = [ckpt[:, c]], []
        for t in range(t0, t1):
            p = tok[:, t]
            dtv = dt[:, ch, p]
            a = torch.exp(dtv[..., None] * A)
            avs.append(a)
            hs.append(a * hs[-1] +
                      (dtv * u[:, ch, p])[..., None] * b_t[:, grp, p])
        for t in range(t1 - 1, t0 - 1, -1):
            i = t - t0
            p = tok[:, t]
            dtv, uv, gyv = dt[:, ch, p], u[:, ch, p], gy[:, ch, p]
            bv, cv = b_t[:, grp, p], c_t[:, grp, p]
            a, hprev = avs[i], hs[i]
            gh = gh + gyv[..., None] * cv
            dC.index_put_((bidx, grp[None], p[None]), gyv[..., None] * hs[i + 1],
                          accumulate=True)
            gdt = gh * dtv[..., None]
            dB.index_put_((bidx, grp[None], p[None]), gdt * uv[..., None],
                          accumulate=True)
            du[:, ch, p] = (gdt * bv).sum(-1)
            ahp = gh * a * hprev
            ddt[:, ch, p] = (ahp * A + gh * bv * uv[..., None]).sum(-1)
            dA += (ahp * dtv[..., None]).sum(0)
            gh = gh * a
    return du, ddt, dA, dB.transpose(2, 3), dC.transpose(2, 3)


def _inference_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                       return_last_state, perm):
    """Fused forward of the numba engine when nothing needs a gradient.

    One pass computes ``softplus(delta + delta_bias)``, the scan, the ``D``
    skip and the ``z`` gate, reading every input through the order index,
    with no checkpoints and no autograd graph.
    """
    nbatch, dim, length = u.shape
    if perm is None:
        perm = torch.arange(length)[None]
    B4 = (B if B.dim() == 4 else B[:, None]).contiguous()
    C4 = (C if C.dim() == 4 else C[:, None]).contiguous()
    plan = _block_plan(dim, B4.shape[1], perm.shape[0])
    u, delta = u.contiguous(), delta.contiguous()
    zero = u.new_zeros(dim)
    bias = zero if delta_bias is None else delta_bias.float().contiguous()
    dskip = zero if D is None else D.float().contiguous()
    zz = u.new_zeros(1, 1, 1) if z is None else z.contiguous()
    y = torch.empty_like(u)
    last = u.new_empty(nbatch, A.shape[1], dim)
    run_parallel(_scan_numba.scan_fwd_infer,
                  (_nb(u), _nb(delta), _nb(A.float().t().contiguous()),
                   _nb(B4), _nb(C4), _nb(perm.contiguous()),
                   *(_nb(x) for x in plan), _nb(bias), _nb(dskip), _nb(zz),
                   bool(delta_softplus), z is not None, _nb(y), _nb(last)),
                  nbatch * plan[0].shape[0])
    if return_last_state:
        return y, last.transpose(1, 2)
    return y


def _inference_applies(tensors) -> bool:
    """The fused inference forward applies: numba engine, float32 inputs,
    no gradient to record, not traced, fast paths not switched off."""
    if cpu_engine() != 'numba' or not cpu_fast_path_allowed():
        return False
    if any(x.dtype != torch.float32 for x in tensors):
        return False
    return not (torch.is_grad_enabled()
                and any(x.requires_grad for x in tensors))


def selective_scan_cpu(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                       return_last_state, perm):
    """CPU selective scan on checked inputs (see :func:`selective_scan`).

    ``perm`` is ``None`` (forward) or the ``(K, L)`` orders from
    :func:`~mmssm.ops.resolve_scan_order`. When no input needs a gradient
    (``torch.no_grad()``, ``torch.inference_mode()`` or frozen inputs) and
    the inputs are float32, the numba engine runs the fused inference forward
    (:func:`_inference_forward`); otherwise the autograd Function.
    """
    tensors = [
        x for x in (u, delta, A, B, C, D, z, delta_bias) if x is not None
    ]
    if _inference_applies(tensors):
        return _inference_forward(u, delta, A, B, C, D, z, delta_bias,
                                  delta_softplus, return_last_state, perm)
    return run_scan_function(SelectiveScanCPUFunction, (cpu_engine(), ), u,
                             delta, A, B, C, D, z, delta_bias, delta_softplus,
                             return_last_state, perm, backend='cpu')
