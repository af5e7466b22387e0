"""Fused CPU inference path of the Mamba mixers (Vim's bidirectional mixer).

When no gradient is needed, :func:`mamba_mixer_cpu_inference` computes a
(bidirectional) Mamba mixer from its input to the input of its ``out_proj``
in the token-major layout of the linear layers (no transposed, flipped,
concatenated or repeated copies of activations):

0. the ``x`` half of ``in_proj`` (one matrix product);
1. :func:`mmssm.ops._mixer_numba.conv_silu`: both directions' depthwise
   conv1d + SiLU (the backward direction written over ``x``);
2. one matrix product per direction for ``x_proj`` (``dt``, ``B``, ``C``);
3. :func:`mmssm.ops._mixer_numba.bimamba_scan`: ``dt_proj`` + ``delta_bias``
   + softplus, ``exp(delta * A)``, the scan of both directions with float32
   states and the ``D`` skip, ``y_f + y_b`` written over the forward ``u``;
4. the ``z`` half of ``in_proj``, and :func:`mmssm.ops._mixer_numba.gate`:
   ``silu(z) * (y_f + y_b) / 2`` in place, the input of ``out_proj``.

Nothing is saved for a backward pass, and ``z`` is computed after the scan,
so the per-layer temporaries are at most three ``(B, L, d_inner)`` buffers
and the two small ``x_proj`` outputs. The kernels run over (batch, block of
channels) work items on the kernel threads of :mod:`mmssm.ops.cpu_threads`
(light kernels on small maps on one thread, see :data:`SMALL_WORK`).

:func:`add_rmsnorm_cpu` is the fused ``residual + hidden`` + RMSNorm of a
Vim layer.

The result equals the training path (:func:`mmssm.ops.selective_scan` and
the layer's torch code) to float32 round-off; ``tests/test_ops/
test_mixer_cpu.py`` checks it against the reference. Used by
:class:`mmssm.models.layers.MambaMixer` / ``BiMambaMixer`` and
:class:`mmssm.models.backbones.VimLayer` when :func:`fast_path_enabled`.
"""
import os
from typing import Optional, Sequence

import torch
from torch import Tensor

from .cpu_threads import (launch_is_cheap, num_threads, parallel_linear,
                          run_parallel)
from .scan_common import FAST_PATH_ENV, cpu_fast_path_allowed

_KERNELS = []


def _kernels():
    """:mod:`mmssm.ops._mixer_numba`, imported on first use (``import
    mmssm`` does not import numba); None when numba is missing (the layers
    keep their torch path)."""
    if not _KERNELS:
        try:
            from . import _mixer_numba as kernels
        except ImportError:
            kernels = None
        _KERNELS.append(kernels)
    return _KERNELS[0]

#: Elements below which the light kernels (conv, gate, add + RMSNorm) run on
#: one thread when the kernels go to mmssm's thread pool (no libgomp, or
#: ``MMSSM_CPU_OMP=0``): handing a few hundred microseconds of work to a
#: pool thread costs more than it saves, most of all while torch's OpenMP
#: worker spins on the other core (measured on a 2-core machine: Vim-Ti at
#: 224 on a loaded machine 98 ms with these kernels on two threads, 52 ms on
#: one). Launched on torch's OpenMP team (the default), they are always split.
SMALL_WORK = 1 << 19

__all__ = [
    'fast_path_enabled', 'prepare_mixer_weights', 'mamba_mixer_cpu_inference',
    'add_rmsnorm_cpu', 'run_parallel', 'FAST_PATH_ENV', 'SMALL_WORK'
]


def fast_path_enabled(x: Tensor, scan_impl: Optional[str] = None) -> bool:
    """Whether the fused CPU inference path applies to input ``x``.

    It does when: numba is importable; ``x`` is a float32 CPU tensor and CPU
    autocast is off; grad mode is off (``torch.no_grad()`` or
    ``torch.inference_mode()``, as in mmengine's val/test loops; frozen
    weights under grad mode keep the training path); the model is not being
    traced or compiled (FLOP counting, export); ``scan_impl`` is
    ``None``/``'auto'``/``'cpu'`` and ``MMSSM_SCAN_IMPL`` is unset or
    ``'cpu'``; and ``MMSSM_CPU_FAST_PATH`` is not ``0``.
    """
    if torch.is_grad_enabled():
        return False
    if x.device.type != 'cpu' or x.dtype != torch.float32:
        return False
    if torch.is_autocast_enabled('cpu'):
        return False  # the linear layers would give bfloat16 activations
    if scan_impl not in (None, 'auto', 'cpu'):
        return False
    if os.environ.get('MMSSM_SCAN_IMPL', '') not in ('', 'auto', 'cpu'):
        return False
    return cpu_fast_path_allowed() and _kernels() is not None


def prepare_mixer_weights(conv_weights: Sequence[Tensor],
                          conv_biases: Sequence[Optional[Tensor]],
                          dt_proj_weights: Sequence[Tensor],
                          dt_proj_biases: Sequence[Tensor],
                          a_logs: Sequence[Tensor],
                          ds: Sequence[Tensor]) -> tuple:
    """The kernels' view of a mixer's small parameters (one or two
    directions), as float32 numpy arrays.

    Args:
        conv_weights: per direction, the depthwise conv1d weight
            ``(d_inner, 1, K)``; direction 0 is causal (forward), direction 1
            the official backward branch (run on the flipped sequence).
        conv_biases: per direction, ``(d_inner,)`` or None.
        dt_proj_weights, dt_proj_biases: per direction ``(d_inner, R)`` and
            ``(d_inner,)`` (the bias is the scan's ``delta_bias``).
        a_logs: per direction ``(d_inner, N)`` (``A = -exp(A_log)``).
        ds: per direction ``(d_inner,)`` skips.

    Returns:
        tuple: ``(ndir, conv, scan)`` for :func:`mamba_mixer_cpu_inference`
        (float32 CPU tensors, the kernels' arrays). They may share memory
        with the parameters: prepare them again
        after the parameters change (the mixers key their cache on the
        parameters' versions).
    """
    ndir = len(conv_weights)
    if ndir not in (1, 2) or not all(
            len(x) == ndir for x in (conv_biases, dt_proj_weights,
                                     dt_proj_biases, a_logs, ds)):
        raise ValueError('prepare_mixer_weights: 1 or 2 directions, the same '
                         f'number for every parameter, got {ndir} conv '
                         'weights')

    def arr(x):
        # tensors, not numpy arrays: cheaper to hand to a kernel launch
        return x.detach().float().contiguous()

    dim, _, ksize = conv_weights[0].shape
    conv = []
    for w, b in zip(conv_weights, conv_biases):
        conv.append(arr(w.reshape(dim, ksize).t()))
        conv.append(arr(w.new_zeros(dim) if b is None else b))
    scan = []
    for items in (a_logs, dt_proj_weights, dt_proj_biases, ds):
        scan.extend(arr(items[min(i, ndir - 1)]) for i in range(2))
    if ndir == 1:
        conv = conv * 2
    return ndir, tuple(conv), tuple(scan)


def mamba_mixer_cpu_inference(x: Tensor,
                              in_proj_weight: Tensor,
                              in_proj_bias: Optional[Tensor],
                              weights: tuple,
                              x_proj_weights: Sequence[Tensor],
                              scale: float = 1.0) -> Tensor:
    """Fused ``in_proj`` .. gate of a Mamba mixer, one or two directions.

    Args:
        x (Tensor): Mixer input ``(B, L, C)``, float32, CPU.
        in_proj_weight (Tensor): ``(2 * d_inner, C)``: ``x`` rows then ``z``.
        in_proj_bias (Tensor, optional): ``(2 * d_inner,)``.
        weights (tuple): :func:`prepare_mixer_weights` of the mixer.
        x_proj_weights: per direction ``(R + 2N, d_inner)``.
        scale (float): Output scale (0.5 averages two directions).

    Returns:
        Tensor: ``(B, L, d_inner)``: ``silu(z) * sum_directions(y) * scale``,
        the input of ``out_proj``.

    The two halves of ``in_proj`` are two products so that ``z`` is made
    only after the scan, when the conv's and the scan's buffers are gone:
    per layer at most three ``(B, L, d_inner)`` buffers are alive.
    """
    kernels = _kernels()
    if kernels is None:
        raise ImportError('the fused CPU mixer path needs numba')
    if x.dim() != 3 or x.dtype != torch.float32 or x.device.type != 'cpu':
        raise ValueError('mamba_mixer_cpu_inference: x must be a float32 CPU '
                         'tensor (B, L, C), got '
                         f'{tuple(x.shape)} {x.dtype} on {x.device}')
    ndir, conv, scan = weights
    dim = conv[0].shape[1]
    if in_proj_weight.shape != (2 * dim, x.shape[-1]) or \
            len(x_proj_weights) != ndir:
        raise ValueError(
            f'mamba_mixer_cpu_inference: weights of d_inner={dim} and '
            f'{len(x_proj_weights)} x_proj weights; in_proj '
            f'{tuple(in_proj_weight.shape)} for {ndir} directions and '
            f'inputs of width {x.shape[-1]}')
    nbatch, length, _ = x.shape
    bias_x = bias_z = None
    if in_proj_bias is not None:
        bias_x, bias_z = in_proj_bias[:dim], in_proj_bias[dim:]
    xs = parallel_linear(x, in_proj_weight[:dim], bias_x)
    uf = torch.empty(nbatch, length, dim)
    # one chunk of channels per thread and batch item, a multiple of 16:
    # wide blocks amortise the per-token work of the scan
    threads = num_threads()
    chunk = -(-dim // threads)
    chunk = -(-chunk // 16) * 16
    nitems = nbatch * -(-dim // chunk)
    # the conv and the gate are light: threads only pay off for large maps
    small = not launch_is_cheap() and nbatch * length * dim < SMALL_WORK
    light = nitems if small else 1
    # the kernels' arrays are passed as the tensors that hold them
    # (cpu_threads.run_parallel)
    run_parallel(kernels.conv_silu, (xs, *conv, ndir, chunk, uf), nitems,
                 min_items_per_thread=light)
    # x_proj: dt, B, C per token; xs holds the backward direction's u
    xdf = parallel_linear(uf, x_proj_weights[0])
    xdb = parallel_linear(xs, x_proj_weights[1]) if ndir == 2 else xdf
    run_parallel(kernels.bimamba_scan,
                 (xs, uf, xdf, xdb, *scan, ndir, chunk), nitems)
    del xs, xdf, xdb
    z = parallel_linear(x, in_proj_weight[dim:], bias_z)
    rows = nbatch * length
    run_parallel(kernels.gate,
                 (z.view(rows, dim), uf.view(rows, dim), float(scale)), rows,
                 min_items_per_thread=rows if light > 1 else 64)
    return z


def add_rmsnorm_cpu(hidden: Tensor, residual: Optional[Tensor],
                    weight: Tensor, eps: float):
    """``residual + hidden`` (or ``hidden``) and its RMSNorm, fused.

    Args:
        hidden (Tensor): ``(..., C)`` float32 CPU.
        residual (Tensor, optional): Same shape, float32, or None.
        weight (Tensor): ``(C,)`` RMSNorm weight.
        eps (float): RMSNorm epsilon.

    Returns:
        tuple[Tensor, Tensor]: the new residual and the normalised tensor
        (new tensors; the inputs are not modified).
    """
    width = hidden.shape[-1]
    h2 = hidden.detach().reshape(-1, width).contiguous()
    r2 = h2 if residual is None else \
        residual.detach().reshape(-1, width).contiguous()
    res_out = torch.empty(hidden.shape, dtype=torch.float32)
    out = torch.empty(hidden.shape, dtype=torch.float32)
    rows = h2.shape[0]
    run_parallel(_kernels().add_rmsnorm,
                 (h2, r2, residual is not None,
                  weight.detach().float().contiguous(), float(eps),
                  res_out.view(-1, width), out.view(-1, width)),
                 rows, min_items_per_thread=rows if rows * width < SMALL_WORK
                 and not launch_is_cheap() else 256)
    return res_out, out
