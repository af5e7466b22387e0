"""Portable selective scan in plain torch operators (``impl='chunked'``).

For any device torch supports (MPS, XPU, ROCm, CUDA without Triton, CPU) and
for graphs that must hold only standard operators (``torch.export`` of the
whole scan, ONNX later). No Python loop over the tokens: the recurrence
``h_t = a_t * h_{t-1} + b_t`` (``a_t = exp(dt_t * A)``, ``b_t = dt_t * B_t *
u_t``, per batch, channel and state) is an associative scan over pairs
``(a, b)``, composed as ``(a2, b2) o (a1, b1) = (a2 * a1, a2 * b1 + b2)``:

1. the tokens are cut into chunks of ``chunk`` (padding with the identity
   ``(1, 0)``), and each chunk is scanned with ``log2(chunk)`` doubling steps
   (Hillis-Steele: after the step of offset ``o`` every token holds the
   composition of the ``2 * o`` tokens up to it), elementwise over
   ``(B, D, N, L)``;
2. the chunks' totals are scanned the same way (``log2(L / chunk)`` steps on
   a tensor ``chunk`` times smaller), giving the state entering each chunk;
3. ``h_t = h_local_t + a_cum_t * h_in``, then ``y_t = sum_n C_t * h_t``.

Every factor ``a`` is in ``(0, 1]`` (``A < 0``, ``dt >= 0`` after softplus):
the products cannot overflow, and the sums are those of the sequential loop
in another association, so the result equals the reference to float32
round-off (tests: values and gradients, every order). Gradients come from
autograd. Memory is ``O(B * D * N * L)`` per step kept for the backward (a
few times the reference's), time ``O(B * D * N * L * log2(chunk))``: a
portable path, not a fast one; the CPU and Triton paths stay the defaults on
their devices. Tokens are visited through the order index (gathered once
into each channel's order, scattered back at the end), so every order of
:func:`mmssm.ops.selective_scan` works. This module imports torch only.
"""
import torch
import torch.nn.functional as F

from .scan_common import scan_epilogue, scan_prologue, visiting_order_inputs

__all__ = ['scan_chunked', 'CHUNK']

#: Tokens per chunk (a power of two).
CHUNK = 64


def _doubling_scan(a, b, steps):
    """Inclusive scan of ``(a, b)`` pairs along the last dim, ``steps``
    doubling steps (enough for ``2 ** steps`` elements)."""
    offset = 1
    for _ in range(steps):
        # token t composes with token t - offset (identity before the start)
        a_prev = F.pad(a[..., :-offset], (offset, 0), value=1.0)
        b_prev = F.pad(b[..., :-offset], (offset, 0), value=0.0)
        b = a * b_prev + b
        a = a * a_prev
        offset *= 2
    return a, b


def scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                 return_last_state, perm, chunk=CHUNK):
    """Body of ``selective_scan(..., impl='chunked')`` once the inputs are
    checked (arguments as :func:`mmssm.ops.selective_scan`; ``perm`` is
    None or the ``(K, L)`` orders)."""
    if chunk < 1 or chunk & (chunk - 1):
        raise ValueError(f'scan_chunked: chunk must be a power of two, got '
                         f'{chunk}')
    batch, dim, length = u.shape
    nstate = A.shape[1]
    cdt, u_f, dt, B4, C4 = scan_prologue(u, delta, B, C, delta_bias,
                                         delta_softplus)
    u_v, dt, Bd, Cd, index = visiting_order_inputs(u_f, dt, B4, C4, perm)
    a = torch.exp(dt[:, :, None, :] * A.to(cdt)[None, :, :, None])
    b = (dt * u_v)[:, :, None, :] * Bd
    # 1. chunks of `size` tokens (identity padding at the end)
    size = min(chunk, 1 << max(0, (length - 1).bit_length()))
    nchunk = -(-length // size)
    pad = nchunk * size - length
    if pad:
        a = F.pad(a, (0, pad), value=1.0)
        b = F.pad(b, (0, pad), value=0.0)
    a = a.reshape(batch, dim, nstate, nchunk, size)
    b = b.reshape(batch, dim, nstate, nchunk, size)
    a_cum, h_local = _doubling_scan(a, b, (size - 1).bit_length())
    # 2. the state entering each chunk: scan of the chunks' totals, shifted
    if nchunk > 1:
        tot_a, tot_b = _doubling_scan(a_cum[..., -1], h_local[..., -1],
                                      (nchunk - 1).bit_length())
        h_in = F.pad(tot_b[..., :-1], (1, 0), value=0.0)
        # 3. every token's state
        h = h_local + a_cum * h_in[..., None]
    else:
        h = h_local
    h = h.reshape(batch, dim, nstate, nchunk * size)[..., :length]
    y = (h * Cd).sum(2)
    last = h[..., -1]
    if index is not None:
        y = torch.zeros_like(y).scatter(-1, index, y)
    y = scan_epilogue(y, u_f, D, z, u.dtype)
    return (y, last) if return_last_state else y
