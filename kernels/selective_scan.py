"""Fused Triton kernels of the selective scan (Mamba S6), forward and backward.

What one launch computes, per batch ``b``, channel ``d`` and state ``n``, with
the tokens visited in the order of ``d``'s chunk (``t`` is the visiting
position, ``tok(t)`` the token it reads and writes)::

    dt_t  = softplus(delta[tok] + delta_bias[d])        (SOFTPLUS, HAS_BIAS)
    h_t   = exp(dt_t * A[d, n]) * h_{t-1} + dt_t * B[g(d), n, tok] * u[tok]
    y     = sum_n C[g(d), n, tok] * h_t + D[d] * u[tok]  (HAS_D)
    out[tok] = y * silu(z[d % DZ, tok])                  (HAS_Z)

so the work around the recurrence (bias and softplus, the ``D`` skip, the
gate, a gate shared by ``D // DZ`` chunks of channels) is inside the kernels
and every input is read once and ``out`` written once per pass, in the
inputs' own dtype (fp16/bf16 stay 2 bytes in memory; every sum is fp32).
``u``, ``delta``, ``z``, ``B`` and ``C`` are read through their strides, so
transposed views (a ``(B, L, D)`` projection seen as ``(B, D, L)``) need no
copy.

Forward (:func:`_fwd_kernel`), after the design of mamba_ssm's CUDA kernel
(one block per channel row, states in registers): one program per (batch,
block of ``BLOCK_D`` channels, split of the sequence) keeps the
``(BLOCK_D, N)`` state in registers and walks the visited positions one at a
time (``UNROLL`` positions per basic block, so that their loads and gates
can overlap); per position it loads ``BLOCK_D`` values of each activation
and ``N`` of ``B`` and ``C`` (shared by the block). Every ``CHUNK``
positions it saves the state (``(B, L / CHUNK, N, D)`` checkpoints, all the
backward keeps). The output, ``du``, ``ddelta`` and ``dz`` are written in
``u``'s layout: a channels-last ``u`` (a ``(B, L, D)`` projection seen as
``(B, D, L)``) makes every per-position access one contiguous run of
``BLOCK_D`` values.

Two backward kernels (``plan['bwd']``):

* ``'scan'`` (:func:`_bwd_kernel`): one program per (batch, channel block,
  split) walks the chunks from the last to the first; per chunk it
  recomputes the states from the chunk's checkpoint with a
  ``tl.associative_scan`` over the ``CHUNK`` positions, runs the reverse scan
  of ``dL/dh`` (``g_t = gy_t C_t + a_{t+1} g_{t+1}``) and writes ``du``,
  ``ddelta`` and ``dz`` once; ``dB``/``dC`` (shared by the channels of a
  group) are summed over the block first and added with one atomic per
  (token, state).
* ``'seq'`` (:func:`_bwd_seq_kernel`): the same walk one position at a time
  like the forward, the chunk's states recomputed into a per-program scratch
  (``CHUNK x BLOCK_D x N``, meant to stay in cache) by the forward's own step
  (:func:`_scan_step`, on the transposed tile) and read back in reverse;
  ``dB``/``dC`` are written per channel block and summed by the caller (no
  atomics, deterministic).

``dA``, ``dD`` and ``d delta_bias`` are summed per program and reduced by the
caller.

Every channel block lies inside one order chunk and one B/C group (the
launcher picks ``BLOCK_D`` as a power of two dividing both chunk sizes), so a
block shares its token index and its ``B``/``C``. Orders: kind 0 visits the
tokens forward, kind 1 in reverse (both computed, no index load), kind 2
reads ``perm[order, t]``.

Split-L mode (small batches of long sequences): the sequence of every
program is cut into ``S`` consecutive splits of whole chunks. (1) every split
scans from a zero state and stores its end state and decay ``exp(A *
sum(dt))``; (2) a short loop composes them into the true start states; (3)
every split scans again from its true start, writing the outputs. The
backward does the same in reverse with ``dL/dh``.

This module imports torch and triton and nothing of mmssm. It is tested on
the CPU with ``TRITON_INTERPRET=1``; :func:`plan_scan` says which plans were
timed on a GPU.
"""
import math

import torch
import triton
import triton.language as tl

__all__ = ['fused_scan_forward', 'fused_scan_backward', 'plan_scan']


@triton.jit
def _softplus(x):
    """``log1p(exp(x))`` (Kahan's accurate form), ``x`` above 20."""
    e = tl.exp(x)
    w = 1. + e
    lp = tl.where(w == 1., e, tl.log(w) * (e / (w - 1.)))
    return tl.where(x > 20., x, lp)


@triton.jit
def _sigmoid(x):
    return 1. / (1. + tl.exp(-x))


@triton.jit
def _combine(a_left, b_left, a_right, b_right):
    """Compose ``h -> a_left * h + b_left`` then ``h -> a_right * h +
    b_right``."""
    return a_left * a_right, a_right * b_left + b_right


@triton.jit
def _token(perm_ptr, kind, order_id, t, L):
    """Token visited at position ``t`` (scalar or tensor of positions),
    without a branch: kind 0 ``t``, kind 1 ``L - 1 - t``, kind 2 an index
    load (predicated off for the other kinds)."""
    idx = tl.load(perm_ptr + order_id * L + t, mask=(kind == 2) & (t < L),
                  other=0)
    return tl.where(kind == 0, t, tl.where(kind == 1, L - 1 - t, idx))


@triton.jit
def _delta(ptrs, mask, bias, SOFTPLUS: tl.constexpr, HAS_BIAS: tl.constexpr):
    """``x = delta (+ bias)`` read at ``ptrs`` and the step ``dt =
    softplus(x)`` (``SOFTPLUS``) or ``x``, 0 where ``mask`` is off (``a =
    1``, ``b = 0``: the state passes). ``bias`` broadcasts against the
    loaded tile (unused without ``HAS_BIAS``). Returns ``x, dt``."""
    x = tl.load(ptrs, mask=mask, other=0.).to(tl.float32)
    if HAS_BIAS:
        x += bias
    if SOFTPLUS:
        dt = _softplus(x)
    else:
        dt = x
    return x, tl.where(mask, dt, 0.)


@triton.jit
def _scan_step(h, a_mat, tok, ok, u_row, dl_row, b_row, su_l, sd_l, sb_l,
               mask_n, bias, SOFTPLUS: tl.constexpr, HAS_BIAS: tl.constexpr,
               CH_AXIS: tl.constexpr):
    """One visited position of the recurrence, ``h <- exp(dt A) h + dt u B``
    for token ``tok`` (the state passes unchanged where ``ok`` is off).

    The state tile ``h`` and ``a_mat`` hold channels along axis ``CH_AXIS``
    and states along the other: 1 for the forward's ``(N, BLOCK_D)`` tiles,
    0 for the sequential backward's ``(BLOCK_D, N)`` recompute; ``u_row``,
    ``dl_row`` (``BLOCK_D``) and ``b_row`` (``NP``) point at the token 0 of
    the block's rows. Returns ``h, u, dt`` (``u`` and ``dt`` per channel).
    """
    u = tl.load(u_row + tok * su_l, mask=ok, other=0.).to(tl.float32)
    _, dt = _delta(dl_row + tok * sd_l, ok, bias, SOFTPLUS, HAS_BIAS)
    bv = tl.load(b_row + tok * sb_l, mask=mask_n & ok,
                 other=0.).to(tl.float32)
    h = (tl.exp(tl.expand_dims(dt, 1 - CH_AXIS) * a_mat) * h +
         tl.expand_dims(dt * u, 1 - CH_AXIS) * tl.expand_dims(bv, CH_AXIS))
    return h, u, dt


@triton.jit
def _fwd_kernel(u_ptr, dl_ptr, z_ptr, a_ptr, b_ptr, c_ptr, dsk_ptr, bias_ptr,
                perm_ptr, kind_ptr, h0_ptr, out_ptr, ckpt_ptr, end_ptr,
                decay_ptr, D, L, DZ, su_b, su_d, su_l, sd_b, sd_d, sd_l, sz_b,
                sz_d, sz_l, sb_b, sb_g, sb_n, sb_l, sc_b, sc_g, sc_n, sc_l,
                so_b, so_d, so_l, NT, CPS, NS, CH_PER_ORDER, CH_PER_GROUP,
                N: tl.constexpr,
                NP: tl.constexpr, BLOCK_D: tl.constexpr,
                CHUNK: tl.constexpr, UNROLL: tl.constexpr,
                SOFTPLUS: tl.constexpr, HAS_BIAS: tl.constexpr,
                HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
                WRITE_Y: tl.constexpr):
    """Scan chunks ``[s * CPS, (s + 1) * CPS)`` from the state ``h0[b, s]``.

    ``WRITE_Y``: write ``out`` and the chunk checkpoints; otherwise only the
    end state and the decay of the split (step 1 of split mode).
    """
    bid = tl.program_id(0).to(tl.int64)
    d0 = tl.program_id(1) * BLOCK_D
    split = tl.program_id(2)
    offs_d = d0 + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, NP)
    mask_n = offs_n < N
    # (state, channel) tiles: a thread holds states of one channel, so the
    # per-channel work (softplus, gate) is done once per thread and the sum
    # over the states is (mostly) inside a thread.
    mask_nd = mask_n[:, None] & (offs_d[None, :] < D)
    order_id = d0 // CH_PER_ORDER
    group_id = d0 // CH_PER_GROUP
    kind = tl.load(kind_ptr + order_id)
    # A, states and checkpoints are stored (N, D): channel-contiguous
    a_mat = tl.load(a_ptr + offs_n[:, None] * D + offs_d[None, :],
                    mask=mask_nd, other=0.).to(tl.float32)
    state = ((bid * NS + split) * N + offs_n[:, None]) * D + offs_d[None, :]
    h = tl.load(h0_ptr + state, mask=mask_nd, other=0.)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d).to(tl.float32)
    else:
        bias = 0.
    if HAS_D:
        dsk = tl.load(dsk_ptr + offs_d).to(tl.float32)
    u_row = u_ptr + bid * su_b + offs_d * su_d
    dl_row = dl_ptr + bid * sd_b + offs_d * sd_d
    z_row = z_ptr + bid * sz_b + (offs_d % DZ) * sz_d
    out_row = out_ptr + bid * so_b + offs_d * so_d
    b_row = b_ptr + bid * sb_b + group_id * sb_g + offs_n * sb_n
    c_row = c_ptr + bid * sc_b + group_id * sc_g + offs_n * sc_n
    dt_sum = tl.zeros((BLOCK_D, ), dtype=tl.float32)
    c_begin = split * CPS
    c_end = tl.minimum(c_begin + CPS, NT)
    for c in range(c_begin, c_end):
        if WRITE_Y:
            tl.store(ckpt_ptr + ((bid * NT + c) * N + offs_n[:, None]) * D +
                     offs_d[None, :], h, mask=mask_nd)
        t_end = tl.minimum(c * CHUNK + CHUNK, L)
        for t0 in range(c * CHUNK, t_end, UNROLL):
            # UNROLL positions in one basic block: their loads and gates
            # overlap, only h -> a * h + b is serial.
            for k in tl.static_range(UNROLL):
                t = t0 + k
                ok = t < t_end
                tok = _token(perm_ptr, kind, order_id, t, L)
                h, u, dt = _scan_step(h, a_mat, tok, ok, u_row, dl_row,
                                      b_row, su_l, sd_l, sb_l, mask_n, bias,
                                      SOFTPLUS, HAS_BIAS, 1)
                if WRITE_Y:
                    cv = tl.load(c_row + tok * sc_l, mask=mask_n & ok,
                                 other=0.).to(tl.float32)
                    y = tl.sum(h * cv[:, None], axis=0)
                    if HAS_D:
                        y += dsk * u
                    if HAS_Z:
                        zv = tl.load(z_row + tok * sz_l, mask=ok,
                                     other=0.).to(tl.float32)
                        y *= zv * _sigmoid(zv)
                    tl.store(out_row + tok * so_l,
                             y.to(out_ptr.dtype.element_ty), mask=ok)
                else:
                    dt_sum += dt
    tl.store(end_ptr + state, h, mask=mask_nd)
    if not WRITE_Y:
        tl.store(decay_ptr + state, tl.exp(a_mat * dt_sum[None, :]),
                 mask=mask_nd)


@triton.jit
def _bwd_kernel(u_ptr, dl_ptr, z_ptr, a_ptr, b_ptr, c_ptr, dsk_ptr, bias_ptr,
                perm_ptr, kind_ptr, ckpt_ptr, go_ptr, g0_ptr, gend_ptr,
                decay_ptr, du_ptr, ddl_ptr, dz_ptr, da_ptr, db_ptr, dc_ptr,
                dd_ptr, dbias_ptr, D, L, DZ, su_b, su_d, su_l, sd_b, sd_d,
                sd_l, sz_b, sz_d, sz_l, sb_b, sb_g, sb_n, sb_l, sc_b, sc_g,
                sc_n, sc_l, si_b, si_d, si_l, NT, CPS, NS, CH_PER_ORDER,
                CH_PER_GROUP, G,
                N: tl.constexpr, NP: tl.constexpr, BLOCK_D: tl.constexpr,
                CHUNK: tl.constexpr, SOFTPLUS: tl.constexpr,
                HAS_BIAS: tl.constexpr, HAS_D: tl.constexpr,
                HAS_Z: tl.constexpr, GRADS: tl.constexpr):
    """Walk chunks ``[s * CPS, (s + 1) * CPS)`` backwards from the carry
    ``g0[b, s]`` (``dL/dh`` entering the split from the right).

    ``GRADS``: write the gradients; otherwise only the carry leaving the
    split on the left and its decay (step 1 of split mode). Tiles are
    ``(BLOCK_D, NP, CHUNK)``: channel, state, visiting position.
    """
    bid = tl.program_id(0).to(tl.int64)
    d0 = tl.program_id(1) * BLOCK_D
    split = tl.program_id(2)
    offs_d = d0 + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, NP)
    offs_l = tl.arange(0, CHUNK)
    mask_n = offs_n < N
    mask_dn = (offs_d[:, None] < D) & mask_n[None, :]
    order_id = d0 // CH_PER_ORDER
    group_id = d0 // CH_PER_GROUP
    kind = tl.load(kind_ptr + order_id)
    a_mat = tl.load(a_ptr + offs_n[None, :] * D + offs_d[:, None],
                    mask=mask_dn, other=0.).to(tl.float32)
    a3 = a_mat[:, :, None]
    state = ((bid * NS + split) * N + offs_n[None, :]) * D + offs_d[:, None]
    g_next = tl.load(g0_ptr + state, mask=mask_dn, other=0.).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d).to(tl.float32)[:, None]
    else:
        bias = 0.
    if HAS_D:
        dsk = tl.load(dsk_ptr + offs_d).to(tl.float32)
    u_row = u_ptr + bid * su_b + offs_d * su_d
    dl_row = dl_ptr + bid * sd_b + offs_d * sd_d
    z_row = z_ptr + bid * sz_b + (offs_d % DZ) * sz_d
    io_row = bid * si_b + offs_d * si_d  # go, du, ddelta, dz
    b_row = b_ptr + bid * sb_b + group_id * sb_g + offs_n * sb_n
    c_row = c_ptr + bid * sc_b + group_id * sc_g + offs_n * sc_n
    bc_row = ((bid * G + group_id) * N + offs_n) * L  # dB, dC: contiguous
    da_acc = tl.zeros((BLOCK_D, NP), dtype=tl.float32)
    dd_acc = tl.zeros((BLOCK_D, ), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D, ), dtype=tl.float32)
    dt_sum = tl.zeros((BLOCK_D, ), dtype=tl.float32)
    c_begin = split * CPS
    c_end = tl.minimum(c_begin + CPS, NT)
    for cc in range(c_end - c_begin):
        c = c_end - 1 - cc
        pos = c * CHUNK + offs_l
        in_l = pos < L
        tok = _token(perm_ptr, kind, order_id, pos, L)
        m2 = (offs_d[:, None] < D) & in_l[None, :]
        # dt at the next visited position (a_{t+1}; 0, i.e. a = 1, past L)
        nxt = pos + 1
        tok_nx = _token(perm_ptr, kind, order_id, nxt, L)
        m2n = (offs_d[:, None] < D) & (nxt < L)[None, :]
        _, dt_nx = _delta(dl_row[:, None] + tok_nx[None, :] * sd_l, m2n,
                          bias, SOFTPLUS, HAS_BIAS)
        go = tl.load(go_ptr + io_row[:, None] + tok[None, :] * si_l,
                     mask=m2, other=0.).to(tl.float32)
        if HAS_Z:
            zv = tl.load(z_row[:, None] + tok[None, :] * sz_l, mask=m2,
                         other=0.).to(tl.float32)
            sz = _sigmoid(zv)
            gy = go * (zv * sz)
        else:
            gy = go
        cv = tl.load(c_row[:, None] + tok[None, :] * sc_l,
                     mask=mask_n[:, None] & in_l[None, :],
                     other=0.).to(tl.float32)
        # g_t = gy_t C_t + a_{t+1} g_{t+1}: reverse scan, carry g_next
        a_nx = tl.exp(dt_nx[:, None, :] * a3)
        x = gy[:, None, :] * cv[None, :, :]
        a_prod, g_loc = tl.associative_scan((a_nx, x), 2, _combine,
                                            reverse=True)
        g = g_loc + a_prod * g_next[:, :, None]
        g_next = tl.sum(tl.where(offs_l[None, None, :] == 0, g, 0.), axis=2)
        if GRADS:
            uv = tl.load(u_row[:, None] + tok[None, :] * su_l, mask=m2,
                         other=0.).to(tl.float32)
            xd, dt = _delta(dl_row[:, None] + tok[None, :] * sd_l, m2, bias,
                            SOFTPLUS, HAS_BIAS)
            bv = tl.load(b_row[:, None] + tok[None, :] * sb_l,
                         mask=mask_n[:, None] & in_l[None, :],
                         other=0.).to(tl.float32)
            # the states of the chunk, from its checkpoint
            h0 = tl.load(ckpt_ptr + ((bid * NT + c) * N + offs_n[None, :]) *
                         D + offs_d[:, None], mask=mask_dn, other=0.)
            a = tl.exp(dt[:, None, :] * a3)
            bx = (dt * uv)[:, None, :] * bv[None, :, :]
            a_cum, h_loc = tl.associative_scan((a, bx), 2, _combine)
            h_all = a_cum * h0[:, :, None] + h_loc
            ah_prev = h_all - bx  # a_t h_{t-1}
            gdt = g * dt[:, None, :]
            du = tl.sum(gdt * bv[None, :, :], axis=1)
            ddt = tl.sum(g * (a3 * ah_prev + bv[None, :, :] * uv[:, None, :]),
                         axis=1)
            if SOFTPLUS:
                ddt = ddt * _sigmoid(xd)
            ddt = tl.where(m2, ddt, 0.)
            if HAS_D:
                du += dsk[:, None] * gy
                dd_acc += tl.sum(gy * uv, axis=1)
            if HAS_BIAS:
                dbias_acc += tl.sum(ddt, axis=1)
            if HAS_Z:
                y = tl.sum(h_all * cv[None, :, :], axis=1)
                if HAS_D:
                    y += dsk[:, None] * uv
                dz = go * y * sz * (1. + zv * (1. - sz))
                tl.store(dz_ptr + io_row[:, None] + tok[None, :] * si_l,
                         dz.to(dz_ptr.dtype.element_ty), mask=m2)
            tl.store(du_ptr + io_row[:, None] + tok[None, :] * si_l,
                     du.to(du_ptr.dtype.element_ty), mask=m2)
            tl.store(ddl_ptr + io_row[:, None] + tok[None, :] * si_l,
                     ddt.to(ddl_ptr.dtype.element_ty), mask=m2)
            da_acc += tl.sum(gdt * ah_prev, axis=2)
            gb = tl.sum(gdt * uv[:, None, :], axis=0)  # (NP, CHUNK)
            gc = tl.sum(gy[:, None, :] * h_all, axis=0)
            mbc = mask_n[:, None] & in_l[None, :]
            # relaxed: plain sums, no fence (the default acq_rel puts a
            # GPU-wide memory barrier around every atomic)
            tl.atomic_add(db_ptr + bc_row[:, None] + tok[None, :], gb,
                          mask=mbc, sem='relaxed')
            tl.atomic_add(dc_ptr + bc_row[:, None] + tok[None, :], gc,
                          mask=mbc, sem='relaxed')
        else:
            dt_sum += tl.sum(dt_nx, axis=1)
    if GRADS:
        tl.store(da_ptr + state, da_acc, mask=mask_dn)
        part = (bid * NS + split) * D + offs_d
        if HAS_D:
            tl.store(dd_ptr + part, dd_acc)
        if HAS_BIAS:
            tl.store(dbias_ptr + part, dbias_acc)
    else:
        tl.store(gend_ptr + state, g_next, mask=mask_dn)
        tl.store(decay_ptr + state, tl.exp(a_mat * dt_sum[:, None]),
                 mask=mask_dn)


@triton.jit
def _bwd_seq_kernel(u_ptr, dl_ptr, z_ptr, a_ptr, b_ptr, c_ptr, dsk_ptr,
                    bias_ptr, perm_ptr, kind_ptr, ckpt_ptr, go_ptr, g0_ptr,
                    gend_ptr, decay_ptr, scr_ptr, du_ptr, ddl_ptr, dz_ptr,
                    da_ptr, dbp_ptr, dcp_ptr, dd_ptr, dbias_ptr, D, L, DZ,
                    su_b, su_d, su_l, sd_b, sd_d, sd_l, sz_b, sz_d, sz_l,
                    sb_b, sb_g, sb_n, sb_l, sc_b, sc_g, sc_n, sc_l, si_b,
                    si_d, si_l, NT, CPS, NS, CH_PER_ORDER, CH_PER_GROUP,
                    N: tl.constexpr,
                    NP: tl.constexpr, BLOCK_D: tl.constexpr,
                    CHUNK: tl.constexpr, UNROLL: tl.constexpr,
                    SOFTPLUS: tl.constexpr, HAS_BIAS: tl.constexpr,
                    HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
                    GRADS: tl.constexpr):
    """Sequential backward: walk chunks ``[s * CPS, (s + 1) * CPS)`` from
    the last position to the first, carrying ``ga = a_{t+1} dL/dh_{t+1}``
    (``g0[b, s]`` entering the split from the right).

    Per chunk (``GRADS``): recompute its states from the checkpoint into this
    program's scratch rows (``CHUNK x BLOCK_D x N``, cache-resident), then
    walk back: ``g_t = ga + gy_t C_t``, the gradients of position ``t``, and
    ``ga = a_t g_t``. ``dB``/``dC`` are written per channel block
    (``dbp``/``dcp`` ``(Bt, D / BLOCK_D, N, L)``, summed by the caller: no
    atomics). Without ``GRADS`` only the carry leaving the split on the left
    and its decay (step 1 of split mode).
    """
    bid = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    d0 = pid_d * BLOCK_D
    split = tl.program_id(2)
    nblk = tl.num_programs(1)
    offs_d = d0 + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, NP)
    mask_n = offs_n < N
    mask_dn = (offs_d[:, None] < D) & mask_n[None, :]
    order_id = d0 // CH_PER_ORDER
    group_id = d0 // CH_PER_GROUP
    kind = tl.load(kind_ptr + order_id)
    a_mat = tl.load(a_ptr + offs_n[None, :] * D + offs_d[:, None],
                    mask=mask_dn, other=0.).to(tl.float32)
    state = ((bid * NS + split) * N + offs_n[None, :]) * D + offs_d[:, None]
    ga = tl.load(g0_ptr + state, mask=mask_dn, other=0.).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d).to(tl.float32)
    else:
        bias = 0.
    if HAS_D:
        dsk = tl.load(dsk_ptr + offs_d).to(tl.float32)
    u_row = u_ptr + bid * su_b + offs_d * su_d
    dl_row = dl_ptr + bid * sd_b + offs_d * sd_d
    z_row = z_ptr + bid * sz_b + (offs_d % DZ) * sz_d
    io_row = bid * si_b + offs_d * si_d  # go, du, ddelta, dz
    b_row = b_ptr + bid * sb_b + group_id * sb_g + offs_n * sb_n
    c_row = c_ptr + bid * sc_b + group_id * sc_g + offs_n * sc_n
    part_row = ((bid * nblk + pid_d) * N + offs_n) * L  # dB/dC partials
    prog = (bid * nblk + pid_d) * NS + split
    scr = (scr_ptr + prog * (CHUNK * BLOCK_D * NP) +
           offs_n[None, :] * BLOCK_D + (offs_d[:, None] - d0))
    da_acc = tl.zeros((BLOCK_D, NP), dtype=tl.float32)
    dd_acc = tl.zeros((BLOCK_D, ), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D, ), dtype=tl.float32)
    dt_sum = tl.zeros((BLOCK_D, ), dtype=tl.float32)
    c_begin = split * CPS
    c_end = tl.minimum(c_begin + CPS, NT)
    for cc in range(c_end - c_begin):
        c = c_end - 1 - cc
        t_beg = c * CHUNK
        t_end = tl.minimum(t_beg + CHUNK, L)
        if GRADS:
            # the states of the chunk, from its checkpoint, into scratch
            h = tl.load(ckpt_ptr + ((bid * NT + c) * N + offs_n[None, :]) *
                        D + offs_d[:, None], mask=mask_dn, other=0.)
            for t0 in range(t_beg, t_end, UNROLL):
                for k in tl.static_range(UNROLL):
                    t = t0 + k
                    ok = t < t_end
                    tok = _token(perm_ptr, kind, order_id, t, L)
                    h, _, _ = _scan_step(h, a_mat, tok, ok, u_row, dl_row,
                                         b_row, su_l, sd_l, sb_l, mask_n,
                                         bias, SOFTPLUS, HAS_BIAS, 0)
                    tl.store(scr + (t - t_beg) * (BLOCK_D * NP), h,
                             mask=mask_dn & ok)
            tl.debug_barrier()
        # walk back over the chunk
        for t0 in range(0, t_end - t_beg, UNROLL):
            for k in tl.static_range(UNROLL):
                t = t_end - 1 - (t0 + k)
                ok = t >= t_beg
                tok = _token(perm_ptr, kind, order_id, t, L)
                xd, dt = _delta(dl_row + tok * sd_l, ok, bias, SOFTPLUS,
                                HAS_BIAS)
                go = tl.load(go_ptr + io_row + tok * si_l, mask=ok,
                             other=0.).to(tl.float32)
                if HAS_Z:
                    zv = tl.load(z_row + tok * sz_l, mask=ok,
                                 other=0.).to(tl.float32)
                    sz = _sigmoid(zv)
                    gy = go * (zv * sz)
                else:
                    gy = go
                cv = tl.load(c_row + tok * sc_l, mask=mask_n & ok,
                             other=0.).to(tl.float32)
                a_t = tl.exp(dt[:, None] * a_mat)
                g = ga + gy[:, None] * cv[None, :]
                if GRADS:
                    uv = tl.load(u_row + tok * su_l, mask=ok,
                                 other=0.).to(tl.float32)
                    bv = tl.load(b_row + tok * sb_l, mask=mask_n & ok,
                                 other=0.).to(tl.float32)
                    h = tl.load(scr + (t - t_beg) * (BLOCK_D * NP),
                                mask=mask_dn & ok, other=0.)
                    bx = (dt * uv)[:, None] * bv[None, :]
                    ah_prev = h - bx  # a_t h_{t-1}
                    gdt = g * dt[:, None]
                    du = tl.sum(gdt * bv[None, :], axis=1)
                    ddt = tl.sum(g * (a_mat * ah_prev +
                                      bv[None, :] * uv[:, None]), axis=1)
                    if SOFTPLUS:
                        ddt = ddt * _sigmoid(xd)
                    ddt = tl.where(ok, ddt, 0.)
                    if HAS_D:
                        du += dsk * gy
                        dd_acc += gy * uv
                    if HAS_BIAS:
                        dbias_acc += ddt
                    if HAS_Z:
                        y = tl.sum(h * cv[None, :], axis=1)
                        if HAS_D:
                            y += dsk * uv
                        dz = go * y * sz * (1. + zv * (1. - sz))
                        tl.store(dz_ptr + io_row + tok * si_l,
                                 dz.to(dz_ptr.dtype.element_ty), mask=ok)
                    tl.store(du_ptr + io_row + tok * si_l,
                             du.to(du_ptr.dtype.element_ty), mask=ok)
                    tl.store(ddl_ptr + io_row + tok * si_l,
                             ddt.to(ddl_ptr.dtype.element_ty), mask=ok)
                    da_acc += gdt * ah_prev
                    gb = tl.sum(gdt * uv[:, None], axis=0)
                    gc = tl.sum(gy[:, None] * h, axis=0)
                    tl.store(dbp_ptr + part_row + tok, gb, mask=mask_n & ok)
                    tl.store(dcp_ptr + part_row + tok, gc, mask=mask_n & ok)
                else:
                    dt_sum += dt
                ga = tl.where(ok, a_t * g, ga)
        if GRADS:
            tl.debug_barrier()
    if GRADS:
        tl.store(da_ptr + state, da_acc, mask=mask_dn)
        part = (bid * NS + split) * D + offs_d
        if HAS_D:
            tl.store(dd_ptr + part, dd_acc)
        if HAS_BIAS:
            tl.store(dbias_ptr + part, dbias_acc)
    else:
        tl.store(gend_ptr + state, ga, mask=mask_dn)
        tl.store(decay_ptr + state, tl.exp(a_mat * dt_sum[:, None]),
                 mask=mask_dn)


# ------------------------------------------------------------------ planning
def _pow2_divisor(n: int, cap: int) -> int:
    """Largest power of two <= cap dividing n."""
    b = 1
    while b * 2 <= cap and n % (b * 2) == 0:
        b *= 2
    return b


def order_kinds(perm: torch.Tensor) -> torch.Tensor:
    """Kind of each order ``(K, L)``: 0 forward, 1 reverse, 2 any other
    (int32, on ``perm``'s device). Reads values: the callers cache it with
    the order (:mod:`mmssm.ops.scan_order`) or pass it in."""
    k, length = perm.shape
    ar = torch.arange(length, device=perm.device)
    fwd = (perm == ar).all(dim=1)
    rev = (perm == ar.flip(0)).all(dim=1)
    return torch.where(fwd, 0, torch.where(rev, 1, 2)).to(torch.int32)


#: Backward kernels: ``'seq'`` (:func:`_bwd_seq_kernel`, sequential walk,
#: scratch states, no atomics) and ``'scan'`` (:func:`_bwd_kernel`,
#: associative scans over chunk tiles, atomic dB/dC).
BWD_KINDS = ('seq', 'scan')


def plan_scan(nbatch: int, dim: int, length: int, nstate: int, norders: int,
              groups: int, device: torch.device, block_d=None, chunk=None,
              split_l=None, bwd_block_d=None, num_warps=None,
              bwd_num_warps=None, unroll=None, bwd=None) -> dict:
    """Launch plan: channels per program (forward and backward), chunk
    length (checkpoint spacing, backward scratch or tile), splits, warps,
    positions per unrolled step and the backward kernel.

    ``block_d`` is rounded down to a power of two dividing the channels of an
    order chunk and of a B/C group (a block never straddles them).

    Defaults: the forward plan measured fastest in the one H200 sweep so far
    (README, "The scan on a GPU"): 128 state values per one-warp program,
    no unrolling. The backward: the sequential kernel with a 4096-value
    scratch per program, chosen without a GPU timing from the sm_90 code
    (27 % fewer instructions per (position, channel) than the scan kernel,
    no atomics, the structure of the forward, which ran 9x faster per
    element than the scan backward on the H200);
    ``tools/analysis_tools/tune_scan.py`` times both.
    """
    per_order, per_group = dim // norders, dim // groups
    unit = math.gcd(per_order, per_group)
    np2 = triton.next_power_of_2(nstate)
    bwd = 'seq' if bwd is None else bwd
    if bwd not in BWD_KINDS:
        raise ValueError(f'bwd must be one of {BWD_KINDS}, got {bwd!r}')
    if block_d is None:
        block_d = max(1, 128 // np2)
    block_d = _pow2_divisor(unit, max(1, int(block_d)))
    if chunk is None:
        chunk = (min(128, max(16, 4096 // (block_d * np2))) if bwd == 'seq'
                 else 32)
    chunk = triton.next_power_of_2(max(1, int(chunk)))
    if bwd_block_d is None:
        bwd_block_d = block_d if bwd == 'seq' else max(
            1, 2048 // (np2 * chunk))
    bwd_block_d = _pow2_divisor(unit, max(1, int(bwd_block_d)))
    nchunk = triton.cdiv(length, chunk)
    nblocks = triton.cdiv(dim, block_d)  # forward programs per batch
    if split_l is not None:
        if int(split_l) < 1:
            raise ValueError(f'split_l must be >= 1, got {split_l}')
        nsplit = min(int(split_l), nchunk)
    elif device.type != 'cuda':
        nsplit = 1
    else:
        target = 4 * torch.cuda.get_device_properties(
            device).multi_processor_count
        programs = nbatch * nblocks
        nsplit = 1 if programs >= target else max(
            1, min(triton.cdiv(target, programs), nchunk // 2))
    cps = triton.cdiv(nchunk, nsplit)
    nsplit = triton.cdiv(nchunk, cps)  # no empty split
    if num_warps is None:
        num_warps = max(1, min(4, block_d * np2 // 512))
    if bwd_num_warps is None:
        if bwd == 'seq':
            bwd_num_warps = max(1, min(4, bwd_block_d * np2 // 256))
        else:
            bwd_num_warps = 4 if bwd_block_d * np2 * chunk >= 1024 else 2
    unroll = 1 if unroll is None else int(unroll)
    if unroll < 1:
        raise ValueError(f'unroll must be >= 1, got {unroll}')
    return dict(np2=np2, block_d=block_d, bwd_block_d=bwd_block_d,
                chunk=chunk, nchunk=nchunk, cps=cps, nsplit=nsplit,
                num_warps=num_warps, bwd_num_warps=bwd_num_warps,
                unroll=unroll, bwd=bwd)


def _strides3(x):
    return x.stride(0), x.stride(1), x.stride(2)


def channels_last(x: torch.Tensor) -> bool:
    """Whether a ``(B, D, L)`` tensor has its channels closer in memory than
    its tokens (a ``(B, L, D)`` tensor seen through a transpose)."""
    return x.shape[1] > 1 and x.stride(1) < x.stride(2)


def empty_like_layout(shape, like: torch.Tensor, dtype) -> torch.Tensor:
    """An empty ``(B, D, L)`` tensor, channels-last when ``like`` is (so the
    kernels write it with the access pattern they read ``like`` with), else
    contiguous."""
    if channels_last(like):
        return torch.empty(shape[0], shape[2], shape[1], device=like.device,
                           dtype=dtype).transpose(1, 2)
    return torch.empty(shape, device=like.device, dtype=dtype)


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


def fused_scan_forward(u, delta, A, B, C, Dskip, z, bias, softplus, perm,
                       kinds, plan):
    """Launch the forward: ``out, last, ckpt``.

    Args:
        u, delta (Tensor): ``(Bt, D, L)``, any strides.
        A (Tensor): ``(D, N)`` float32 contiguous.
        B, C (Tensor): ``(Bt, G, N, L)``, any strides.
        Dskip, bias (Tensor | None): ``(D,)`` float32 contiguous.
        z (Tensor | None): ``(Bt, DZ, L)``, ``DZ`` dividing ``D``.
        softplus (bool): Apply softplus to ``delta (+ bias)``.
        perm (Tensor): ``(K, L)`` int32 contiguous; ``kinds`` ``(K,)`` int32
            from :func:`order_kinds`.
        plan (dict): From :func:`plan_scan`.

    Returns:
        tuple: ``out`` ``(Bt, D, L)`` in ``u``'s dtype (channels-last when
        ``u`` is, see :func:`channels_last`, else contiguous), ``last``
        ``(Bt, D, N)`` float32, checkpoints ``(Bt, NT, N, D)`` float32.
    """
    nbatch, dim, length = u.shape
    groups, nstate = B.shape[1], A.shape[1]
    f32 = dict(device=u.device, dtype=torch.float32)
    nchunk, nsplit = plan['nchunk'], plan['nsplit']
    out = empty_like_layout((nbatch, dim, length), u, u.dtype)
    # states (N, D), channel-contiguous, as the kernels store them
    A = A.t().contiguous()
    ckpt = torch.empty(nbatch, nchunk, nstate, dim, **f32)
    end = torch.empty(nbatch, nsplit, nstate, dim, **f32)
    h0 = torch.zeros(nbatch, nsplit, nstate, dim, **f32)
    zz = u if z is None else z
    grid = (nbatch, dim // plan['block_d'], nsplit)
    args = (dim, length, zz.shape[1], *_strides3(u), *_strides3(delta),
            *_strides3(zz), *B.stride(), *C.stride(), *_strides3(out),
            nchunk, plan['cps'], nsplit, dim // perm.shape[0], dim // groups)
    meta = dict(N=nstate, NP=plan['np2'], BLOCK_D=plan['block_d'],
                CHUNK=plan['chunk'], UNROLL=plan['unroll'],
                SOFTPLUS=bool(softplus),
                HAS_BIAS=bias is not None, HAS_D=Dskip is not None,
                HAS_Z=z is not None, num_warps=plan['num_warps'])
    dsk = A if Dskip is None else Dskip
    bb = A if bias is None else bias
    if nsplit > 1:
        decay = torch.empty_like(end)
        _fwd_kernel[grid](u, delta, zz, A, B, C, dsk, bb, perm, kinds, h0,
                          out, ckpt, end, decay, *args, WRITE_Y=False, **meta)
        h0 = _compose_forward(end, decay)
    _fwd_kernel[grid](u, delta, zz, A, B, C, dsk, bb, perm, kinds, h0, out,
                      ckpt, end, end, *args, WRITE_Y=True, **meta)
    return out, end[:, -1].transpose(1, 2).contiguous(), ckpt


def fused_scan_backward(u, delta, A, B, C, Dskip, z, bias, softplus, perm,
                        kinds, plan, ckpt, gout, glast):
    """Launch the backward of :func:`fused_scan_forward`.

    Args:
        The inputs of :func:`fused_scan_forward`, its checkpoints ``ckpt``,
        ``gout`` ``(Bt, D, L)`` (copied to ``u``'s layout when its strides
        differ) and ``glast`` ``(Bt, D, N)``.

    Returns:
        tuple: ``du``, ``ddelta`` ``(Bt, D, L)`` in ``u``'s / ``delta``'s
        dtype and ``u``'s layout; ``dz`` (``z``'s shape and dtype, or
        None), ``dA`` ``(D, N)``, ``dB``, ``dC`` ``(Bt, G, N, L)`` float32,
        ``dD``, ``dbias`` ``(D,)`` float32 (or None).
    """
    nbatch, dim, length = u.shape
    groups, nstate = B.shape[1], A.shape[1]
    f32 = dict(device=u.device, dtype=torch.float32)
    bd, nsplit, nchunk = plan['bwd_block_d'], plan['nsplit'], plan['nchunk']
    shape = (nbatch, dim, length)
    # du, ddelta, dz and the incoming gout share one layout: u's
    du = empty_like_layout(shape, u, u.dtype)
    if gout.stride() != du.stride():
        gout = empty_like_layout(shape, u, gout.dtype).copy_(gout)
    ddl = empty_like_layout(shape, u, delta.dtype)
    dz_full = None if z is None else empty_like_layout(shape, u, z.dtype)
    A = A.t().contiguous()  # (N, D) as the kernels read it
    da = torch.empty(nbatch, nsplit, nstate, dim, **f32)
    db = torch.zeros(nbatch, groups, nstate, length, **f32)  # 'scan'
    dc = torch.zeros(nbatch, groups, nstate, length, **f32)
    dd = torch.empty(nbatch, nsplit, dim, **f32)
    dbias = torch.empty(nbatch, nsplit, dim, **f32)
    zz = u if z is None else z
    grid = (nbatch, dim // bd, nsplit)
    args = (dim, length, zz.shape[1], *_strides3(u), *_strides3(delta),
            *_strides3(zz), *B.stride(), *C.stride(), *_strides3(du), nchunk,
            plan['cps'], nsplit, dim // perm.shape[0], dim // groups, groups)
    meta = dict(N=nstate, NP=plan['np2'], BLOCK_D=bd, CHUNK=plan['chunk'],
                SOFTPLUS=bool(softplus), HAS_BIAS=bias is not None,
                HAS_D=Dskip is not None, HAS_Z=z is not None,
                num_warps=plan['bwd_num_warps'])
    dsk = A if Dskip is None else Dskip
    bb = A if bias is None else bias
    dzp = du if dz_full is None else dz_full
    glast = glast.float().transpose(1, 2).contiguous()  # (Bt, N, D)
    seq = plan['bwd'] == 'seq'
    if seq:
        # per-block dB/dC (every element written once), scratch states
        nblk = dim // bd
        db = torch.empty(nbatch, nblk, nstate, length, **f32)
        dc = torch.empty(nbatch, nblk, nstate, length, **f32)
        scratch = torch.empty(nbatch * nblk * nsplit * plan['chunk'] * bd *
                              plan['np2'], **f32)
        kernel = _bwd_seq_kernel
        meta['UNROLL'] = plan['unroll']
        args = args[:-1]  # no G

        def launch(g0, gend, decay, grads):
            kernel[grid](u, delta, zz, A, B, C, dsk, bb, perm, kinds, ckpt,
                         gout, g0, gend, decay, scratch, du, ddl, dzp, da,
                         db, dc, dd, dbias, *args, GRADS=grads, **meta)
    else:
        kernel = _bwd_kernel

        def launch(g0, gend, decay, grads):
            kernel[grid](u, delta, zz, A, B, C, dsk, bb, perm, kinds, ckpt,
                         gout, g0, gend, decay, du, ddl, dzp, da, db, dc, dd,
                         dbias, *args, GRADS=grads, **meta)

    if nsplit > 1:
        zeros = torch.zeros(nbatch, nsplit, nstate, dim, **f32)
        gstart, decay = torch.empty_like(zeros), torch.empty_like(zeros)
        launch(zeros, gstart, decay, False)
        g0 = _compose_backward(gstart, decay, glast)
    else:
        g0 = glast.reshape(nbatch, 1, nstate, dim)
    launch(g0, g0, g0, True)
    if seq:
        db = db.view(nbatch, groups, -1, nstate, length).sum(2)
        dc = dc.view(nbatch, groups, -1, nstate, length).sum(2)
    dz = None
    if z is not None:
        rep = dim // z.shape[1]
        dz = dz_full if rep == 1 else dz_full.unflatten(
            1, (rep, z.shape[1])).sum(1, dtype=torch.float32).to(z.dtype)
    return (du, ddl, dz, da.sum((0, 1)).t(), db, dc,
            dd.sum((0, 1)) if Dskip is not None else None,
            dbias.sum((0, 1)) if bias is not None else None)
