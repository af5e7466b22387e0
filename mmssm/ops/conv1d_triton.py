"""The causal depthwise conv1d + SiLU of Mamba, for one or several directions.

:func:`causal_conv1d_silu` computes ``silu(causal_conv1d(x, w_k, b_k,
reverse_k))`` for ``K`` directions (a bidirectional mixer's forward and
backward branches) and returns them in ONE ``(B, K * C, L)`` tensor,
direction ``k`` in channels ``[k * C, (k + 1) * C)``: the layout the
selective scan takes for per-chunk orders. Two implementations, the same
meaning:

* ``'triton'``: :class:`CausalConv1dSiluFunction`, the fused kernels of
  :mod:`mmssm.kernels.conv1d` (conv, bias and SiLU of all directions in one
  kernel; the backward in two, ``g`` then ``dx``; float32 accumulation).
  It reads ``x`` through its strides, so the transposed ``(B, L, C)``
  output of ``in_proj`` is read in place; only ``x`` is kept for the
  backward (the pre-activation is recomputed there). Used for CUDA tensors
  when triton is installed, and for CPU tensors under ``TRITON_INTERPRET=1``
  when asked for explicitly (how the tests run the kernels).
* ``'torch'``: the plain reference, :func:`causal_conv1d` + ``F.silu`` per
  direction and one ``torch.cat`` (the math of the CPU path of the mixers).

This module imports torch only; triton and the kernels are imported on the
first Triton call. ``tools/analysis_tools/benchmark_conv1d.py`` times the two
on a GPU.
"""
import functools
import os
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    'causal_conv1d', 'causal_conv1d_silu', 'CausalConv1dSiluFunction',
    'CONV_IMPLS'
]

#: Names accepted by ``impl`` (``None`` means ``'auto'``).
CONV_IMPLS = ('auto', 'torch', 'triton')


def causal_conv1d(x: Tensor,
                  weight: Tensor,
                  bias: Optional[Tensor] = None,
                  reverse: bool = False) -> Tensor:
    """Depthwise causal (or anti-causal) 1D convolution.

    With ``reverse=False`` output ``t`` sees inputs ``t-k+1 .. t`` (zero
    padding on the left): Mamba's causal conv. With ``reverse=True`` it sees
    inputs ``t .. t+k-1`` through the reversed kernel (zero padding on the
    right), which equals ``flip(causal_conv1d(flip(x)))`` without flipping
    ``x``: the conv of the backward branch of a bidirectional mixer.

    Args:
        x (torch.Tensor): Input ``(B, C, L)``.
        weight (torch.Tensor): Depthwise kernel ``(C, 1, k)``.
        bias (torch.Tensor, optional): Bias ``(C,)``.
        reverse (bool): Anti-causal (backward direction). Defaults to False.

    Returns:
        torch.Tensor: ``(B, C, L)``.
    """
    k = weight.shape[-1]
    if reverse:
        x = F.pad(x, (0, k - 1))
        weight = weight.flip(-1)
    else:
        x = F.pad(x, (k - 1, 0))
    return F.conv1d(x, weight, bias, groups=weight.shape[0])


class CausalConv1dSiluFunction(torch.autograd.Function):
    """``u = silu(conv_k(x) + b_k)`` for ``K`` directions, Triton kernels.

    Inputs: ``x`` ``(B, C, L)`` (any strides), ``weight`` ``(K, C, W)``,
    ``bias`` ``(K, C)`` or None, ``reverse`` a tuple of ``K`` bools. Output
    ``(B, K * C, L)`` contiguous in ``x``'s dtype. Saves only ``x`` (no
    pre-activation): the backward kernel recomputes it.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, reverse):
        from ..kernels.conv1d import conv1d_silu_forward
        u = conv1d_silu_forward(x, weight, bias, reverse)
        ctx.save_for_backward(x, weight, bias)
        ctx.reverse = reverse
        return u

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gu):
        from ..kernels.conv1d import conv1d_silu_backward
        x, weight, bias = ctx.saved_tensors
        dx, dw, db = conv1d_silu_backward(x, weight, bias, ctx.reverse, gu)
        return dx, dw, db, None


@functools.lru_cache(maxsize=None)
def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _resolve_impl(impl: Optional[str], x: Tensor) -> str:
    if impl is None or impl == 'auto':
        return 'triton' if x.is_cuda and _triton_available() else 'torch'
    if impl not in CONV_IMPLS:
        raise ValueError(f'causal_conv1d_silu: `impl` must be one of '
                         f'{CONV_IMPLS} or None, got {impl!r}')
    if impl == 'triton' and not x.is_cuda and os.environ.get(
            'TRITON_INTERPRET') != '1':
        raise ValueError("causal_conv1d_silu: impl='triton' needs CUDA "
                         'tensors (or TRITON_INTERPRET=1 for the Triton '
                         f'interpreter on CPU tensors), got {x.device}')
    return impl


def _as_list(value, ndir: int, name: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != ndir:
            raise ValueError(f'causal_conv1d_silu: {ndir} directions but '
                             f'{len(value)} `{name}`')
        return list(value)
    return [value] * ndir


def causal_conv1d_silu(
        x: Tensor,
        weight: Union[Tensor, Sequence[Tensor]],
        bias: Union[None, Tensor, Sequence[Optional[Tensor]]] = None,
        reverse: Union[bool, Sequence[bool]] = False,
        impl: Optional[str] = None) -> Tensor:
    """``silu(causal_conv1d(x, w_k, b_k, reverse_k))`` for ``K`` directions,
    in one ``(B, K * C, L)`` tensor.

    Args:
        x (Tensor): ``(B, C, L)``; any strides (the Triton path reads the
            channels-contiguous transposed ``(B, L, C)`` layout in place).
        weight (Tensor | sequence[Tensor]): The depthwise kernel ``(C, 1,
            W)`` (or ``(C, W)``) of each direction; one tensor means one
            direction.
        bias (Tensor | sequence[Tensor | None], optional): ``(C,)`` per
            direction (a missing one counts as zero).
        reverse (bool | sequence[bool]): Per direction, anti-causal
            (:func:`causal_conv1d` with ``reverse=True``). One bool applies to
            every direction.
        impl (str, optional): ``None``/``'auto'`` (Triton for CUDA tensors
            when triton is installed, else torch), ``'triton'`` or
            ``'torch'``.

    Returns:
        Tensor: ``(B, K * C, L)``, contiguous (Triton) in ``x``'s dtype.
    """
    weights = list(weight) if isinstance(weight, (list, tuple)) else [weight]
    ndir = len(weights)
    biases = _as_list(bias, ndir, 'bias')
    revs = tuple(bool(r) for r in _as_list(reverse, ndir, 'reverse'))
    if x.dim() != 3:
        raise ValueError(f'causal_conv1d_silu: x must be (B, C, L), got '
                         f'{tuple(x.shape)}')
    dim = x.shape[1]
    width = weights[0].shape[-1]
    for w in weights:
        if w.numel() != dim * width or w.shape[0] != dim:
            raise ValueError(f'causal_conv1d_silu: every weight must be '
                             f'(C, 1, W) = ({dim}, 1, {width}), got '
                             f'{tuple(w.shape)}')
    impl = _resolve_impl(impl, x)
    if impl == 'torch':
        outs = [
            F.silu(causal_conv1d(x, w.reshape(dim, 1, width), b, reverse=r))
            for w, b, r in zip(weights, biases, revs)
        ]
        return outs[0] if ndir == 1 else torch.cat(outs, dim=1)
    stacked = (weights[0].reshape(1, dim, width) if ndir == 1 else
               torch.stack([w.reshape(dim, width) for w in weights]))
    if all(b is None for b in biases):
        stacked_bias = None
    else:
        biases = [torch.zeros(dim, dtype=stacked.dtype, device=x.device)
                  if b is None else b for b in biases]
        stacked_bias = (biases[0].reshape(1, dim) if ndir == 1 else
                        torch.stack(biases))
    return CausalConv1dSiluFunction.apply(x, stacked, stacked_bias, revs)

