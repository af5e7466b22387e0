"""Numba kernels of the fused CPU inference path of the Mamba mixers.

These kernels compute, without autograd and without saving anything for a
backward pass, the part of a (bidirectional) Mamba mixer between ``in_proj``
and ``out_proj`` that is not a matrix product, in the token-major layout the
linear layers produce (``(Bt, L, C)``, channels contiguous), so that every
per-token load and store of a block of channels is one contiguous vector:

* :func:`conv_silu`: the causal depthwise conv1d + SiLU of the forward
  direction and, for two directions, the anti-causal one of the backward
  direction (``flip(conv(flip(x)))``), in one pass over the tokens. The
  backward direction's result overwrites ``x`` in place (a token's input is
  never read again once its anti-causal output is written, since the pass
  goes forward).
* :func:`bimamba_scan`: per (batch, block of ``BLOCK`` channels): the
  ``dt_proj`` product and ``softplus(. + delta_bias)``, ``exp(delta * A)``,
  the recurrence with fp32 states, the ``D`` skip, for the forward direction
  (kept in a block-local buffer) and then the backward direction (walked in
  reverse), and the output ``silu(z) * (y_fwd + y_bwd) * scale`` written over
  ``z`` in place: one gate, not two copies of ``z``.
* :func:`add_rmsnorm`: ``residual + hidden`` and the RMSNorm of the sum, in
  one pass per token.

``exp`` is :func:`mmssm.ops._scan_numba.fast_exp` (relative error ~2e-7);
``softplus`` and ``log1p`` are the vectorisable float32 versions below; all
accumulation is float32, as in the training path, which these kernels match
to float32 round-off (tests/test_ops/test_mixer_cpu.py).
"""
import math

import numpy as np
from numba import njit

from . import _numba_env  # noqa: F401  (before any compilation)
from ._scan_numba import fast_exp

#: Channels per work item (the inner, vectorised loop).
BLOCK = 64

U = np.uint64

_JIT = dict(fastmath=True, cache=True, nogil=True, error_model='numpy')

_LN2 = np.float32(0.6931471805599453)
_SQRT2M1 = np.float32(0.41421356237309503)
_THRESHOLD = np.float32(20.0)


@njit(inline='always', **_JIT)
def _log1p_unit(e):
    """``log1p(e)`` for ``0 <= e <= 1`` in float32 without cancellation.

    ``1 + e = m * 2^k`` with ``m`` in ``[sqrt(1/2), sqrt(2))`` and ``k`` 0 or
    1; ``log(m) = 2 atanh(s)`` with ``s = (m - 1) / (m + 1)`` formed from
    ``e`` directly (``e / (2 + e)``, or ``(e - 1) / (e + 3)`` for ``k = 1``),
    ``|s| <= 0.1716``, odd series to ``s^9`` (truncation < 1e-9).
    """
    big = e > _SQRT2M1
    s = (e - np.float32(1.0)) / (e + np.float32(3.0)) if big else \
        e / (e + np.float32(2.0))
    s2 = s * s
    p = s * (np.float32(2.0) + s2 * (np.float32(2.0 / 3.0) + s2 * (
        np.float32(2.0 / 5.0) + s2 * (np.float32(2.0 / 7.0) +
                                      s2 * np.float32(2.0 / 9.0)))))
    return p + _LN2 if big else p


@njit(inline='always', **_JIT)
def softplus(x):
    """``log1p(exp(x))``, or ``x`` above 20 (torch's threshold), float32."""
    v = max(x, np.float32(0.0)) + _log1p_unit(fast_exp(-abs(x)))
    return x if x > _THRESHOLD else v


@njit(inline='always', **_JIT)
def silu(x):
    """``x * sigmoid(x)``."""
    return x / (np.float32(1.0) + fast_exp(-x))


@njit(**_JIT)
def conv_silu(xz, dim, wf, bf, wb, bb, ndir, chunk, uf, w_begin, w_end):
    """Depthwise conv1d + SiLU of one or both directions.

    Args:
        xz: ``(Bt, L, 2 * dim)`` ``in_proj`` output; channels ``[0, dim)`` are
            ``x``. With ``ndir == 2`` they are overwritten by the backward
            direction's ``silu(anti-causal conv(x))``.
        dim: ``d_inner``.
        wf, bf: forward conv taps ``(K, dim)`` and bias ``(dim,)``.
        wb, bb: backward conv taps ``(K, dim)`` and bias (the official
            ``conv1d_b``, applied to the flipped sequence: ``u_b[t] = bb +
            sum_k wb[k] * x[t + K - 1 - k]``). Ignored when ``ndir == 1``.
        ndir: 1 or 2 directions.
        chunk: channels per work item.
        uf: ``(Bt, L, dim)`` output, ``silu(causal conv(x))``:
            ``u_f[t] = bf + sum_k wf[k] * x[t - K + 1 + k]``.
        w_begin, w_end: range of work items (batch * channel chunk).

    Indices are unsigned in the inner loops: numba's handling of negative
    indices otherwise keeps LLVM from vectorising them.
    """
    length = xz.shape[1]
    ksize = wf.shape[0]
    nchunk = (dim + chunk - 1) // chunk
    acc = np.empty(chunk, dtype=np.float32)
    for w in range(w_begin, w_end):
        bi = w // nchunk
        c0i = (w - bi * nchunk) * chunk
        n = min(dim, c0i + chunk) - c0i
        b = U(bi)
        c0 = U(c0i)
        # causal
        for t in range(length):
            tu = U(t)
            for j in range(n):
                acc[j] = bf[c0 + U(j)]
            for k in range(ksize):
                s = t - ksize + 1 + k
                if s >= 0:
                    su = U(s)
                    ku = U(k)
                    for j in range(n):
                        c = c0 + U(j)
                        acc[j] += wf[ku, c] * xz[b, su, c]
            for j in range(n):
                uf[b, tu, c0 + U(j)] = silu(acc[j])
        if ndir == 1:
            continue
        # anti-causal, in place: reads tokens >= t, which still hold their
        # originals (the pass goes forward; token t is overwritten last)
        for t in range(length):
            tu = U(t)
            for j in range(n):
                acc[j] = bb[c0 + U(j)]
            for k in range(ksize):
                s = t + ksize - 1 - k
                if s < length:
                    su = U(s)
                    ku = U(k)
                    for j in range(n):
                        c = c0 + U(j)
                        acc[j] += wb[ku, c] * xz[b, su, c]
            for j in range(n):
                xz[b, tu, c0 + U(j)] = silu(acc[j])


@njit(inline='always', **_JIT)
def _load_params(d0, dl, a_log, dt_w, dt_b, dskip, atl, wdt, bias, dsk):
    """Block-local copies of ``A = -exp(A_log)``, dt_proj weight/bias, D."""
    nstate = a_log.shape[1]
    rank = dt_w.shape[1]
    for j in range(dl):
        for n in range(nstate):
            atl[n, j] = -math.exp(a_log[d0 + j, n])
        for r in range(rank):
            wdt[r, j] = dt_w[d0 + j, r]
        bias[j] = dt_b[d0 + j]
        dsk[j] = dskip[d0 + j]


@njit(inline='always', **_JIT)
def _step(xd, b, t, rank, nstate, bw, uv, atl, wdt, bias, dsk, h, dtv,
          duv, yv):
    """One token of one direction: ``yv = C . h_t + D * u`` (updates ``h``).

    ``xd[b, t]`` is the token's ``x_proj`` row (dt, B, C); the other arrays
    are block-local, ``bw`` wide; ``b``, ``t`` unsigned.
    """
    for j in range(bw):
        dtv[j] = bias[j]
    for r in range(rank):
        x = xd[b, t, U(r)]
        ru = U(r)
        for j in range(bw):
            dtv[j] += x * wdt[ru, U(j)]
    for j in range(bw):
        d = softplus(dtv[j])
        dtv[j] = d
        duv[j] = d * uv[j]
        yv[j] = dsk[j] * uv[j]
    for n in range(nstate):
        bn = xd[b, t, U(rank + n)]
        cn = xd[b, t, U(rank + nstate + n)]
        nu = U(n)
        for j in range(bw):
            ju = U(j)
            hv = fast_exp(dtv[j] * atl[nu, ju]) * h[nu, ju] + duv[j] * bn
            h[nu, ju] = hv
            yv[j] += cn * hv


@njit(**_JIT)
def bimamba_scan(xz, dim, uf, xdf, xdb, a_log_f, a_log_b, dtw_f, dtw_b,
                 dtb_f, dtb_b, d_f, d_b, ndir, scale, bw, w_begin, w_end):
    """Selective scan of one or two directions with the gate, in place.

    Args:
        xz: ``(Bt, L, 2 * dim)``; channels ``[0, dim)`` hold the backward
            direction's ``u`` (from :func:`conv_silu`, ``ndir == 2``) and
            ``[dim, 2 dim)`` the gate ``z``, overwritten by the output
            ``silu(z) * (y_f + y_b) * scale`` (``silu(z) * y_f * scale`` for
            one direction).
        dim: ``d_inner``.
        uf: ``(Bt, L, dim)`` forward direction's ``u``.
        xdf, xdb: ``(Bt, L, R + 2N)`` ``x_proj`` outputs (dt, B, C) of the
            forward and backward directions (``xdb`` unused for one).
        a_log_f, a_log_b: ``(dim, N)``. dtw_f, dtw_b: ``dt_proj`` weights
            ``(dim, R)``; dtb_f, dtb_b: their biases (``delta_bias``).
        d_f, d_b: ``D`` skips ``(dim,)``.
        ndir: 1 or 2. scale: output scale (0.5 averages two directions).
        bw: channels per work item (the vectorised inner loops; wider blocks
            amortise the per-token work better, so the caller gives each
            thread one block per batch item).
        w_begin, w_end: range of work items (batch * channel block).
    """
    length = xz.shape[1]
    nstate = a_log_f.shape[1]
    rank = dtw_f.shape[1]
    nblk = (dim + bw - 1) // bw
    scale = np.float32(scale)
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
    yfw = np.empty((length, bw), dtype=np.float32)
    for w in range(w_begin, w_end):
        bi = w // nblk
        d0i = (w - bi * nblk) * bw
        dl = min(bw, dim - d0i)
        b = U(bi)
        d0 = U(d0i)
        zoff = U(dim + d0i)
        for j in range(bw):
            uv[j] = 0
        h[:] = 0
        _load_params(d0i, dl, a_log_f, dtw_f, dtb_f, d_f, atl, wdt, bias,
                     dsk)
        for t in range(length):
            tu = U(t)
            for j in range(dl):
                uv[j] = uf[b, tu, d0 + U(j)]
            _step(xdf, b, tu, rank, nstate, bw, uv, atl, wdt, bias, dsk, h, dtv,
                  duv, yv)
            if ndir == 1:
                for j in range(dl):
                    c = zoff + U(j)
                    xz[b, tu, c] = silu(xz[b, tu, c]) * yv[j] * scale
            else:
                for j in range(bw):
                    yfw[tu, U(j)] = yv[j]
        if ndir == 1:
            continue
        _load_params(d0i, dl, a_log_b, dtw_b, dtb_b, d_b, atl, wdt, bias,
                     dsk)
        h[:] = 0
        for t in range(length - 1, -1, -1):
            tu = U(t)
            for j in range(dl):
                uv[j] = xz[b, tu, d0 + U(j)]
            _step(xdb, b, tu, rank, nstate, bw, uv, atl, wdt, bias, dsk, h, dtv,
                  duv, yv)
            for j in range(dl):
                c = zoff + U(j)
                xz[b, tu, c] = silu(xz[b, tu, c]) * (yfw[tu, U(j)] + yv[j]) \
                    * scale


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
