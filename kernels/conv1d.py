"""Triton kernels of the causal depthwise conv1d + bias + SiLU of Mamba.

One launch computes the conv of ``K`` directions of a bidirectional mixer at
once (the input is read once), each direction being either

* forward (causal): ``u[t] = silu(b + sum_j w[j] * x[t - (W-1) + j])``, zero
  padding on the left (Mamba's conv), or
* reverse (anti-causal): ``u[t] = silu(b + sum_j w[j] * x[t + (W-1) - j])``,
  zero padding on the right, which equals ``flip(conv(flip(x)))``: the conv of
  the backward branch of Vim, without flipping anything in memory.

Layouts. ``x`` is ``(B, C, L)`` with any strides: the mixer passes the
``x`` half of ``in_proj``'s ``(B, L, 2C)`` output transposed, so the channels
are contiguous and nothing is copied. The output ``u`` is ONE contiguous
``(B, K * C, L)`` tensor, direction ``k`` in channels ``[k * C, (k + 1) * C)``,
the layout the selective scan reads. Every program loads the ``2W - 1``
shifted ``(BLOCK_C, BLOCK_L)`` tiles of ``x`` that the taps of all
directions need once (the halo comes from the cache) and keeps them in
registers. The kernels take the taps as ``(K, W, C)`` (a thread's channels
contiguous); the launch helpers transpose the ``(K, C, W)`` weight.

Backward, two kernels. (1) ``g_k = du_k * silu'(a_k)``, the pre-activation
``a_k`` recomputed from the same ``2W - 1`` tiles of ``x`` (only ``x`` is
saved by the forward), written to a ``(B, L, K * C)`` buffer in ``x``'s dtype
(channels contiguous, like ``x``); ``dweight`` and ``dbias`` are accumulated
elementwise in float32 over ``TILES`` consecutive tiles, reduced once per
program and written as partial sums ``(programs, K * (W + 1), C)`` that the
launch helper sums with torch (deterministic, no atomics). (2) ``dx[t] =
sum_k sum_j w_k[j] * g_k[t + s_k(j)]`` (``s = W - 1 - j`` forward,
``j - (W - 1)`` reverse) from shifted loads of ``g``, summed over the
directions and written in ``x``'s layout. A single kernel would save the
write and read of ``g`` but has to recompute ``a`` and the sigmoid at the
``W`` shifted positions of each direction (Triton cannot shift a register
tile): in the sm_90 SASS for ``K = 2``, ``W = 4`` that was about 260
instructions per element against about 150 for the two kernels together,
and compute, not memory, bounds both at these counts.

Everything accumulates in float32; float16/bfloat16 inputs are read and
``u`` and ``dx`` written in the input's dtype. Specialisations: the kernel
width ``W``, the number of directions ``K`` and their kinds (a bit mask), the
presence of a bias, and the tile sizes (fixed, no autotuning).

This module holds only the kernels and their launch helpers
(:func:`conv1d_silu_forward`, :func:`conv1d_silu_backward`); it imports torch
and triton and nothing of mmssm. The ``autograd.Function``, the dispatch and
the torch reference are in :mod:`mmssm.ops.conv1d_triton`.
"""
import torch
import triton
import triton.language as tl

__all__ = ['conv1d_silu_forward', 'conv1d_silu_backward']

# Tiles (channels x tokens, warps), chosen from the sm_90 SASS of K = 2,
# W = 4 (float32 and bfloat16; compiled without a GPU): no spills, at most
# ~120 registers (>= 16 resident warps per multiprocessor), about 80
# (forward), 115 (g) and 40 (dx) instructions per element. Not yet timed on
# a GPU (tools/analysis_tools/benchmark_conv1d.py).
#: Forward kernel.
FWD_BLOCK_C, FWD_BLOCK_L, FWD_WARPS = 32, 64, 8
#: Backward, step 1 (g, dweight, dbias): 10 float32 accumulator tiles live.
BWD_BLOCK_C, BWD_BLOCK_L, BWD_WARPS = 32, 16, 8
#: Backward, step 2 (dx).
DX_BLOCK_C, DX_BLOCK_L, DX_WARPS = 32, 32, 4
#: Backward: a program reduces dweight/dbias over up to this many tiles.
BWD_MAX_TILES = 16
#: Backward: aim for at least this many programs before merging tiles.
BWD_TARGET_PROGRAMS = 4096


@triton.jit
def _load_shifted(x_row, sxl, offs_l, mask_c, L, W: tl.constexpr):
    """The ``2W - 1`` tiles ``x[:, t + s - (W - 1)]``, ``s = 0 .. 2W - 2``,
    in float32, zero outside ``[0, L)`` (the conv's zero padding)."""
    xs = ()
    for s in tl.static_range(2 * W - 1):
        pos = offs_l + (s - (W - 1))
        mask = mask_c[:, None] & ((pos >= 0) & (pos < L))[None, :]
        xs = xs + (tl.load(x_row + pos[None, :] * sxl, mask=mask,
                           other=0.).to(tl.float32), )
    return xs


@triton.jit
def _load_taps(w_ptr, k, offs_c, mask_c, C, W: tl.constexpr):
    """The ``W`` taps of direction ``k`` of the ``(K, W, C)`` weight as
    float32 ``(BLOCK_C,)`` vectors."""
    ws = ()
    for j in tl.static_range(W):
        ws = ws + (tl.load(w_ptr + (k * W + j) * C + offs_c, mask=mask_c,
                           other=0.).to(tl.float32), )
    return ws


@triton.jit
def _preact(xs, ws, bias, SHIFT: tl.constexpr, REV: tl.constexpr,
            W: tl.constexpr):
    """Pre-activation ``a[t + SHIFT]`` of one direction from the shifted
    tiles: tap ``j`` reads ``xs[SHIFT + j]`` (forward) or
    ``xs[SHIFT + 2(W-1) - j]`` (reverse)."""
    acc = bias[:, None] + tl.zeros_like(xs[0])
    for j in tl.static_range(W):
        acc += ws[j][:, None] * xs[SHIFT + j + REV * (2 * (W - 1) - 2 * j)]
    return acc


@triton.jit
def _conv_silu_fwd_kernel(x_ptr, w_ptr, b_ptr, u_ptr, C, L, sxb, sxc, sxl,
                          K: tl.constexpr, W: tl.constexpr,
                          REVS: tl.constexpr, HAS_BIAS: tl.constexpr,
                          BLOCK_C: tl.constexpr, BLOCK_L: tl.constexpr):
    """One ``(BLOCK_C, BLOCK_L)`` tile of ``u`` for every direction.

    Grid ``(cdiv(L, BLOCK_L), cdiv(C, BLOCK_C), B)``. Direction ``k`` is
    reverse when bit ``k`` of ``REVS`` is set.
    """
    pid_l = tl.program_id(0)
    pid_c = tl.program_id(1)
    bid = tl.program_id(2).to(tl.int64)
    offs_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    offs_l = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    mask_c = offs_c < C
    mask = mask_c[:, None] & (offs_l < L)[None, :]
    x_row = x_ptr + bid * sxb + offs_c[:, None] * sxc
    xs = _load_shifted(x_row, sxl, offs_l, mask_c, L, W)
    u_batch = u_ptr + bid * K * C * L
    for k in tl.static_range(K):
        ws = _load_taps(w_ptr, k, offs_c, mask_c, C, W)
        if HAS_BIAS:
            bias = tl.load(b_ptr + k * C + offs_c, mask=mask_c,
                           other=0.).to(tl.float32)
        else:
            bias = tl.zeros([BLOCK_C], tl.float32)
        a = _preact(xs, ws, bias, 0, (REVS >> k) & 1, W)
        u = a * tl.sigmoid(a)
        tl.store(u_batch + (k * C + offs_c)[:, None] * L + offs_l[None, :],
                 u.to(u_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _conv_silu_bwd_g_kernel(x_ptr, w_ptr, b_ptr, gu_ptr, g_ptr, part_ptr, C,
                            L, TILES, sxb, sxc, sxl, sgb, sgc, sgl,
                            K: tl.constexpr, W: tl.constexpr,
                            REVS: tl.constexpr, HAS_BIAS: tl.constexpr,
                            BLOCK_C: tl.constexpr, BLOCK_L: tl.constexpr):
    """Backward, step 1: ``g_k = du_k * silu'(a_k)`` and the weight and bias
    gradients, for ``TILES`` consecutive tiles.

    Grid ``(cdiv(L, BLOCK_L * TILES), cdiv(C, BLOCK_C), B)``. ``g`` is
    written ``(B, L, K * C)`` contiguous (channels contiguous, like ``x``
    in the mixer) in ``x``'s dtype. ``part`` is ``(B * grid[0], K * (W + 1),
    C)`` float32: row ``k * (W + 1) + j`` holds ``dweight[k, :, j]``
    (``j < W``) or ``dbias[k]`` (``j == W``) summed over the program's
    tiles (the products are accumulated elementwise and reduced once).
    """
    pid_g = tl.program_id(0)
    pid_c = tl.program_id(1)
    bid = tl.program_id(2).to(tl.int64)
    offs_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    x_row = x_ptr + bid * sxb + offs_c[:, None] * sxc
    gu_row = gu_ptr + bid * sgb + offs_c[:, None] * sgc
    g_row = g_ptr + bid * L * K * C + offs_c[:, None]
    acc = ()
    for i in tl.static_range(K * (W + 1)):
        acc = acc + (tl.zeros([BLOCK_C, BLOCK_L], tl.float32), )
    for i in range(TILES):
        offs_l = (pid_g * TILES + i) * BLOCK_L + tl.arange(0, BLOCK_L)
        mask = mask_c[:, None] & (offs_l < L)[None, :]
        # du first: the compiler then computes in x's (channels-contiguous)
        # layout and converts only these K tiles, not the 2W - 1 of x.
        gus = ()
        for k in tl.static_range(K):
            gus = gus + (tl.load(gu_row + (k * C) * sgc +
                                 offs_l[None, :] * sgl, mask=mask,
                                 other=0.).to(tl.float32), )
        xs = _load_shifted(x_row, sxl, offs_l, mask_c, L, W)
        new = ()
        for k in tl.static_range(K):
            ws = _load_taps(w_ptr, k, offs_c, mask_c, C, W)
            if HAS_BIAS:
                bias = tl.load(b_ptr + k * C + offs_c, mask=mask_c,
                               other=0.).to(tl.float32)
            else:
                bias = tl.zeros([BLOCK_C], tl.float32)
            a = _preact(xs, ws, bias, 0, (REVS >> k) & 1, W)
            sig = tl.sigmoid(a)
            g = gus[k] * sig * (1. + a * (1. - sig))
            tl.store(g_row + k * C + offs_l[None, :] * (K * C),
                     g.to(g_ptr.dtype.element_ty), mask=mask)
            # dweight[k, :, j] += g * (the x that tap j read); dbias += g
            for j in tl.static_range(W):
                new = new + (acc[k * (W + 1) + j] + g * xs[
                    j + ((REVS >> k) & 1) * (2 * (W - 1) - 2 * j)], )
            new = new + (acc[k * (W + 1) + W] + g, )
        acc = new
    row = (bid * tl.num_programs(0) + pid_g) * (K * (W + 1))
    for i in tl.static_range(K * (W + 1)):
        tl.store(part_ptr + (row + i) * C + offs_c, tl.sum(acc[i], axis=1),
                 mask=mask_c)


@triton.jit
def _conv_bwd_dx_kernel(g_ptr, w_ptr, dx_ptr, C, L, sdb, sdc, sdl,
                        K: tl.constexpr, W: tl.constexpr, REVS: tl.constexpr,
                        BLOCK_C: tl.constexpr, BLOCK_L: tl.constexpr):
    """Backward, step 2: ``dx[t] = sum_k sum_j w_k[j] * g_k[t + s]`` with
    ``s = W - 1 - j`` (forward) or ``j - (W - 1)`` (reverse), zero outside
    ``[0, L)``. Grid ``(cdiv(L, BLOCK_L), cdiv(C, BLOCK_C), B)``; ``g`` as
    written by step 1."""
    pid_l = tl.program_id(0)
    pid_c = tl.program_id(1)
    bid = tl.program_id(2).to(tl.int64)
    offs_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    offs_l = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    mask_c = offs_c < C
    g_row = g_ptr + bid * L * K * C + offs_c[:, None]
    dx = tl.zeros([BLOCK_C, BLOCK_L], tl.float32)
    for k in tl.static_range(K):
        ws = _load_taps(w_ptr, k, offs_c, mask_c, C, W)
        for j in tl.static_range(W):
            pos = offs_l + (W - 1 - j) + ((REVS >> k) & 1) * (2 * j - 2 *
                                                              (W - 1))
            mask = mask_c[:, None] & ((pos >= 0) & (pos < L))[None, :]
            g = tl.load(g_row + k * C + pos[None, :] * (K * C), mask=mask,
                        other=0.).to(tl.float32)
            dx += ws[j][:, None] * g
    mask = mask_c[:, None] & (offs_l < L)[None, :]
    tl.store(dx_ptr + bid * sdb + offs_c[:, None] * sdc +
             offs_l[None, :] * sdl, dx.to(dx_ptr.dtype.element_ty), mask=mask)


def _reverse_bits(reverse) -> int:
    bits = 0
    for k, rev in enumerate(reverse):
        bits |= int(bool(rev)) << k
    return bits


def _check(x, weight, bias, reverse):
    if x.dim() != 3:
        raise ValueError(f'conv1d_silu: x must be (B, C, L), got '
                         f'{tuple(x.shape)}')
    if weight.dim() != 3 or weight.shape[1] != x.shape[1]:
        raise ValueError(f'conv1d_silu: weight must be (K, C, W) with '
                         f'C={x.shape[1]}, got {tuple(weight.shape)}')
    if len(reverse) != weight.shape[0]:
        raise ValueError(f'conv1d_silu: {len(reverse)} directions for '
                         f'{weight.shape[0]} kernels')
    if bias is not None and tuple(bias.shape) != tuple(weight.shape[:2]):
        raise ValueError(f'conv1d_silu: bias must be (K, C) = '
                         f'{tuple(weight.shape[:2])}, got {tuple(bias.shape)}')


def conv1d_silu_forward(x, weight, bias, reverse):
    """``u = silu(conv_k(x) + bias_k)`` for the ``K`` directions.

    Args:
        x (Tensor): ``(B, C, L)``, any strides (channels contiguous is the
            fast case of the mixer).
        weight (Tensor): ``(K, C, W)``.
        bias (Tensor, optional): ``(K, C)``.
        reverse (sequence[bool]): ``K`` flags, True for an anti-causal
            (backward-direction) conv.

    Returns:
        Tensor: ``(B, K * C, L)`` contiguous, ``x``'s dtype.
    """
    _check(x, weight, bias, reverse)
    batch, dim, length = x.shape
    ndir, _, width = weight.shape
    u = torch.empty(batch, ndir * dim, length, dtype=x.dtype, device=x.device)
    if u.numel() == 0:
        return u
    taps = weight.transpose(1, 2).contiguous()
    bias_arg = bias.contiguous() if bias is not None else taps
    grid = (triton.cdiv(length, FWD_BLOCK_L), triton.cdiv(dim, FWD_BLOCK_C),
            batch)
    _conv_silu_fwd_kernel[grid](
        x, taps, bias_arg, u, dim, length, *x.stride(), K=ndir, W=width,
        REVS=_reverse_bits(reverse), HAS_BIAS=bias is not None,
        BLOCK_C=FWD_BLOCK_C, BLOCK_L=FWD_BLOCK_L, num_warps=FWD_WARPS)
    return u


def _grad_like_input(x):
    """An empty ``dx`` in the layout of ``x``: channels contiguous when
    ``x`` reads them so (the transposed ``in_proj`` output), else
    ``(B, C, L)`` contiguous."""
    batch, dim, length = x.shape
    if x.stride(1) == 1 and dim > 1:
        return torch.empty(batch, length, dim, dtype=x.dtype,
                           device=x.device).transpose(1, 2)
    return torch.empty(batch, dim, length, dtype=x.dtype, device=x.device)


def conv1d_silu_backward(x, weight, bias, reverse, gu):
    """Gradients of :func:`conv1d_silu_forward`.

    Args:
        x, weight, bias, reverse: As given to the forward.
        gu (Tensor): ``dL/du`` ``(B, K * C, L)``, any strides.

    Returns:
        tuple: ``dx`` (``x``'s shape and dtype; channels contiguous when
        ``x``'s are), ``dweight`` ``(K, C, W)`` and ``dbias`` ``(K, C)``
        (``None`` without a bias) in the dtype of the weight and bias.
    """
    _check(x, weight, bias, reverse)
    batch, dim, length = x.shape
    ndir, _, width = weight.shape
    if tuple(gu.shape) != (batch, ndir * dim, length):
        want = (batch, ndir * dim, length)
        raise ValueError(f'conv1d_silu: grad must be {want}, got '
                         f'{tuple(gu.shape)}')
    dx = _grad_like_input(x)
    if x.numel() == 0:
        dw = torch.zeros_like(weight)
        return dx.zero_(), dw, None if bias is None else torch.zeros_like(
            bias)
    taps = weight.transpose(1, 2).contiguous()
    bias_arg = bias.contiguous() if bias is not None else taps
    revs = _reverse_bits(reverse)
    ntile = triton.cdiv(length, BWD_BLOCK_L)
    nblk_c = triton.cdiv(dim, BWD_BLOCK_C)
    tiles = max(1, min(BWD_MAX_TILES,
                       batch * nblk_c * ntile // BWD_TARGET_PROGRAMS))
    ngroup = triton.cdiv(ntile, tiles)
    ncol = ndir * (width + 1)
    part = torch.empty(batch * ngroup, ncol, dim, dtype=torch.float32,
                       device=x.device)
    g = torch.empty(batch, length, ndir * dim, dtype=x.dtype,
                    device=x.device)
    _conv_silu_bwd_g_kernel[(ngroup, nblk_c, batch)](
        x, taps, bias_arg, gu, g, part, dim, length, tiles, *x.stride(),
        *gu.stride(), K=ndir, W=width, REVS=revs, HAS_BIAS=bias is not None,
        BLOCK_C=BWD_BLOCK_C, BLOCK_L=BWD_BLOCK_L, num_warps=BWD_WARPS)
    _conv_bwd_dx_kernel[(triton.cdiv(length, DX_BLOCK_L),
                         triton.cdiv(dim, DX_BLOCK_C), batch)](
        g, taps, dx, dim, length, *dx.stride(), K=ndir, W=width,
        REVS=revs, BLOCK_C=DX_BLOCK_C, BLOCK_L=DX_BLOCK_L,
        num_warps=DX_WARPS)
    part = part.sum(0).view(ndir, width + 1, dim)
    dw = part[:, :width].transpose(1, 2).to(weight.dtype)
    db = None if bias is None else part[:, width].to(bias.dtype)
    return dx, dw, db
