"""Layer normalisation helpers for channels-first and channels-last tensors.

Vision backbones in mmssm keep their feature maps either channels-last
(``(B, H, W, C)``, as MambaOut and the Mamba mixers do, where
:class:`torch.nn.LayerNorm` normalises the last dimension directly) or
channels-first (``(B, C, H, W)``, what mmdet and mmseg necks expect). This
module gives one LayerNorm for the channels-first case and one builder for
both, so that no backbone has to permute around a LayerNorm by hand.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['LayerNorm2d', 'build_layer_norm', 'RMSNorm']


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dimension of a ``(B, C, H, W)`` tensor.

    It computes exactly what :class:`torch.nn.LayerNorm` computes on the
    channels-last view of the input (every pixel is normalised over its ``C``
    channels), so its ``weight`` and ``bias`` are interchangeable with those of
    an :class:`torch.nn.LayerNorm` of the same width.

    Args:
        num_channels (int): Number of channels ``C``.
        eps (float): Value added to the variance for numerical stability.
            Defaults to 1e-6.
        elementwise_affine (bool): Whether to learn a per-channel weight and
            bias. Defaults to True.
    """

    def __init__(self,
                 num_channels: int,
                 eps: float = 1e-6,
                 elementwise_affine: bool = True) -> None:
        super().__init__(
            num_channels, eps=eps, elementwise_affine=elementwise_affine)
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.num_channels:
            raise ValueError(
                f'{self.__class__.__name__} expects a (B, {self.num_channels}'
                f', H, W) tensor, got shape {tuple(x.shape)}')
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias,
                         self.eps)
        return x.permute(0, 3, 1, 2)


def build_layer_norm(num_channels: int,
                     eps: float = 1e-6,
                     data_format: str = 'channels_last',
                     elementwise_affine: Optional[bool] = True) -> nn.Module:
    """Build a LayerNorm over the channels of a feature map.

    Args:
        num_channels (int): Number of channels ``C``.
        eps (float): Value added to the variance. Defaults to 1e-6.
        data_format (str): ``'channels_last'`` for ``(..., C)`` inputs (a plain
            :class:`torch.nn.LayerNorm`) or ``'channels_first'`` for
            ``(B, C, H, W)`` inputs (:class:`LayerNorm2d`). Defaults to
            ``'channels_last'``.
        elementwise_affine (bool): Whether to learn a per-channel weight and
            bias. Defaults to True.

    Returns:
        nn.Module: The normalisation layer.
    """
    if data_format == 'channels_last':
        return nn.LayerNorm(
            num_channels, eps=eps, elementwise_affine=elementwise_affine)
    if data_format == 'channels_first':
        return LayerNorm2d(
            num_channels, eps=eps, elementwise_affine=elementwise_affine)
    raise ValueError(f"data_format must be 'channels_last' or "
                     f"'channels_first', got {data_format!r}")


class RMSNorm(nn.Module):
    """Root-mean-square LayerNorm over the last dimension, weight only.

    ``y = x / sqrt(mean(x ** 2, -1) + eps) * weight`` (Zhang & Sennrich, 2019,
    "Root Mean Square Layer Normalization"), computed in float32 and returned
    in the input dtype: the norm of Mamba and Vim (``norm``, ``norm_f``).

    Args:
        num_channels (int): Size of the last dimension.
        eps (float): Added to the mean square. Defaults to 1e-5.
    """

    def __init__(self, num_channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.num_channels:
            raise ValueError(f'RMSNorm({self.num_channels}) got an input of '
                             f'shape {tuple(x.shape)}')
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x32 * self.weight.float()).to(x.dtype)

    def extra_repr(self) -> str:
        return f'{self.num_channels}, eps={self.eps}'
