"""Numba kernels of the fused CPU inference path of the Mamba mixers.

These kernels compute, without autograd and without saving anything for a
backward pass, the part of a (bidirectional) Mamba mixer around its matrix
products, in the token-major layout the linear layers produce (``(Bt, L, C)``,
channels contiguous), so that every per-token load and store of a block of
channels is one contiguous vector:

* :func:`conv_silu`: the causal depthwise conv1d + SiLU of the forward
  direction into ``uf`` and, for two directions, the anti-causal one of the
  backward direction (``flip(conv(flip(x)))``) written over ``x`` in place (a
  token's input is never read again once its anti-causal output is written,
  since that pass goes forward).
* :func:`bimamba_scan`: per (batch, block of channels) and direction: the
  ``dt_proj`` product and ``softplus(. + delta_bias)``, ``exp(delta * A)``
  (as ``exp2(delta * A log2 e)``),
  the recurrence with float32 states and the ``D`` skip. The forward
  direction's ``y`` is written over its ``u`` (``uf``, read at the same token
  just before), the backward direction (walked from the last token) adds its
  ``y`` there: ``uf`` ends as ``y_fwd + y_bwd``.
* :func:`gate`: ``silu(z) * y * scale`` in place (one gate for both
  directions, not two copies of ``z``).
* :func:`add_rmsnorm`: ``residual + hidden`` and the RMSNorm of the sum, in
  one pass per token.

``exp``, ``softplus`` and ``silu`` are the vectorisable float32 versions of
:mod:`mmssm.ops._scan_numba` (relative error ~2e-7 and below); all
accumulation is float32, as in the training path, which these kernels match
to float32 round-off (tests/test_ops/test_mixer_cpu.py). Indices in the inner
loops are unsigned: numba's handling of negative indices otherwise keeps
LLVM from vectorising them.
"""
import math

import numpy as np
from numba import njit

from . import _numba_env  # noqa: F401  (before any compilation)
from ._scan_numba import LOG2E, exp2_nonpos, silu, softplus  # noqa: F401

U = np.uint64

_JIT = dict(fastmath=True, cache=True, nogil=True, error_model='numpy')

#: Tokens per tile of :func:`conv_silu` (a tile's accumulators, ``TILE x
#: chunk`` float32, stay in the L1/L2 cache).
CONV_TILE = 32


@njit(**_JIT)
def conv_silu(x, wf, bf, wb, bb, ndir, chunk, uf, w_begin, w_end):
    """Depthwise conv1d + SiLU of one or both directions.

    Args:
        x: ``(Bt, L, dim)`` ``in_proj`` output ``x``. With ``ndir == 2`` it is
            overwritten by the backward direction's ``silu(anti-causal
            conv(x))``.
        wf, bf: forward conv taps ``(K, dim)`` and bias ``(dim,)``.
        wb, bb: backward conv taps ``(K, dim)`` and bias (the official
            ``conv1d_b``, applied to the flipped sequence: ``u_b[t] = bb +
            sum_k wb[k] * x[t + K - 1 - k]``). Ignored when ``ndir == 1``.
        ndir: 1 or 2 directions.
        chunk: channels per work item.
        uf: ``(Bt, L, dim)`` output, ``silu(causal conv(x))``:
            ``u_f[t] = bf + sum_k wf[k] * x[t - K + 1 + k]``.
        w_begin, w_end: range of work items (batch * channel chunk).

    The tokens go in tiles of :data:`CONV_TILE`: a tile's accumulators get
    the bias, then one pass over the tile per tap (a contiguous
    multiply-add over the tile's rows), then the SiLU as they are stored
    (1.5-1.7x faster than all taps per token). The anti-causal pass writes a
    tile over ``x`` only after reading it, and reads only tokens of this
    and later tiles, which still hold their originals (the pass goes
    forward). The causal pass, which reads earlier tokens, runs first.
    """
    length, dim = x.shape[1], x.shape[2]
    ksize = wf.shape[0]
    nchunk = (dim + chunk - 1) // chunk
    acc = np.empty((CONV_TILE, chunk), dtype=np.float32)
    for w in range(w_begin, w_end):
        bi = w // nchunk
        c0i = (w - bi * nchunk) * chunk
        n = min(dim, c0i + chunk) - c0i
        c0 = U(c0i)
        xb = x[bi]
        for direction in range(ndir):
            fwd = direction == 0
            taps = wf if fwd else wb
            bias = bf if fwd else bb
            out = uf[bi] if fwd else xb
            for t0 in range(0, length, CONV_TILE):
                nt = min(CONV_TILE, length - t0)
                for i in range(nt):
                    iu = U(i)
                    for j in range(n):
                        acc[iu, U(j)] = bias[c0 + U(j)]
                for k in range(ksize):
                    ku = U(k)
                    # causal: x[t - (K - 1 - k)]; anti-causal: x[t + K - 1 - k]
                    shift = ksize - 1 - k
                    for i in range(nt):
                        s = t0 + i - shift if fwd else t0 + i + shift
                        if s < 0 or s >= length:
                            continue
                        su = U(s)
                        iu = U(i)
                        for j in range(n):
                            c = c0 + U(j)
                            acc[iu, U(j)] += taps[ku, c] * xb[su, c]
                for i in range(nt):
                    iu = U(i)
                    tu = U(t0 + i)
                    for j in range(n):
                        out[tu, c0 + U(j)] = silu(acc[iu, U(j)])


@njit(**_JIT)
def bimamba_scan(ub, uf, xdf, xdb, a_log_f, a_log_b, dtw_f, dtw_b, dtb_f,
                 dtb_b, d_f, d_b, ndir, bw, w_begin, w_end):
    """Selective scan of one or two directions; ``uf`` ends as their sum.

    Args:
        ub: ``(Bt, L, dim)`` backward direction's ``u`` (``ndir == 2``).
        uf: ``(Bt, L, dim)`` forward direction's ``u``, overwritten by
            ``y_fwd (+ y_bwd)`` (before the gate).
        xdf, xdb: ``(Bt, L, R + 2N)`` ``x_proj`` outputs (dt, B, C) of the
            forward and backward directions (``xdb`` unused for one).
        a_log_f, a_log_b: ``(dim, N)``. dtw_f, dtw_b: ``dt_proj`` weights
            ``(dim, R)``; dtb_f, dtb_b: their biases (``delta_bias``).
        d_f, d_b: ``D`` skips ``(dim,)``.
        ndir: 1 or 2.
        bw: channels per work item (the vectorised inner loops; wider blocks
            amortise the per-token work better, so the caller gives each
            thread one block per batch item).
        w_begin, w_end: range of work items (batch * channel block).

    Per token and direction: ``delta = softplus(dt . W_dt + bias)``, then
    for every state ``h = exp(delta * A) * h + delta * u * B``,
    ``y += C * h``; ``y += D * u``. The loop body is written once for both
    directions (a direction's arrays are picked before the token loop): a
    helper function called per token would cost reference counting of its
    array arguments.
    """
    length, dim = uf.shape[1], uf.shape[2]
    nstate = a_log_f.shape[1]
    npair = nstate - nstate % 2
    rank = dtw_f.shape[1]
    rank4 = rank - rank % 4
    nblk = (dim + bw - 1) // bw
    # Zero-padded block-local parameters: padded lanes have u = 0, so their
    # state stays 0 and nothing is written for them.
    atl = np.zeros((nstate, bw), dtype=np.float32)
    wdt = np.zeros((rank, bw), dtype=np.float32)
    bias = np.zeros(bw, dtype=np.float32)
    dsk = np.zeros(bw, dtype=np.float32)
    h = np.zeros((nstate, bw), dtype=np.float32)
    uv = np.zeros(bw, dtype=np.float32)
    dtv = np.zeros(bw, dtype=np.float32)
    duv = np.zeros(bw, dtype=np.float32)
    yv = np.zeros(bw, dtype=np.float32)
    for w in range(w_begin, w_end):
        bi = w // nblk
        d0i = (w - bi * nblk) * bw
        dl = min(bw, dim - d0i)
        d0 = U(d0i)
        yb = uf[bi]
        for direction in range(ndir):
            fwd = direction == 0
            a_log = a_log_f if fwd else a_log_b
            dt_w = dtw_f if fwd else dtw_b
            dt_b = dtb_f if fwd else dtb_b
            dskip = d_f if fwd else d_b
            xd = xdf[bi] if fwd else xdb[bi]
            us = uf[bi] if fwd else ub[bi]
            for j in range(dl):
                for n in range(nstate):
                    # A log2(e): exp(delta * A) = exp2(delta * atl)
                    atl[n, j] = -math.exp(a_log[d0i + j, n]) * LOG2E
                for r in range(rank):
                    wdt[r, j] = dt_w[d0i + j, r]
                bias[j] = dt_b[d0i + j]
                dsk[j] = dskip[d0i + j]
            for n in range(nstate):
                for j in range(bw):
                    h[n, j] = 0
            for i in range(length):
                t = U(i) if fwd else U(length - 1 - i)
                for j in range(dl):
                    uv[j] = us[t, d0 + U(j)]
                # dt_proj four ranks per pass over the block (a pass per
                # rank cost 3x its arithmetic in loads, stores and loop
                # entries), then any remaining ranks one by one
                if rank4:
                    x0 = xd[t, U(0)]
                    x1 = xd[t, U(1)]
                    x2 = xd[t, U(2)]
                    x3 = xd[t, U(3)]
                    for j in range(bw):
                        dtv[j] = bias[j] + x0 * wdt[0, j] + x1 * wdt[1, j] + \
                            x2 * wdt[2, j] + x3 * wdt[3, j]
                else:
                    for j in range(bw):
                        dtv[j] = bias[j]
                for r in range(4, rank4, 4):
                    x0 = xd[t, U(r)]
                    x1 = xd[t, U(r + 1)]
                    x2 = xd[t, U(r + 2)]
                    x3 = xd[t, U(r + 3)]
                    for j in range(bw):
                        dtv[j] += x0 * wdt[r, j] + x1 * wdt[r + 1, j] + \
                            x2 * wdt[r + 2, j] + x3 * wdt[r + 3, j]
                for r in range(rank4, rank):
                    xr = xd[t, U(r)]
                    for j in range(bw):
                        dtv[j] += xr * wdt[r, j]
                for j in range(bw):
                    d = softplus(dtv[j])
                    dtv[j] = d
                    duv[j] = d * uv[j]
                    yv[j] = dsk[j] * uv[j]
                # two states per pass over the block: dtv, duv and yv are
                # loaded (and yv stored) once for both (8 % faster on AVX2)
                for n in range(0, npair, 2):
                    bn0 = xd[t, U(rank + n)]
                    cn0 = xd[t, U(rank + nstate + n)]
                    bn1 = xd[t, U(rank + n + 1)]
                    cn1 = xd[t, U(rank + nstate + n + 1)]
                    for j in range(bw):
                        d = dtv[j]
                        du = duv[j]
                        h0 = exp2_nonpos(d * atl[n, j]) * h[n, j] + du * bn0
                        h1 = exp2_nonpos(d * atl[n + 1, j]) * h[n + 1, j] + \
                            du * bn1
                        h[n, j] = h0
                        h[n + 1, j] = h1
                        yv[j] += cn0 * h0 + cn1 * h1
                for n in range(npair, nstate):  # an odd last state
                    bn = xd[t, U(rank + n)]
                    cn = xd[t, U(rank + nstate + n)]
                    for j in range(bw):
                        hv = exp2_nonpos(dtv[j] * atl[n, j]) * h[n, j] + \
                            duv[j] * bn
                        h[n, j] = hv
                        yv[j] += cn * hv
                if fwd:
                    for j in range(dl):
                        yb[t, d0 + U(j)] = yv[j]
                else:
                    for j in range(dl):
                        yb[t, d0 + U(j)] += yv[j]


@njit(**_JIT)
def gate(z, y, scale, r_begin, r_end):
    """``z = silu(z) * y * scale`` for rows ``[r_begin, r_end)`` of the
    ``(rows, dim)`` arrays ``z`` and ``y``."""
    dim = z.shape[1]
    scale = np.float32(scale)
    for r in range(r_begin, r_end):
        ru = U(r)
        for j in range(dim):
            ju = U(j)
            z[ru, ju] = silu(z[ru, ju]) * y[ru, ju] * scale


@njit(**_JIT)
def add_rmsnorm(hidden, residual, has_residual, weight, eps, res_out, out,
                r_begin, r_end):
    """``res_out = residual + hidden``; ``out = rmsnorm(res_out) * weight``.

    Args:
        hidden, residual: ``(rows, C)``; ``residual`` is ignored when
            ``has_residual`` is False (``res_out = hidden``).
        weight: ``(C,)``. eps: added to the mean square.
        res_out, out: ``(rows, C)`` outputs.
        r_begin, r_end: range of rows.
    """
    width = hidden.shape[1]
    inv_w = np.float32(1.0 / width)
    eps = np.float32(eps)
    for r in range(r_begin, r_end):
        acc = np.float32(0.0)
        if has_residual:
            for c in range(width):
                v = residual[r, c] + hidden[r, c]
                res_out[r, c] = v
                acc += v * v
        else:
            for c in range(width):
                v = hidden[r, c]
                res_out[r, c] = v
                acc += v * v
        inv = np.float32(1.0) / np.sqrt(acc * inv_w + eps)
        for c in range(width):
            out[r, c] = res_out[r, c] * inv * weight[c]
