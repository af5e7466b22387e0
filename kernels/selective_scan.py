"""Triton forward and backward kernels of the selective scan (Mamba S6).

Design after the mamba_ssm CUDA kernel (Gu & Dao, "Mamba: Linear-Time Sequence
Modeling with Selective State Spaces", 2023): one program per (batch, block of
``BLOCK_D`` channels) keeps the ``(BLOCK_D, N)`` state in registers and walks
the sequence in tiles of ``BLOCK_L`` visited positions; inside a tile the linear
recurrence ``h_t = a_t * h_{t-1} + b_t`` is a ``tl.associative_scan`` and the
carry goes from tile to tile. Only the state at every tile boundary is saved
(``(B, L / BLOCK_L, D, N)``); the backward recomputes the states of one tile
from its boundary state and runs the reverse scan of ``dL/dh`` with the carry
going backwards, so memory is ``O(B * D * L)``, never ``O(B * D * L * N)``.

Scan orders are index loads: position ``t`` of channel ``d`` reads and writes
token ``perm[d // (D // K), t]``; nothing is permuted in memory. ``delta_bias``,
softplus, ``D`` and the ``z`` gate are elementwise and done around these
kernels by the caller.

This module holds only the kernels and their launch helpers
(:func:`scan_forward`, :func:`scan_backward`: allocate, pick the tiles and the
splits, launch); it imports torch and triton and nothing of mmssm. The
``autograd.Function`` that calls them and the public op are in
:mod:`mmssm.ops.scan_triton` and :mod:`mmssm.ops.selective_scan`.

Split-L mode, for the small-batch long-sequence regime (batch 2 at 1024x1024
gives too few (batch, channel block) programs to fill a GPU): a third grid axis
cuts the tiles of each sequence into ``S`` consecutive splits. The forward runs
in three steps: (1) every split scans its tiles from a zero state and stores
its end state and its decay ``exp(A * sum(dt))`` (the product of its ``a_t``);
(2) a short loop over the splits composes these affine maps into the true state
at the start of every split, ``h_{s+1} = decay_s * h_s + end_s``; (3) every
split scans again from its true start state, writing ``y`` and the tile
checkpoints. The backward does the same in reverse with ``dL/dh``, whose
recurrence ``g_t = gy_t C_t + a_{t+1} g_{t+1}`` is linear in the carry too.
Split mode costs about twice the arithmetic and gives ``S`` times the programs.

These kernels are tested on the CPU with ``TRITON_INTERPRET=1``; they have not
been run on a GPU by their author (no GPU was available).
"""
import torch
import triton
import triton.language as tl

__all__ = ['scan_forward', 'scan_backward']


@triton.jit
def _linear_combine(a_left, b_left, a_right, b_right):
    """Compose ``h -> a_left * h + b_left`` then ``h -> a_right * h + b_right``.
    """
    return a_left * a_right, a_right * b_left + b_right


@triton.jit
def _tile_inputs(u_ptr, dt_ptr, b_ptr, c_ptr, perm_ptr, pos, offs_d, offs_n,
                 mask_d, mask_n, order_id, group_id, bid, D, L,
                 G: tl.constexpr, N: tl.constexpr):
    """Load one tile: tokens, u, dt ``(BD, BL)``, B and C ``(BD, BL, NP)``."""
    mask_dl = mask_d[:, None] & (pos[None, :] < L)
    tok = tl.load(perm_ptr + order_id[:, None] * L + pos[None, :],
                  mask=mask_dl, other=0)
    row = (bid * D + offs_d[:, None]) * L
    u = tl.load(u_ptr + row + tok, mask=mask_dl, other=0.).to(tl.float32)
    dt = tl.load(dt_ptr + row + tok, mask=mask_dl, other=0.).to(tl.float32)
    mask3 = mask_dl[:, :, None] & mask_n[None, None, :]
    bc = (((bid * G + group_id[:, None, None]) * N + offs_n[None, None, :]) *
          L + tok[:, :, None])
    bv = tl.load(b_ptr + bc, mask=mask3, other=0.).to(tl.float32)
    cv = tl.load(c_ptr + bc, mask=mask3, other=0.).to(tl.float32)
    return tok, mask_dl, u, dt, bv, cv


@triton.jit
def _scan_fwd_kernel(u_ptr, dt_ptr, a_ptr, b_ptr, c_ptr, perm_ptr, h0_ptr,
                     y_ptr, ckpt_ptr, end_ptr, decay_ptr, D, L, NT, TPS, NS,
                     CH_PER_ORDER, CH_PER_GROUP, G: tl.constexpr,
                     N: tl.constexpr, NP: tl.constexpr, BLOCK_D: tl.constexpr,
                     BLOCK_L: tl.constexpr, WRITE_Y: tl.constexpr):
    """Scan tiles ``[s * TPS, (s + 1) * TPS)`` from the state ``h0[b, s]``.

    ``WRITE_Y``: store ``y`` and the tile checkpoints; otherwise store only the
    end state and the decay of the split (step 1 of split mode).
    """
    bid = tl.program_id(0)
    split = tl.program_id(2)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, NP)
    offs_l = tl.arange(0, BLOCK_L)
    mask_d = offs_d < D
    mask_n = offs_n < N
    mask_dn = mask_d[:, None] & mask_n[None, :]
    order_id = offs_d // CH_PER_ORDER
    group_id = offs_d // CH_PER_GROUP
    a_mat = tl.load(a_ptr + offs_d[:, None] * N + offs_n[None, :],
                    mask=mask_dn, other=0.).to(tl.float32)
    state = ((bid * NS + split) * D + offs_d[:, None]) * N + offs_n[None, :]
    h = tl.load(h0_ptr + state, mask=mask_dn, other=0.)
    dt_sum = tl.zeros((BLOCK_D, ), dtype=tl.float32)
    c_begin = split * TPS
    c_end = tl.minimum(c_begin + TPS, NT)
    for c in range(c_begin, c_end):
        if WRITE_Y:
            tl.store(ckpt_ptr + ((bid * NT + c) * D + offs_d[:, None]) * N +
                     offs_n[None, :], h, mask=mask_dn)
        pos = c * BLOCK_L + offs_l
        tok, mask_dl, u, dt, bv, cv = _tile_inputs(
            u_ptr, dt_ptr, b_ptr, c_ptr, perm_ptr, pos, offs_d, offs_n, mask_d,
            mask_n, order_id, group_id, bid, D, L, G, N)
        # Masked positions have dt = 0: a = 1, b = 0, the state passes.
        a = tl.exp(dt[:, :, None] * a_mat[:, None, :])
        bx = (dt * u)[:, :, None] * bv
        a_cum, h_loc = tl.associative_scan((a, bx), 1, _linear_combine)
        h_all = a_cum * h[:, None, :] + h_loc
        if WRITE_Y:
            y = tl.sum(h_all * cv, axis=2)
            tl.store(y_ptr + (bid * D + offs_d[:, None]) * L + tok, y,
                     mask=mask_dl)
        else:
            dt_sum += tl.sum(dt, axis=1)
        h = tl.sum(tl.where(offs_l[None, :, None] == BLOCK_L - 1, h_all, 0.),
                   axis=1)
    tl.store(end_ptr + state, h, mask=mask_dn)
    if not WRITE_Y:
        tl.store(decay_ptr + state, tl.exp(a_mat * dt_sum[:, None]),
                 mask=mask_dn)


@triton.jit
def _scan_bwd_kernel(u_ptr, dt_ptr, a_ptr, b_ptr, c_ptr, perm_ptr, ckpt_ptr,
                     gy_ptr, g0_ptr, gend_ptr, decay_ptr, du_ptr, ddt_ptr,
                     da_ptr, db_ptr, dc_ptr, D, L, NT, TPS, NS, CH_PER_ORDER,
                     CH_PER_GROUP, G: tl.constexpr, N: tl.constexpr,
                     NP: tl.constexpr, BLOCK_D: tl.constexpr,
                     BLOCK_L: tl.constexpr, UNIFORM: tl.constexpr,
                     GRADS: tl.constexpr):
    """Walk tiles ``[s * TPS, (s + 1) * TPS)`` backwards from the carry
    ``g0[b, s]`` (``dL/dh`` at the first position after the split).

    ``GRADS``: store the input gradients (``da`` per batch and split);
    otherwise store only the carry at the start of the split and the decay
    ``exp(A * sum(dt))`` over the positions after the split's first one up to
    the first one after it (step 1 of split mode).
    """
    bid = tl.program_id(0)
    split = tl.program_id(2)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, NP)
    offs_l = tl.arange(0, BLOCK_L)
    mask_d = offs_d < D
    mask_n = offs_n < N
    mask_dn = mask_d[:, None] & mask_n[None, :]
    order_id = offs_d // CH_PER_ORDER
    group_id = offs_d // CH_PER_GROUP
    a_mat = tl.load(a_ptr + offs_d[:, None] * N + offs_n[None, :],
                    mask=mask_dn, other=0.).to(tl.float32)
    state = ((bid * NS + split) * D + offs_d[:, None]) * N + offs_n[None, :]
    # g_next: dL/dh at the first position of the tile after the current one
    # (at the very end, the gradient of the last state, through a virtual
    # a = 1).
    g_next = tl.load(g0_ptr + state, mask=mask_dn, other=0.).to(tl.float32)
    da_acc = tl.zeros((BLOCK_D, NP), dtype=tl.float32)
    dt_sum = tl.zeros((BLOCK_D, ), dtype=tl.float32)
    c_begin = split * TPS
    c_end = tl.minimum(c_begin + TPS, NT)
    for cc in range(c_end - c_begin):
        c = c_end - 1 - cc
        pos = c * BLOCK_L + offs_l
        tok, mask_dl, u, dt, bv, cv = _tile_inputs(
            u_ptr, dt_ptr, b_ptr, c_ptr, perm_ptr, pos, offs_d, offs_n, mask_d,
            mask_n, order_id, group_id, bid, D, L, G, N)
        row = (bid * D + offs_d[:, None]) * L
        gy = tl.load(gy_ptr + row + tok, mask=mask_dl, other=0.).to(tl.float32)
        # a_{t+1}: dt of the next visited position (1 past the end).
        nxt = pos + 1
        mask_nx = mask_d[:, None] & (nxt[None, :] < L)
        tok_nx = tl.load(perm_ptr + order_id[:, None] * L + nxt[None, :],
                         mask=mask_nx, other=0)
        dt_nx = tl.load(dt_ptr + row + tok_nx, mask=mask_nx,
                        other=0.).to(tl.float32)
        a_nx = tl.exp(dt_nx[:, :, None] * a_mat[:, None, :])
        # g_t = gy_t * C_t + a_{t+1} * g_{t+1}: a reverse scan, carry g_next.
        x = gy[:, :, None] * cv
        a_prod, g_loc = tl.associative_scan((a_nx, x), 1, _linear_combine,
                                            reverse=True)
        g = g_loc + a_prod * g_next[:, None, :]
        g_next = tl.sum(tl.where(offs_l[None, :, None] == 0, g, 0.), axis=1)
        if GRADS:
            # Recompute the states of the tile from its checkpoint.
            h0 = tl.load(ckpt_ptr + ((bid * NT + c) * D + offs_d[:, None]) *
                         N + offs_n[None, :], mask=mask_dn, other=0.)
            a = tl.exp(dt[:, :, None] * a_mat[:, None, :])
            bx = (dt * u)[:, :, None] * bv
            a_cum, h_loc = tl.associative_scan((a, bx), 1, _linear_combine)
            h_all = a_cum * h0[:, None, :] + h_loc
            # a_t * h_{t-1} = h_t - b_t (no shifted copy of the states).
            ah_prev = h_all - bx
            g_dt = g * dt[:, :, None]
            du = tl.sum(g_dt * bv, axis=2)
            ddt = tl.sum(g * (a_mat[:, None, :] * ah_prev +
                              bv * u[:, :, None]), axis=2)
            tl.store(du_ptr + row + tok, du, mask=mask_dl)
            tl.store(ddt_ptr + row + tok, ddt, mask=mask_dl)
            da_acc += tl.sum(g_dt * ah_prev, axis=1)
            gb = g_dt * u[:, :, None]
            gc = gy[:, :, None] * h_all
            mask3 = mask_dl[:, :, None] & mask_n[None, None, :]
            if UNIFORM:
                # Every channel of the block has one order and one group:
                # sum over the block first, one atomic per (token, state).
                d_first = tl.program_id(1) * BLOCK_D
                tok0 = tl.load(perm_ptr + (d_first // CH_PER_ORDER) * L + pos,
                               mask=pos < L, other=0)
                g0 = d_first // CH_PER_GROUP
                bc0 = (((bid * G + g0) * N + offs_n[None, :]) * L +
                       tok0[:, None])
                mask2 = (pos[:, None] < L) & mask_n[None, :]
                tl.atomic_add(db_ptr + bc0, tl.sum(gb, axis=0), mask=mask2)
                tl.atomic_add(dc_ptr + bc0, tl.sum(gc, axis=0), mask=mask2)
            else:
                bc = (((bid * G + group_id[:, None, None]) * N +
                       offs_n[None, None, :]) * L + tok[:, :, None])
                tl.atomic_add(db_ptr + bc, gb, mask=mask3)
                tl.atomic_add(dc_ptr + bc, gc, mask=mask3)
        else:
            dt_sum += tl.sum(dt_nx, axis=1)
    if GRADS:
        tl.store(da_ptr + state, da_acc, mask=mask_dn)
    else:
        tl.store(gend_ptr + state, g_next, mask=mask_dn)
        tl.store(decay_ptr + state, tl.exp(a_mat * dt_sum[:, None]),
                 mask=mask_dn)


def _block_sizes(dim: int, nstate: int, block_d=None, block_l=None):
    """Channels per program, tile length and warps (budget ~ BD*BL*NP)."""
    np2 = triton.next_power_of_2(nstate)
    if block_l is None:
        block_l = 64
    if block_d is None:
        block_d = max(1, min(triton.next_power_of_2(dim), 4096 //
                             (block_l * np2), 32))
    # About 32 fp32 values per thread for each (BD, BL, NP) tile in flight.
    num_warps = 8 if block_d * block_l * np2 >= 4096 else 4
    return np2, block_d, block_l, num_warps


def _num_splits(split_l, nbatch: int, nblocks: int, ntile: int,
                device: torch.device) -> int:
    """Splits per sequence: ``split_l`` if given (capped to the tiles),
    else enough to give about two programs per GPU multiprocessor while every
    split keeps at least 4 tiles (1 when the batch fills the GPU already)."""
    if split_l is not None:
        if int(split_l) < 1:
            raise ValueError(f'split_l must be >= 1, got {split_l}')
        return min(int(split_l), ntile)
    if device.type != 'cuda':
        return 1
    target = 2 * torch.cuda.get_device_properties(device).multi_processor_count
    programs = nbatch * nblocks
    if programs >= target:
        return 1
    return max(1, min(triton.cdiv(target, programs), ntile // 4))


def _compose_forward(end, decay):
    """True start state of each split: ``h_0 = 0``,
    ``h_{s+1} = decay_s * h_s + end_s``; ``end``, ``decay`` ``(B, S, D, N)``.
    """
    h0 = torch.zeros_like(end)
    for split in range(1, end.shape[1]):
        h0[:, split] = (decay[:, split - 1] * h0[:, split - 1] +
                        end[:, split - 1])
    return h0


def _compose_backward(gstart, decay, glast):
    """True carry entering each split from the right: ``g_{S-1} = glast``,
    ``g_{s-1} = gstart_s + decay_s * g_s``."""
    g0 = torch.zeros_like(gstart)
    g0[:, -1] = glast
    for split in range(gstart.shape[1] - 1, 0, -1):
        g0[:, split - 1] = gstart[:, split] + decay[:, split] * g0[:, split]
    return g0


def scan_forward(u, dt, A, B, C, perm, block_d=None, block_l=None,
                 split_l=None):
    """Launch the forward kernels: ``y, last = scan(u, dt, A, B, C, perm)``.

    Args:
        u, dt (Tensor): ``(Bt, D, L)`` contiguous (``dt`` after bias and
            softplus).
        A (Tensor): ``(D, N)`` contiguous.
        B, C (Tensor): ``(Bt, G, N, L)`` contiguous.
        perm (Tensor): ``(K, L)`` contiguous int64 on ``u``'s device.
        block_d, block_l, split_l (int, optional): Channels per program, tile
            length and splits per sequence (None: automatic).

    Returns:
        tuple: ``y`` ``(Bt, D, L)`` and ``last`` ``(Bt, D, N)`` float32, the
        tile checkpoints ``(Bt, NT, D, N)`` and the launch plan, both to be
        passed to :func:`scan_backward`.
    """
    nbatch, dim, length = u.shape
    groups, nstate = B.shape[1], A.shape[1]
    np2, block_d, block_l, num_warps = _block_sizes(dim, nstate, block_d,
                                                    block_l)
    ntile = triton.cdiv(length, block_l)
    nblocks = triton.cdiv(dim, block_d)
    nsplit = _num_splits(split_l, nbatch, nblocks, ntile, u.device)
    tps = triton.cdiv(ntile, nsplit)
    nsplit = triton.cdiv(ntile, tps)  # no empty split
    f32 = dict(device=u.device, dtype=torch.float32)
    y = torch.empty(nbatch, dim, length, **f32)
    ckpt = torch.empty(nbatch, ntile, dim, nstate, **f32)
    end = torch.empty(nbatch, nsplit, dim, nstate, **f32)
    h0 = torch.zeros(nbatch, nsplit, dim, nstate, **f32)
    grid = (nbatch, nblocks, nsplit)
    common = (dim, length, ntile, tps, nsplit, dim // perm.shape[0],
              dim // groups)
    meta = dict(G=groups, N=nstate, NP=np2, BLOCK_D=block_d, BLOCK_L=block_l,
                num_warps=num_warps)
    if nsplit > 1:
        decay = torch.empty_like(end)
        _scan_fwd_kernel[grid](u, dt, A, B, C, perm, h0, y, ckpt, end, decay,
                               *common, WRITE_Y=False, **meta)
        h0 = _compose_forward(end, decay)
    _scan_fwd_kernel[grid](u, dt, A, B, C, perm, h0, y, ckpt, end, end,
                           *common, WRITE_Y=True, **meta)
    plan = (np2, block_d, block_l, ntile, tps, nsplit, num_warps)
    return y, end[:, -1].clone(), ckpt, plan


def scan_backward(u, dt, A, B, C, perm, ckpt, plan, gy, glast):
    """Launch the backward kernels of :func:`scan_forward`.

    Args:
        u, dt, A, B, C, perm: The inputs of :func:`scan_forward`.
        ckpt, plan: The checkpoints and the plan it returned.
        gy (Tensor): Gradient of ``y`` ``(Bt, D, L)``, contiguous.
        glast (Tensor): Gradient of ``last`` ``(Bt, D, N)``, float32.

    Returns:
        tuple: float32 ``du``, ``ddt`` ``(Bt, D, L)``, ``dA`` ``(D, N)``,
        ``dB``, ``dC`` ``(Bt, G, N, L)``.
    """
    np2, block_d, block_l, ntile, tps, nsplit, num_warps = plan
    nbatch, dim, length = u.shape
    groups, nstate = B.shape[1], A.shape[1]
    f32 = dict(device=u.device, dtype=torch.float32)
    du = torch.empty(nbatch, dim, length, **f32)
    ddt = torch.empty(nbatch, dim, length, **f32)
    da = torch.empty(nbatch, nsplit, dim, nstate, **f32)
    db = torch.zeros(nbatch, groups, nstate, length, **f32)
    dc = torch.zeros(nbatch, groups, nstate, length, **f32)
    per_order, per_group = dim // perm.shape[0], dim // groups
    uniform = per_order % block_d == 0 and per_group % block_d == 0
    grid = (nbatch, triton.cdiv(dim, block_d), nsplit)
    common = (dim, length, ntile, tps, nsplit, per_order, per_group)
    meta = dict(G=groups, N=nstate, NP=np2, BLOCK_D=block_d, BLOCK_L=block_l,
                UNIFORM=uniform, num_warps=num_warps)
    if nsplit > 1:
        zeros = torch.zeros(nbatch, nsplit, dim, nstate, **f32)
        gstart, decay = torch.empty_like(zeros), torch.empty_like(zeros)
        _scan_bwd_kernel[grid](u, dt, A, B, C, perm, ckpt, gy, zeros, gstart,
                               decay, du, ddt, da, db, dc, *common,
                               GRADS=False, **meta)
        g0 = _compose_backward(gstart, decay, glast)
    else:
        g0 = glast.reshape(nbatch, 1, dim, nstate).contiguous()
    _scan_bwd_kernel[grid](u, dt, A, B, C, perm, ckpt, gy, g0, g0, g0, du,
                           ddt, da, db, dc, *common, GRADS=True, **meta)
    return du, ddt, da.sum((0, 1)), db, dc
