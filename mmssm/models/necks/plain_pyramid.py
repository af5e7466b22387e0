"""Multi-scale necks for plain (single-stride) backbones such as Vim.

A plain backbone gives token maps at one stride (16 for 16x16 patches). Dense
heads want a pyramid of strides 4 .. 32 (or 64):

* :class:`SimpleFeaturePyramid` builds it from ONE map, as ViTDet does (Li et
  al., 2022, "Exploring Plain Vision Transformer Backbones for Object
  Detection"): deconvolutions for the finer scales, identity, max-pool for the
  coarser one, each followed by a 1x1 and a 3x3 conv with LayerNorm, plus an
  optional extra max-pooled level for the RPN of Mask R-CNN. This is the
  detection neck of Vim's official code.
* :class:`PlainMultiLevelTaps` rescales FOUR maps tapped from different layers
  (the BEiT / Vim UperNet recipe: layers [5, 11, 17, 23] -> deconv x4, deconv
  x2, identity, max-pool), giving UperNet its four strides.
"""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule

from mmssm.registry import MODELS, register_model
from ..layers.norm import LayerNorm2d

__all__ = ['SimpleFeaturePyramid', 'PlainMultiLevelTaps', 'build_norm_2d']

# ``norm_cfg=dict(type='LN2d')`` for mmcv's ``build_norm_layer`` anywhere
# (the ViTDet-style box/mask heads of mmdet configs): mmdet and mmseg do not
# register a channels-first LayerNorm (mmpretrain's own 'LN2d' stays in its
# scope and wins there).
if 'LN2d' not in MODELS.module_dict:
    register_model(name='LN2d')(LayerNorm2d)


def build_norm_2d(norm_cfg: dict, num_channels: int) -> nn.Module:
    """Build a norm layer for ``(B, C, H, W)`` maps.

    ``type='LN2d'`` gives mmssm's channels-first
    :class:`~mmssm.models.layers.LayerNorm2d` (``eps`` defaults to 1e-6, the
    ViTDet value); any other type goes to mmcv's ``build_norm_layer``
    (``'BN'``, ``'SyncBN'``, ``'GN'`` ...).

    Args:
        norm_cfg (dict): Norm config.
        num_channels (int): Number of channels.

    Returns:
        nn.Module: The norm layer.
    """
    cfg = dict(norm_cfg)
    if cfg.get('type') == 'LN2d':
        return LayerNorm2d(num_channels, eps=cfg.get('eps', 1e-6))
    return build_norm_layer(cfg, num_channels)[1]


def _check_inputs(name: str, inputs, in_channels: int, num: int):
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs, )
    if len(inputs) < num:
        raise ValueError(f'{name} needs at least {num} feature maps, got '
                         f'{len(inputs)}')
    for x in inputs:
        if x.dim() != 4 or x.shape[1] != in_channels:
            raise ValueError(f'{name} expects (B, {in_channels}, H, W) maps, '
                             f'got shape {tuple(x.shape)}')
    return inputs


def _rescale_block(scale: float, channels: int, out_channels: int,
                   norm_cfg: dict) -> nn.Module:
    """Deconv(s) for scale 2 / 4, identity for 1, max-pool for 1/2, 1/4."""
    if scale == 4:
        mid = channels if out_channels == channels else channels // 2
        return nn.Sequential(
            nn.ConvTranspose2d(channels, mid, 2, stride=2),
            build_norm_2d(norm_cfg, mid), nn.GELU(),
            nn.ConvTranspose2d(mid, out_channels, 2, stride=2))
    if scale == 2:
        return nn.ConvTranspose2d(channels, out_channels, 2, stride=2)
    if scale == 1:
        return nn.Identity()
    if scale in (0.5, 0.25):
        k = int(round(1 / scale))
        return nn.MaxPool2d(kernel_size=k, stride=k)
    raise ValueError(
        f'scale factors must be in (4, 2, 1, 0.5, 0.25), got {scale}')


@register_model()
class SimpleFeaturePyramid(BaseModule):
    """ViTDet simple feature pyramid on the last map of a plain backbone.

    For ``scale_factors=(4, 2, 1, 0.5)`` and input width ``C``: scale 4 is
    ``deconv(C -> C/2) -> norm -> GELU -> deconv(C/2 -> C/4)``, scale 2
    ``deconv(C -> C/2)``, scale 1 identity, scale 0.5 ``maxpool 2``; each is
    followed by ``conv1x1 -> norm -> conv3x3 -> norm`` to ``out_channels``
    (convs without bias). Levels beyond ``len(scale_factors)`` (``num_outs``)
    are ``max_pool2d(kernel 1, stride 2)`` of the previous one (detectron2's
    ``LastLevelMaxPool``, mmdet FPN's extra levels without convs).

    Args:
        in_channels (int): Width of the backbone map.
        out_channels (int): Width of every output. Defaults to 256.
        scale_factors (Sequence[float]): Rescales, finest first.
            Defaults to (4.0, 2.0, 1.0, 0.5).
        num_outs (int): Number of outputs (>= ``len(scale_factors)``).
            Defaults to 5.
        in_index (int): Which backbone output to use. Defaults to -1.
        norm_cfg (dict): Norm of the neck. Defaults to
            ``dict(type='LN2d', eps=1e-6)``.
        init_cfg (dict, optional): Initialization config. Defaults to
            Kaiming init of the convs.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int = 256,
                 scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
                 num_outs: int = 5,
                 in_index: int = -1,
                 norm_cfg: dict = dict(type='LN2d', eps=1e-6),
                 init_cfg: Optional[dict] = dict(
                     type='Kaiming', layer=['Conv2d', 'ConvTranspose2d'],
                     a=1, mode='fan_in', nonlinearity='leaky_relu')) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_outs < len(scale_factors):
            raise ValueError(f'num_outs={num_outs} < {len(scale_factors)} '
                             'scale factors')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.scale_factors = tuple(scale_factors)
        self.num_outs = num_outs
        self.in_index = in_index
        self.stages = nn.ModuleList()
        for scale in self.scale_factors:
            width = {4: in_channels // 4, 2: in_channels // 2}.get(
                scale, in_channels)
            self.stages.append(
                nn.Sequential(
                    _rescale_block(scale, in_channels, width, norm_cfg),
                    nn.Conv2d(width, out_channels, 1, bias=False),
                    build_norm_2d(norm_cfg, out_channels),
                    nn.Conv2d(
                        out_channels, out_channels, 3, padding=1,
                        bias=False),
                    build_norm_2d(norm_cfg, out_channels)))

    def forward(self, inputs: Union[torch.Tensor, Sequence[torch.Tensor]]
                ) -> Tuple[torch.Tensor, ...]:
        """Build the pyramid from ``inputs[in_index]``."""
        inputs = _check_inputs(self.__class__.__name__, inputs,
                               self.in_channels, 1)
        x = inputs[self.in_index]
        outs = [stage(x) for stage in self.stages]
        for _ in range(self.num_outs - len(outs)):
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return tuple(outs)


@register_model()
class PlainMultiLevelTaps(BaseModule):
    """Rescale maps tapped from several layers of a plain backbone.

    Map ``i`` is rescaled by ``rescales[i]``: 4 is ``deconv -> norm -> GELU
    -> deconv``, 2 one ``deconv``, 1 identity, 0.5 / 0.25 a max-pool (widths
    unchanged). With a stride-16 backbone and ``rescales=(4, 2, 1, 0.5)`` the
    outputs have strides 4, 8, 16, 32 for UperNet; use ``(2, 1, 0.5, 0.25)``
    for a stride-8 backbone.

    Args:
        in_channels (int): Width of the tapped maps.
        rescales (Sequence[float]): One rescale per map.
            Defaults to (4, 2, 1, 0.5).
        norm_cfg (dict): Norm between the two deconvs of scale 4. Defaults to
            ``dict(type='SyncBN', requires_grad=True)`` (the official Vim
            UperNet); use ``'BN'`` on one device.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 rescales: Sequence[float] = (4, 2, 1, 0.5),
                 norm_cfg: dict = dict(type='SyncBN', requires_grad=True),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels = in_channels
        self.rescales = tuple(rescales)
        self.ops = nn.ModuleList([
            _rescale_block(scale, in_channels, in_channels, norm_cfg)
            for scale in self.rescales
        ])

    def forward(self, inputs: Sequence[torch.Tensor]
                ) -> Tuple[torch.Tensor, ...]:
        """Rescale the last ``len(rescales)`` maps of ``inputs``."""
        inputs = _check_inputs(self.__class__.__name__, inputs,
                               self.in_channels, len(self.rescales))
        inputs = inputs[-len(self.rescales):]
        return tuple(op(x) for op, x in zip(self.ops, inputs))
