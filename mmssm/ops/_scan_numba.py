"""Numba kernels of the CPU selective scan (forward and backward).

Layout: ``u``, ``dt``, ``y`` and their gradients are ``(Bt, D, L)``, ``B`` and
``C`` ``(Bt, G, N, L)``, as the op takes them (no copies); only ``A`` is
transposed to ``(N, D)`` and the small states are ``(Bt, N, D)``. The work is
split into (batch, channel block) items, ranges of which the caller runs on
its threads; each item keeps its
``(N, BLOCK)`` state in local arrays, vectorised over the block of channels,
and walks the tokens in the order ``idx[k]`` (the tokens are read and written
through the index, never gathered into copies).

Memory: the forward saves the state every ``every`` visited tokens; the
backward recomputes the states of one segment of ``every`` tokens at a time
from its checkpoint and walks it backwards, the scheme of the mamba_ssm CUDA
kernel. ``exp`` is a float32 Cody-Waite + degree-5 minimax polynomial (relative
error 2.1e-7) that the compiler vectorises; float64 inputs use ``math.exp``.
The inference kernels (:func:`scan_fwd_infer` and the mixer kernels) form
``exp(delta * A)`` as :func:`exp2_nonpos` of ``delta * (A log2 e)`` (relative
error 2.4e-7, two vector operations fewer per state update).
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from . import _numba_env  # noqa: F401  (before any compilation)

#: Channels per work item (the inner, vectorised loop).
BLOCK = 16


@intrinsic
def _int32_bits_as_float32(typingctx, value):
    """Reinterpret the low 32 bits of an integer as a float32 (a bitcast)."""
    if not isinstance(value, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        bits = args[0]
        if value.bitwidth > 32:
            bits = builder.trunc(bits, ir.IntType(32))
        return builder.bitcast(bits, ir.FloatType())

    return types.float32(value), codegen


@intrinsic
def _float32_bits(typingctx, value):
    """The bits of a float32 as an int32 (a bitcast)."""
    if not (isinstance(value, types.Float) and value.bitwidth == 32):
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(value), codegen


def fast_exp(x):
    """``exp``: vectorisable polynomial for float32, ``math.exp`` otherwise."""
    return math.exp(x)


def exp_nonpos(x):
    """``exp`` of ``x <= 0`` (``exp(delta * A)``: ``delta >= 0``, ``A < 0``).

    :func:`fast_exp` without its upper clamp: one vector operation less in
    the innermost loop of the scans. A positive ``x`` is out of contract.
    """
    return math.exp(x)


def exp2_nonpos(x):
    """``2 ** x`` of ``x <= 0``: the inference scans' ``exp(delta * A)``
    as ``2 ** (delta * (A * log2 e))``, ``A * log2 e`` formed once per
    channel block.

    Reduction ``x = k + f`` with ``k = rint(x)``, ``|f| <= 1/2`` (exact, no
    ``ln 2`` constants), a degree-5 polynomial for ``2 ** f`` fitted for
    minimal relative error (2.4e-7 in float32), ``k`` added to the exponent
    bits; ``x`` is clamped at -125 (a result below 2.4e-38 becomes 2.4e-38,
    as :func:`exp_nonpos` clamps at exp(-86.5)). Two vector operations fewer
    per state update than :func:`exp_nonpos`: the inference scan is ~10 %
    faster. A positive ``x`` is out of contract.
    """
    return 2.0**x


_EXP2_COEF = tuple(np.float32(c) for c in (
    1.0000001192092896, 0.6931469440460205, 0.24022120237350464,
    0.05550713092088699, 0.009675518609583378, 0.001327640376985073))
#: ``log2(e)``: ``A`` times this is the inference scans' ``exp2`` argument.
LOG2E = np.float32(1.4426950408889634)


def _exp2_poly_impl():
    lo = np.float32(-125.0)
    c0, c1, c2, c3, c4, c5 = _EXP2_COEF

    def impl(x):
        x = max(x, lo)
        k = np.rint(x)
        f = x - k
        p = c0 + f * (c1 + f * (c2 + f * (c3 + f * (c4 + f * c5))))
        return _int32_bits_as_float32(
            _float32_bits(p) + (np.int32(k) << np.int32(23)))

    return impl


# Cody-Waite reduction ``x = k ln2 + r``, ``|r| <= ln2 / 2``, and a degree-5
# polynomial for ``exp(r)`` fitted for minimal relative error on that range
# (float32 Horner evaluation: max relative error 2.1e-7, the Taylor polynomial
# of degree 6 it replaces gave ~2e-7 with one more FMA); ``2^k`` is added to
# the exponent bits of the result (an integer add instead of building 2^k and
# multiplying). The clamps keep ``k`` in [-125, 127], where that add cannot
# overflow or leave the normal range.
_EXP_COEF = tuple(np.float32(c) for c in (
    1.0000001192092896, 0.9999997019767761, 0.49998894333839417,
    0.16667574644088745, 0.04191537946462631, 0.008297644555568695))
_EXP_LO = np.float32(-86.5)
_EXP_HI = np.float32(88.0)


def _exp_poly_impl(clamp_high):
    log2e = np.float32(1.4426950408889634)
    ln2_hi = np.float32(0.693359375)
    ln2_lo = np.float32(-2.12194440e-4)
    lo, hi = _EXP_LO, _EXP_HI
    half = np.float32(0.5)
    c0, c1, c2, c3, c4, c5 = _EXP_COEF

    def impl(x):
        x = max(x, lo)
        if clamp_high:
            x = min(x, hi)
        # np.floor keeps k a float32 (math.floor would make it an int64,
        # whose conversions stop LLVM from vectorising the loop)
        k = np.floor(x * log2e + half)
        r = x - k * ln2_hi - k * ln2_lo
        p = c0 + r * (c1 + r * (c2 + r * (c3 + r * (c4 + r * c5))))
        return _int32_bits_as_float32(
            _float32_bits(p) + (np.int32(k) << np.int32(23)))

    return impl


def _math_exp(x):
    return math.exp(x)


def _math_exp2(x):
    return 2.0**x


def _overload_float32(func, impl32, impl64):
    """Compile ``func`` (inlined) as ``impl32`` for float32 arguments and as
    ``impl64`` (the libm function) for any other type."""

    @overload(func, inline='always')
    def _typed(x):
        if isinstance(x, types.Float) and x.bitwidth == 32:
            return impl32
        return impl64


_overload_float32(fast_exp, _exp_poly_impl(True), _math_exp)
_overload_float32(exp_nonpos, _exp_poly_impl(False), _math_exp)
_overload_float32(exp2_nonpos, _exp2_poly_impl(), _math_exp2)


# No numba threading layer: the caller runs ranges of work items on its own
# threads (the kernels release the GIL). numba's workqueue layer spins and
# costs milliseconds per launch on a busy machine.
_JIT = dict(fastmath=True, cache=True, nogil=True)
# For kernels that divide: numpy's error model (no zero-divisor checks, which
# would stop LLVM from vectorising the loops).
_JIT_NP = dict(_JIT, error_model='numpy')
U = np.uint64

# ``log1p(e) / e`` on ``[0, 1]``: degree-8 polynomial fitted for minimal
# relative error (weighted least squares iterated towards minimax; max
# relative error of ``e * q(e)`` in float32 Horner evaluation 1.8e-7).
_LOG1P_COEF = tuple(np.float32(c) for c in (
    0.9999999403953552, -0.4999949336051941, 0.33319082856178284,
    -0.24842894077301025, 0.19105741381645203, -0.13662798702716827,
    0.07822175323963165, -0.029503202065825462, 0.005232301540672779))


@njit(inline='always', **_JIT_NP)
def _log1p_unit(e):
    """``log1p(e)`` for ``0 <= e <= 1`` in float32, relative error 1.8e-7.

    ``e * q(e)`` with the polynomial ``q`` above: no division and no
    branch (the atanh series it replaces needed a division and a select,
    and made softplus 1.4x slower), and no ``1 + e`` whose rounding would
    lose the low bits of a small ``e``.
    """
    q0, q1, q2, q3, q4, q5, q6, q7, q8 = _LOG1P_COEF
    return e * (q0 + e * (q1 + e * (q2 + e * (q3 + e * (q4 + e * (
        q5 + e * (q6 + e * (q7 + e * q8))))))))


@njit(inline='always', **_JIT_NP)
def softplus(x):
    """``max(x, 0) + log1p(exp(-|x|))``, float32.

    Equals torch's ``softplus`` (``x`` above its threshold 20) without the
    threshold: above 20 the added term is below 2.1e-9, less than half an
    ulp of ``x``, so the sum rounds to ``x`` exactly. Without the select,
    LLVM no longer turns ``dt = softplus(dt)`` into a masked store, which is
    microcoded and slow on AMD Zen (the select cost the Vim scan ~15 %).
    """
    return max(x, np.float32(0.0)) + _log1p_unit(fast_exp(-abs(x)))


@njit(inline='always', **_JIT_NP)
def silu(x):
    """``x * sigmoid(x)``."""
    return x / (np.float32(1.0) + fast_exp(-x))




@njit(inline='always', **_JIT)
def _work_item(w, nblk, blk_start, blk_len, blk_group, blk_order):
    """Batch index, block, first channel, channels, group and order of work
    item ``w`` (batch-major over the channel blocks)."""
    b = w // nblk
    blk = w - b * nblk
    return (b, blk, blk_start[blk], blk_len[blk], blk_group[blk],
            blk_order[blk])


@njit(**_JIT)
def scan_fwd(u, dt, at, bm, cm, idx, blk_start, blk_len, blk_group, blk_order,
             every, y, ckpt, last, w_begin, w_end):
    """Forward scan; writes ``y``, the checkpoints and the last state.

    Args:
        u, dt: ``(Bt, D, L)``. at: ``(N, D)``. bm, cm: ``(Bt, G, N, L)``.
        idx: ``(K, L)`` int64 visiting orders. blk_*: ``(nb,)`` int64 channel
            start, length (<= BLOCK), group and order of each channel block.
        every: checkpoint interval. y: ``(Bt, D, L)`` output.
        ckpt: ``(Bt, ceil(L / every), N, D)`` state before each segment.
        last: ``(Bt, N, D)`` state after the last visited token.
        w_begin, w_end: range of work items (batch * block) to compute.
    """
    nbatch, _, length = u.shape
    nstate = at.shape[0]
    nblk = blk_start.shape[0]
    for w in range(w_begin, w_end):
        b, blk, d0, dl, g, k = _work_item(w, nblk, blk_start, blk_len,
                                          blk_group, blk_order)
        # Local, zero-padded copies: the inner loops run over the whole
        # block (a constant trip count the compiler vectorises); padded lanes
        # have dt = u = 0 and stay 0.
        h = np.zeros((nstate, BLOCK), dtype=u.dtype)
        atl = np.zeros((nstate, BLOCK), dtype=u.dtype)
        for n in range(nstate):
            for j in range(dl):
                atl[n, j] = at[n, d0 + j]
        dtv = np.zeros(BLOCK, dtype=u.dtype)
        duv = np.zeros(BLOCK, dtype=u.dtype)
        yv = np.empty(BLOCK, dtype=u.dtype)
        for t in range(length):
            if t % every == 0:
                c = t // every
                for n in range(nstate):
                    for j in range(dl):
                        ckpt[b, c, n, d0 + j] = h[n, j]
            p = idx[k, t]
            for j in range(dl):
                dtv[j] = dt[b, d0 + j, p]
                duv[j] = dtv[j] * u[b, d0 + j, p]
            for j in range(BLOCK):
                yv[j] = 0
            for n in range(nstate):
                bn = bm[b, g, n, p]
                cn = cm[b, g, n, p]
                for j in range(BLOCK):
                    hv = exp_nonpos(dtv[j] * atl[n, j]) * h[n, j] + duv[j] * bn
                    h[n, j] = hv
                    yv[j] += cn * hv
            for j in range(dl):
                y[b, d0 + j, p] = yv[j]
        for n in range(nstate):
            for j in range(dl):
                last[b, n, d0 + j] = h[n, j]


@njit(**_JIT)
def scan_bwd(u, dt, at, bm, cm, idx, blk_start, blk_len, blk_group, blk_order,
             every, ckpt, gy, glast, du, ddt, dat, dbp, dcp, w_begin, w_end):
    """Backward scan: recompute each segment from its checkpoint, walk back.

    Args:
        u, dt, at, bm, cm, idx, blk_*, every, ckpt: as in :func:`scan_fwd`.
        gy: ``(Bt, D, L)`` gradient of ``y``. glast: ``(Bt, N, D)`` gradient of
            the last state (zeros when unused).
        du, ddt: ``(Bt, D, L)`` outputs. dat: ``(Bt, N, D)`` output (summed
            over the batch by the caller). dbp, dcp: ``(Bt, nb, N, L)``
            per-block partial gradients of B and C (summed over the blocks of
            each group by the caller).
        w_begin, w_end: range of work items (batch * block) to compute.
    """
    nbatch, _, length = u.shape
    nstate = at.shape[0]
    nblk = blk_start.shape[0]
    nseg = ckpt.shape[1]
    for w in range(w_begin, w_end):
        b, blk, d0, dl, g, k = _work_item(w, nblk, blk_start, blk_len,
                                          blk_group, blk_order)
        # Zero-padded local copies, as in scan_fwd (padded lanes stay 0).
        hs = np.zeros((every + 1, nstate, BLOCK), dtype=u.dtype)
        av = np.zeros((every, nstate, BLOCK), dtype=u.dtype)
        gh = np.zeros((nstate, BLOCK), dtype=u.dtype)
        da = np.zeros((nstate, BLOCK), dtype=u.dtype)
        atl = np.zeros((nstate, BLOCK), dtype=u.dtype)
        for n in range(nstate):
            for j in range(dl):
                atl[n, j] = at[n, d0 + j]
                gh[n, j] = glast[b, n, d0 + j]
        dtv = np.zeros(BLOCK, dtype=u.dtype)
        uv = np.zeros(BLOCK, dtype=u.dtype)
        gyv = np.zeros(BLOCK, dtype=u.dtype)
        duv = np.zeros(BLOCK, dtype=u.dtype)
        ddv = np.zeros(BLOCK, dtype=u.dtype)
        gbv = np.zeros((nstate, BLOCK), dtype=u.dtype)
        gcv = np.zeros((nstate, BLOCK), dtype=u.dtype)
        zero = np.zeros(1, dtype=u.dtype)[0]
        for c in range(nseg - 1, -1, -1):
            t0 = c * every
            t1 = min(length, t0 + every)
            for n in range(nstate):
                for j in range(dl):
                    hs[0, n, j] = ckpt[b, c, n, d0 + j]
            # Recompute the states of the segment.
            for i in range(t1 - t0):
                p = idx[k, t0 + i]
                for j in range(dl):
                    dtv[j] = dt[b, d0 + j, p]
                    duv[j] = dtv[j] * u[b, d0 + j, p]
                for n in range(nstate):
                    bn = bm[b, g, n, p]
                    for j in range(BLOCK):
                        a = exp_nonpos(dtv[j] * atl[n, j])
                        av[i, n, j] = a
                        hs[i + 1, n, j] = a * hs[i, n, j] + duv[j] * bn
            # Walk the segment backwards; gh holds a_{t+1} * dL/dh_{t+1}.
            for i in range(t1 - t0 - 1, -1, -1):
                p = idx[k, t0 + i]
                for j in range(dl):
                    dtv[j] = dt[b, d0 + j, p]
                    uv[j] = u[b, d0 + j, p]
                    gyv[j] = gy[b, d0 + j, p]
                for j in range(BLOCK):
                    duv[j] = 0
                    ddv[j] = 0
                for n in range(nstate):
                    bn = bm[b, g, n, p]
                    cn = cm[b, g, n, p]
                    for j in range(BLOCK):
                        ght = gh[n, j] + gyv[j] * cn
                        a = av[i, n, j]
                        ahp = ght * a * hs[i, n, j]
                        gdt = ght * dtv[j]
                        gbv[n, j] = gdt * uv[j]
                        gcv[n, j] = gyv[j] * hs[i + 1, n, j]
                        duv[j] += gdt * bn
                        ddv[j] += ahp * atl[n, j] + ght * bn * uv[j]
                        da[n, j] += ahp * dtv[j]
                        gh[n, j] = ght * a
                # dB, dC of this token: sums over the channels of the block.
                for n in range(nstate):
                    sum_b = zero
                    sum_c = zero
                    for j in range(BLOCK):
                        sum_b += gbv[n, j]
                        sum_c += gcv[n, j]
                    dbp[b, blk, n, p] = sum_b
                    dcp[b, blk, n, p] = sum_c
                for j in range(dl):
                    du[b, d0 + j, p] = duv[j]
                    ddt[b, d0 + j, p] = ddv[j]
        for n in range(nstate):
            for j in range(dl):
                dat[b, n, d0 + j] = da[n, j]


@njit(**_JIT_NP)
def scan_fwd_infer(u, dt, at, bm, cm, idx, blk_start, blk_len, blk_group,
                   blk_order, bias, dsk, z, use_softplus, has_z, y, last,
                   w_begin, w_end):
    """Inference forward with the elementwise parts fused, float32.

    ``y = (scan(u, softplus(dt + bias)) + D * u) * silu(z)``; no
    checkpoints (nothing is saved for a backward pass).

    Args:
        u, dt, at, bm, cm, idx, blk_*: as in :func:`scan_fwd`.
        bias, dsk: ``(D,)`` delta bias and skip (zeros when absent).
        z: ``(Bt, D, L)`` gate (read only when ``has_z``).
        use_softplus: apply softplus to ``dt + bias``.
        y: ``(Bt, D, L)`` output. last: ``(Bt, N, D)`` last state.
        w_begin, w_end: range of work items (batch * block) to compute.
    """
    nstate = at.shape[0]
    nblk = blk_start.shape[0]
    h = np.zeros((nstate, BLOCK), dtype=np.float32)
    atl = np.zeros((nstate, BLOCK), dtype=np.float32)
    bl = np.zeros(BLOCK, dtype=np.float32)
    dl_ = np.zeros(BLOCK, dtype=np.float32)
    dtv = np.zeros(BLOCK, dtype=np.float32)
    uv = np.zeros(BLOCK, dtype=np.float32)
    duv = np.zeros(BLOCK, dtype=np.float32)
    yv = np.zeros(BLOCK, dtype=np.float32)
    length = u.shape[2]
    for w in range(w_begin, w_end):
        bi, blk, d0, dl, g, k = _work_item(w, nblk, blk_start, blk_len,
                                           blk_group, blk_order)
        ub, db, yb = u[bi], dt[bi], y[bi]
        bmb, cmb = bm[bi, g], cm[bi, g]
        zb = z[bi] if has_z else z[0]
        for n in range(nstate):
            for j in range(BLOCK):
                h[n, j] = 0
                # A log2(e): exp(delta * A) = exp2(delta * atl)
                atl[n, j] = at[n, d0 + j] * LOG2E if j < dl else 0
        for j in range(BLOCK):
            bl[j] = bias[d0 + j] if j < dl else 0
            dl_[j] = dsk[d0 + j] if j < dl else 0
            uv[j] = 0
            dtv[j] = 0
        for t in range(length):
            p = U(idx[k, t])
            for j in range(dl):
                c = U(d0 + j)
                uv[j] = ub[c, p]
                dtv[j] = db[c, p]
            for j in range(BLOCK):
                v = dtv[j] + bl[j]
                if use_softplus:
                    v = softplus(v)
                duv[j] = v * uv[j]
                yv[j] = dl_[j] * uv[j]
                dtv[j] = v
            for n in range(nstate):
                bn = bmb[U(n), p]
                cn = cmb[U(n), p]
                for j in range(BLOCK):
                    hv = exp2_nonpos(dtv[j] * atl[n, j]) * h[n, j] + \
                        duv[j] * bn
                    h[n, j] = hv
                    yv[j] += cn * hv
            if has_z:
                for j in range(dl):
                    c = U(d0 + j)
                    yb[c, p] = yv[j] * silu(zb[c, p])
            else:
                for j in range(dl):
                    yb[U(d0 + j), p] = yv[j]
        for n in range(nstate):
            for j in range(dl):
                last[bi, n, d0 + j] = h[n, j]
