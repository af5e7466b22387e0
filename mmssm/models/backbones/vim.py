"""Vim: the plain bidirectional Vision Mamba backbone.

Zhu et al., 2024, "Vision Mamba: Efficient Visual Representation Learning with
Bidirectional State Space Model" (papers/vim.txt), and the larger plain sizes
of ShuffleMamba (Huang et al., 2024, "Stochastic Layer-Wise Shuffle: A Good
Practice to Improve Vision Mamba Training").

The forward math and the parameter names follow the official code
(hustvl/Vim ``models_mamba.py`` with ``bimamba_type='v2'``, ``rms_norm=True``,
``residual_in_fp32=True``, ``if_divide_out=True``,
``use_middle_cls_token=True``), so official checkpoints load unchanged and
give the same features. Where this module differs from the official dense
code it fixes its bugs: the class-token row of ``pos_embed`` is the middle one
(``M // 2``), the position embedding is resized online to any input grid, and
the layer-wise lr decay (:meth:`Vim.get_layer_depth`) names ``layers``.

Registers (``num_registers > 0``, the ``'reg-*'`` presets) follow Mamba-Reg
(Wang et al., 2024, "Mamba-R: Vision Mamba ALSO Needs Registers",
wangf3014/Mamba-Reg): ``n`` learnable tokens, stored as ``cls_token``
``(1, n, C)`` with their own position embedding ``pos_embed_cls``, are spread
evenly over the sequence (:func:`mamba_reg_layout`), there is no class token,
``pos_embed`` covers the patches only, and dense outputs drop the registers.

Two options of issue #17 (seed 002, papers/improving-ssm-vim-mambavision.txt),
both off by default: ``se_ratio`` (a Squeeze-and-Excitation block,
:class:`VimSE`, at the end of every layer) and ``patch_embed='mbv2'`` (a
MobileNetV2 stem, :class:`VimMBV2PatchEmbed`, instead of the dense patch
convolution). Off, the model, its parameter names and its outputs are the
official ones; on, official checkpoints still load strictly for every other
parameter (:meth:`Vim.convert_checkpoint`).
"""
import contextlib
import functools
import logging
import math
from collections import OrderedDict
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath
from mmengine.logging import MMLogger, print_log
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_

from mmssm.ops.cpu_threads import exclusive_threads, launch_is_cheap
from mmssm.ops.mixer_cpu import add_rmsnorm_cpu, fast_path_enabled
from mmssm.registry import register_model
from ..layers.backbone_utils import (check_image_input, parse_arch,
                                     parse_out_indices, stage_drop_path_rates)
from ..layers.mamba import BiMambaMixer
from ..layers.norm import RMSNorm
from .base import BaseBackbone, PlainBackboneMixin

__all__ = [
    'Vim', 'VimLayer', 'VimPatchEmbed', 'VimMBV2PatchEmbed', 'VimSE',
    'resize_vim_pos_embed', 'convert_vim', 'cls_token_index',
    'mamba_reg_layout'
]


def resize_vim_pos_embed(pos_embed: torch.Tensor,
                         src_shape: Tuple[int, int],
                         dst_shape: Tuple[int, int],
                         with_cls_token: bool = True,
                         mode: str = 'bicubic',
                         cls_position: str = 'middle') -> torch.Tensor:
    """Resize a Vim position embedding whose class-token row is in the middle.

    A Vim ``pos_embed`` of a ``h x w`` patch grid has ``M = h * w`` patch rows
    in row-major order, and, with a class token, one more row inserted at
    index ``M // 2`` (the class token sits in the middle of the sequence; at
    index 0 with ``cls_position='head'``). The
    patch rows are resized as an image (in float32, ``align_corners=False``);
    the class row is kept and re-inserted at ``M' // 2`` (or 0) of the new
    grid.

    Args:
        pos_embed (torch.Tensor): ``(1, M + int(with_cls_token), C)``.
        src_shape (tuple[int, int]): Grid ``(h, w)`` of ``pos_embed``.
        dst_shape (tuple[int, int]): Target grid ``(h', w')``.
        with_cls_token (bool): Whether ``pos_embed`` has the middle class row.
            Defaults to True.
        mode (str): Interpolation mode. Defaults to ``'bicubic'``.
        cls_position (str): ``'middle'`` (class row at ``M // 2``, Vim) or
            ``'head'`` (row 0, ShuffleMamba / VideoMamba). Defaults to
            ``'middle'``.

    Returns:
        torch.Tensor: ``(1, h' * w' + int(with_cls_token), C)``, in the dtype
        of ``pos_embed``. The input itself when the grids are equal.
    """
    src_h, src_w = src_shape
    num_src = src_h * src_w
    num_extra = int(with_cls_token)
    if pos_embed.dim() != 3 or pos_embed.shape[1] != num_src + num_extra:
        raise ValueError(
            f'pos_embed of shape {tuple(pos_embed.shape)} does not match a '
            f'{src_h}x{src_w} grid{" plus a class row" * num_extra}')
    if tuple(src_shape) == tuple(dst_shape):
        return pos_embed
    if with_cls_token:
        mid = cls_token_index(num_src, cls_position)
        cls_row = pos_embed[:, mid:mid + 1]
        patches = torch.cat([pos_embed[:, :mid], pos_embed[:, mid + 1:]], 1)
    else:
        patches = pos_embed
    dim = patches.shape[-1]
    grid = patches.reshape(1, src_h, src_w, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid.float(),
        size=tuple(dst_shape),
        mode=mode,
        align_corners=False if mode in ('bilinear', 'bicubic') else None)
    patches = grid.flatten(2).transpose(1, 2).to(pos_embed.dtype)
    if not with_cls_token:
        return patches
    mid = cls_token_index(patches.shape[1], cls_position)
    return torch.cat([patches[:, :mid], cls_row, patches[:, mid:]], dim=1)


def cls_token_index(num_patches: int, cls_position: str = 'middle') -> int:
    """Index of the class token in a sequence of ``num_patches`` patches:
    ``num_patches // 2`` for ``'middle'`` (Vim), 0 for ``'head'``."""
    if cls_position == 'middle':
        return num_patches // 2
    if cls_position == 'head':
        return 0
    raise ValueError(
        f"cls_position must be 'middle' or 'head', got {cls_position!r}")


def _square_grid(num_patches: int, what: str) -> Tuple[int, int]:
    side = int(round(math.sqrt(num_patches)))
    if side * side != num_patches:
        raise ValueError(
            f'{what}: cannot infer the patch grid of a position embedding '
            f'with {num_patches} patch rows (not a square number); resize it '
            'to the model grid before loading')
    return side, side


@functools.lru_cache(maxsize=64)
def _reg_layout_cpu(num_patches: int, num_registers: int):
    chunk = num_patches // (num_registers + 1)
    ks = torch.arange(num_registers)
    reg_pos = (ks + 1) * chunk + ks
    length = num_patches + num_registers
    # patch i follows the registers of the chunks before it (all of them
    # with chunk == 0): closed form, no data-dependent torch.nonzero, so
    # that torch.compile traces it without a graph break
    idx = torch.arange(num_patches)
    patch_pos = idx + (num_registers if chunk == 0 else
                       torch.clamp(idx // chunk, max=num_registers))
    order = torch.empty(length, dtype=torch.long)
    order[patch_pos] = torch.arange(num_patches)
    order[reg_pos] = num_patches + ks
    return order, reg_pos, patch_pos


def mamba_reg_layout(num_patches: int, num_registers: int, device=None):
    """Where Mamba-Reg puts ``n`` registers among ``M`` patch tokens.

    With ``chunk = M // (n + 1)``, each of the first ``n`` chunks of
    ``chunk`` patches is followed by one register and the leftover patches
    come last: register ``k`` is at ``(k + 1) * chunk + k`` of the
    ``M + n`` tokens (14x14 patches, 12 registers: 15, 31, ..., 191 of 208).
    Grids with fewer than ``n + 1`` patches (``chunk == 0``) put all
    registers first. The layout depends on ``M`` only and is recomputed for
    every input grid.

    Args:
        num_patches (int): ``M``, the number of patch tokens.
        num_registers (int): ``n``.
        device (torch.device, optional): Device of the returned indices.

    Returns:
        tuple[torch.Tensor]: ``order`` ``(M + n,)``, such that
        ``torch.cat([patches, registers], 1)[:, order]`` is the sequence;
        ``register_index`` ``(n,)`` and ``patch_index`` ``(M,)``, the
        positions of the registers and of the patches (row-major) in it.
    """
    if num_patches < 1 or num_registers < 0:
        raise ValueError(f'mamba_reg_layout needs num_patches >= 1 and '
                         f'num_registers >= 0, got {num_patches}, '
                         f'{num_registers}')
    layout = _reg_layout_cpu(int(num_patches), int(num_registers))
    return tuple(t.to(device) if device is not None else t for t in layout)


_OFFICIAL_BACKBONE_PREFIXES = ('patch_embed.', 'layers.', 'norm_f.')
_OFFICIAL_BACKBONE_KEYS = ('cls_token', 'pos_embed', 'pos_embed_cls')
# Mamba-Reg classifier: registers -> neck (Linear C -> C / r) -> norm_neck
_OFFICIAL_HEAD_PREFIXES = ('neck.', 'norm_neck.')
_OFFICIAL_DROPPED_PREFIXES = ('rope.', )


def convert_vim(state_dict: Dict[str, torch.Tensor]) -> 'OrderedDict':
    """Convert an official hustvl/Vim state dict to the mmssm layout.

    The official backbone keys (``patch_embed.proj.*``, ``cls_token``,
    ``pos_embed``, ``layers.{i}.{norm,mixer}.*``, ``norm_f.weight``) are
    prefixed with ``backbone.``; the classifier ``head.*`` becomes
    ``head.fc.*`` (mmpretrain ``LinearClsHead``); unused ``rope.*`` buffers
    are dropped. Mamba-Reg files (wangf3014/Mamba-Reg) convert too: their
    registers ``cls_token`` ``(1, n, C)`` and ``pos_embed_cls`` go to the
    backbone (``pos_embed`` has patch rows only), the classifier's
    ``neck.*`` / ``norm_neck.*`` become ``head.neck.*`` /
    ``head.norm_neck.*`` (no mmpretrain head reads them). ``pos_embed``
    keeps its official layout (class-token row in the middle, at
    ``M // 2``), which is the layout of :class:`Vim`; it is checked, not
    reordered. A ``module.`` prefix (DDP) is stripped.

    Args:
        state_dict (dict): The ``'model'`` (or ``'model_ema'``) entry of an
            official checkpoint.

    Returns:
        OrderedDict: The converted state dict (mmpretrain ``ImageClassifier``
        layout; load the ``backbone.`` part into :class:`Vim`).
    """
    out = OrderedDict()
    unknown = []
    for key, value in state_dict.items():
        if key.startswith('module.'):
            key = key[len('module.'):]
        if key.startswith(_OFFICIAL_DROPPED_PREFIXES):
            continue
        if key in _OFFICIAL_BACKBONE_KEYS or key.startswith(
                _OFFICIAL_BACKBONE_PREFIXES):
            out['backbone.' + key] = value
        elif key.startswith('head.'):
            out['head.fc.' + key[len('head.'):]] = value
        elif key.startswith(_OFFICIAL_HEAD_PREFIXES):
            out['head.' + key] = value
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(f'convert_vim: keys not in the official Vim layout: '
                       f'{unknown[:10]}{" ..." if len(unknown) > 10 else ""}')
    if 'backbone.pos_embed' in out:
        rows = out['backbone.pos_embed'].shape[1]
        has_cls = ('backbone.cls_token' in out
                   and 'backbone.pos_embed_cls' not in out)
        _square_grid(rows - int(has_cls), 'convert_vim')
    return out


class _PaddedPatchGrid(nn.Module):
    """The patch grid of both Vim patch embeddings (:class:`VimPatchEmbed`,
    :class:`VimMBV2PatchEmbed`) and the zero padding that makes an image
    cover it (the rule is in :class:`VimPatchEmbed`'s docstring): a grid
    side of ``ceil(max(H - p, 0) / s) + 1`` patches for ``patch_size`` ``p``
    and ``stride`` ``s``, which the subclasses set."""

    patch_size: int
    stride: int

    def grid_size(self, h: int, w: int) -> Tuple[int, int]:
        """Patch grid ``(h', w')`` of an ``h x w`` image (after padding)."""
        p, s = self.patch_size, self.stride
        return tuple(
            math.ceil(max(side - p, 0) / s) + 1 for side in (h, w))

    def pad_to_grid(self, x: torch.Tensor):
        """Zero pad ``(B, C, H, W)`` images to cover their patch grid.

        Returns:
            tuple: The padded images and the grid ``(h', w')``.
        """
        h, w = x.shape[-2:]
        gh, gw = self.grid_size(h, w)
        pad_h = (gh - 1) * self.stride + self.patch_size - h
        pad_w = (gw - 1) * self.stride + self.patch_size - w
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return x, (gh, gw)


class VimPatchEmbed(_PaddedPatchGrid):
    """Patch embedding of Vim: one strided conv, padding odd image sizes.

    Images whose sides do not fit the patch grid are zero padded on the
    right and at the bottom (never cropped), so that every pixel is covered:
    a side ``H`` becomes ``p + ceil(max(H - p, 0) / s) * s`` for kernel ``p``
    and stride ``s`` (a multiple of 16 for the plain 16/16 patches).

    Args:
        in_channels (int): Image channels. Defaults to 3.
        embed_dims (int): Token width. Defaults to 192.
        patch_size (int): Conv kernel size. Defaults to 16.
        stride (int, optional): Conv stride; ``None`` means ``patch_size``
            (8 for the overlapping "Vim+" variant). Defaults to None.
    """

    def __init__(self,
                 in_channels: int = 3,
                 embed_dims: int = 192,
                 patch_size: int = 16,
                 stride: Optional[int] = None) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.stride = stride or patch_size
        if self.stride > patch_size:
            raise ValueError(f'stride {self.stride} > patch_size '
                             f'{patch_size} would skip pixels')
        self.proj = nn.Conv2d(
            in_channels, embed_dims, kernel_size=patch_size,
            stride=self.stride)

    def forward(self, x: torch.Tensor):
        """Embed ``(B, C, H, W)`` images.

        Returns:
            tuple: Tokens ``(B, h' * w', embed_dims)`` and the grid
            ``(h', w')``.
        """
        x, grid = self.pad_to_grid(x)
        x = self.proj(x)
        return x.flatten(2).transpose(1, 2), grid


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int = 1,
             stride: int = 1, groups: int = 1, act: bool = True):
    """``conv (no bias) -> BatchNorm [-> ReLU6]`` as an ``nn.Sequential``
    with the children ``conv``, ``bn`` (and ``act``)."""
    layers = OrderedDict(
        conv=nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=False),
        bn=nn.BatchNorm2d(out_channels))
    if act:
        layers['act'] = nn.ReLU6(inplace=True)
    return nn.Sequential(layers)


class _InvertedResidualS2(nn.Module):
    """MobileNetV2 inverted residual with stride 2 (hence no shortcut):
    ``1x1 expand -> BN -> ReLU6 -> 3x3 depthwise stride 2 -> BN -> ReLU6 ->
    1x1 project -> BN`` (linear bottleneck)."""

    def __init__(self, in_channels: int, out_channels: int,
                 expand_ratio: int) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand = _conv_bn(in_channels, hidden, 1)
        self.dw = _conv_bn(hidden, hidden, 3, stride=2, groups=hidden)
        self.project = _conv_bn(hidden, out_channels, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.dw(self.expand(x)))


class VimMBV2PatchEmbed(_PaddedPatchGrid):
    """MobileNetV2-style patch embedding of Vim (``patch_embed='mbv2'``).

    The dense ``p x p`` stride-``p`` patch convolution replaced by a
    depthwise-separable MobileNetV2 stem (Sandler et al., 2018) reaching the
    same stride ``p`` and width ``embed_dims`` (``p = 2 ** k``, ``k >= 2``):

    * ``stem``: conv 3x3 stride 2 (``in_channels -> 32``, no bias) -> BN ->
      ReLU6 (MobileNetV2's first layer);
    * ``blocks.0 .. blocks.{k-2}``: ``k - 1`` inverted residuals with
      stride 2 and expansion 6 (MobileNetV2's ``t``), each ``conv 1x1
      expand -> BN -> ReLU6 -> depthwise conv 3x3 stride 2 -> BN -> ReLU6 ->
      conv 1x1 project -> BN`` (linear bottleneck, no shortcut since the
      stride is 2), whose output widths are MobileNetV2's at that stride
      (24 at stride 4, 32 at 8, 64 at 16) except the last, which gives
      ``embed_dims``.

    Patch 16 (Vim-Ti): ``3 -> 32`` (/2), ``32 -> 192 -> 24`` (/4),
    ``24 -> 144 -> 32`` (/8), ``32 -> 192 -> 192`` (/16); 70,112 parameters
    (BatchNorm included) instead of the dense conv's 147,648. The child
    modules are ``stem`` and ``blocks.{j}.{expand,dw,project}``, each with
    ``conv``, ``bn`` (and ``act``). All convolutions are padded by
    ``kernel // 2``; images are first zero padded on the right and at the
    bottom to a multiple of ``p``, so the token grid is that of
    :class:`VimPatchEmbed` with ``stride == patch_size``
    (``ceil(H / p) x ceil(W / p)``).

    Args:
        in_channels (int): Image channels. Defaults to 3.
        embed_dims (int): Token width. Defaults to 192.
        patch_size (int): Total stride, one of ``4, 8, 16, 32``.
            Defaults to 16.
        stride (int, optional): Must be None or ``patch_size`` (no
            overlapping variant). Defaults to None.
    """

    STEM_CHANNELS = 32
    EXPAND_RATIO = 6
    #: MobileNetV2's width at each stride (of the first block reaching it)
    WIDTHS = {4: 24, 8: 32, 16: 64, 32: 160}
    PATCH_SIZES = (4, 8, 16, 32)

    def __init__(self,
                 in_channels: int = 3,
                 embed_dims: int = 192,
                 patch_size: int = 16,
                 stride: Optional[int] = None) -> None:
        super().__init__()
        if patch_size not in self.PATCH_SIZES:
            raise ValueError(
                f"Vim patch_embed='mbv2' needs patch_size in "
                f'{self.PATCH_SIZES} (a stride-2 stem then stride-2 '
                f'inverted residuals), got {patch_size!r}')
        if stride not in (None, patch_size):
            raise ValueError(
                f"Vim patch_embed='mbv2' has no overlapping variant: stride "
                f'must be None or patch_size ({patch_size}), got {stride!r}')
        self.in_channels = in_channels
        self.patch_size = self.stride = patch_size
        self.stem = _conv_bn(in_channels, self.STEM_CHANNELS, 3, stride=2)
        blocks, width, reached = [], self.STEM_CHANNELS, 2
        while reached < patch_size:
            reached *= 2
            out = embed_dims if reached == patch_size else self.WIDTHS[reached]
            blocks.append(_InvertedResidualS2(width, out, self.EXPAND_RATIO))
            width = out
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor):
        """Embed ``(B, C, H, W)`` images.

        Returns:
            tuple: Tokens ``(B, h' * w', embed_dims)`` and the grid
            ``(h', w')``.
        """
        x, grid = self.pad_to_grid(x)
        x = self.blocks(self.stem(x))
        return x.flatten(2).transpose(1, 2), grid

    @torch.no_grad()
    def init_weights(self) -> None:
        """torchvision's MobileNetV2 init: convolutions Kaiming normal
        (``fan_out``), BatchNorm weight 1 and bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


class VimSE(nn.Module):
    """Squeeze-and-Excitation over a token sequence (``se_ratio`` of Vim).

    ``x * sigmoid(fc2(relu(fc1(mean(x, tokens)))))[:, None]`` for ``x`` of
    shape ``(B, L, D)``: the squeeze is the mean over all ``L`` tokens of the
    sequence (see :class:`Vim` ``se_ratio`` for which tokens), ``fc1`` is
    ``Linear(D, D // ratio)``, ``fc2`` ``Linear(D // ratio, D)`` (both with
    bias), and the sigmoid gates scale the channels of every token.

    Args:
        embed_dims (int): ``D``.
        ratio (int): Reduction ratio ``r``; ``D // r >= 1``.
    """

    def __init__(self, embed_dims: int, ratio: int) -> None:
        super().__init__()
        hidden = embed_dims // ratio
        self.fc1 = nn.Linear(embed_dims, hidden)
        self.fc2 = nn.Linear(hidden, embed_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=1)))))
        return x * gate.unsqueeze(1)


class VimLayer(BaseModule):
    """One Vim layer: add -> RMSNorm -> bidirectional Mamba mixer.

    ``forward(hidden, residual) -> (hidden, residual)``: the residual stream
    is updated with the previous layer's output (``residual + hidden``, or
    ``hidden`` for the first layer), kept in float32, normalised and mixed;
    the mixer output (scaled by the SE block ``se`` with ``se_ratio``) is
    returned as the new ``hidden``.

    Stochastic depth: the official code drops the *incoming* ``hidden`` of
    layer ``i`` with rate ``dpr[i - 1]`` and the last output, before
    ``norm_f``, with rate ``dpr[-1]``; this layer drops its own *outgoing*
    ``hidden`` with rate ``dpr[i]``, the same thing with one draw per layer.

    Args:
        embed_dims (int): Token width.
        drop_path_rate (float): Stochastic depth rate of this layer's output.
            Defaults to 0.
        norm_eps (float): Epsilon of the RMSNorm. Defaults to 1e-5.
        residual_in_fp32 (bool): Keep the residual stream in float32.
            Defaults to True.
        mixer_cfg (dict, optional): Extra arguments of
            :class:`~mmssm.models.layers.BiMambaMixer` (``d_state``,
            ``expand``, ``d_conv``, ``dt_rank``, ``scan_impl`` ...).
        se_ratio (int, optional): With a reduction ratio, a
            :class:`VimSE` block ``se`` scales the mixer output (before the
            stochastic depth and the next residual add); None or 0: none
            (the official layer). Defaults to None.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 drop_path_rate: float = 0.,
                 norm_eps: float = 1e-5,
                 residual_in_fp32: bool = True,
                 mixer_cfg: Optional[dict] = None,
                 se_ratio: Optional[int] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.residual_in_fp32 = residual_in_fp32
        self.norm = RMSNorm(embed_dims, eps=norm_eps)
        self.mixer = BiMambaMixer(embed_dims, **(mixer_cfg or {}))
        # a plain attribute when off: no module, no state-dict key
        self.se = VimSE(embed_dims, se_ratio) if se_ratio else None
        self.drop_path = (
            DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity())

    def forward(self, hidden: torch.Tensor,
                residual: Optional[torch.Tensor] = None):
        if self.residual_in_fp32 and fast_path_enabled(hidden) and (
                residual is None or residual.dtype == torch.float32):
            # fused residual add + RMSNorm (mmssm.ops.mixer_cpu)
            residual, normed = add_rmsnorm_cpu(hidden, residual,
                                               self.norm.weight,
                                               self.norm.eps)
            return self.drop_path(self._mix(normed)), residual
        residual = hidden if residual is None else residual + hidden
        if self.residual_in_fp32:
            residual = residual.float()
        hidden = self.drop_path(self._mix(self.norm(residual)))
        return hidden, residual

    def _mix(self, normed: torch.Tensor) -> torch.Tensor:
        out = self.mixer(normed)
        return out if self.se is None else self.se(out)


@register_model()
class Vim(PlainBackboneMixin, BaseBackbone):
    """Vision Mamba (Vim), plain bidirectional SSM backbone.

    A sequence of patch tokens with a class token in the middle goes through
    ``num_layers`` :class:`VimLayer` (bidirectional Mamba mixers, RMSNorm,
    float32 residual stream) and a final RMSNorm ``norm_f``. Besides image
    classification (``out_type='cls_token'``) it gives the token maps of any
    layers as ``(B, C, h, w)`` feature maps for dense prediction, for any
    input size: images whose sides are not multiples of the patch stride are
    zero padded on the right and bottom, and the position embedding is
    resized (bicubic, float32) to the input grid.

    Args:
        arch (str | dict): ``'tiny'`` (192 wide), ``'small'`` (384),
            ``'base'`` (768), each 24 layers; ``'middle'`` (576, 32 layers)
            and ``'large'`` (1024, 48 layers) of ShuffleMamba; the same sizes
            with Mamba-Reg registers as ``'reg-tiny'`` ... ``'reg-large'``
            (``'reg-middle'``: ShuffleMamba-Reg-M, 12 registers assumed, no
            Mamba-Reg release of that size); or a dict with
            ``embed_dims`` and ``num_layers`` (and optionally ``d_state``
            (16), ``expand`` (2)). Defaults to ``'tiny'``.
        img_size (int | tuple): Pre-training image size; sets the grid of the
            stored ``pos_embed``. Defaults to 224.
        patch_size (int): Patch (conv kernel) size. Defaults to 16.
        stride (int, optional): Patch stride; 8 gives the overlapping "Vim+"
            variant (27x27 tokens at 224). Defaults to None (= patch_size).
        in_channels (int): Image channels. Defaults to 3.
        out_indices (int | Sequence[int]): Layers whose outputs are returned
            (negative counts from the end). Defaults to -1.
        out_type (str): ``'featmap'`` (``(B, C, h, w)`` maps with the class
            token removed), ``'cls_token'`` (``(B, C)``, needs the class
            token), ``'avg_featmap'`` (``(B, C)`` mean of the patch tokens)
            or ``'raw'`` (``(B, L, C)`` tokens, class token included).
            Defaults to ``'featmap'``.
        layer_output (str): Which tensor of a layer is its output:
            ``'stream'`` (the residual stream after the layer, ``residual +
            hidden``) or ``'mixer'`` (the layer's mixer output ``hidden``
            only, as in the official segmentation code). The last layer with
            ``final_norm`` always gives ``norm_f(residual + hidden)``.
            Defaults to ``'stream'``.
        with_cls_token (bool, optional): Insert the class token.
            ``None`` means True without registers and False with them.
            Defaults to None.
        num_registers (int, optional): Mamba-Reg registers spread over the
            sequence (:func:`mamba_reg_layout`), with their own position
            embedding ``pos_embed_cls``; they replace the class token
            (``out_type='cls_token'`` gives the ``n`` registers concatenated,
            ``(B, n * C)``, the Mamba-Reg classification feature) and are
            dropped from dense outputs. ``None`` takes the arch preset's
            value (12 for ``'reg-tiny'``/``'reg-small'``/``'reg-base'``/
            ``'reg-middle'``, 16 for ``'reg-large'``), else 0.
            Defaults to None.
        cls_position (str): Where the class token (and its ``pos_embed`` row)
            sits: ``'middle'`` (index ``M // 2`` of ``M`` patches, Vim) or
            ``'head'`` (index 0, ShuffleMamba). Defaults to ``'middle'``.
        final_norm (bool): Apply ``norm_f`` to the last layer's output.
            When False, ``norm_f`` is kept (official checkpoints have it) with
            ``requires_grad=False``, so DDP needs no ``find_unused_parameters``.
            Defaults to True.
        drop_rate (float): Dropout after the position embedding.
            Defaults to 0.
        drop_path_rate (float): Stochastic depth rate of the last layer
            (``linspace(0, rate, num_layers)``). Defaults to 0.
        norm_eps (float): RMSNorm epsilon. Defaults to 1e-5.
        interpolate_mode (str): Position-embedding resize mode.
            Defaults to ``'bicubic'``.
        frozen_stages (int): The meaning shared by every mmssm backbone
            (:class:`~mmssm.models.backbones.base.BaseBackbone`), the layers
            being the stages: ``-1`` nothing frozen, ``0`` the patch
            embedding, position embedding and class token (or registers);
            ``k > 0`` also the first ``k`` layers (and ``norm_f`` when
            ``k == num_layers``). Defaults to -1.
        norm_eval (bool): Must stay False unless ``patch_embed='mbv2'``:
            Vim has no other BatchNorm (RMSNorm keeps no statistics), so
            ``True`` is refused with a ``ValueError``; with ``'mbv2'`` it
            keeps the stem's BatchNorm statistics fixed. Defaults to False.
        with_cp (bool): Gradient checkpointing of every layer, in training
            mode (:func:`~mmssm.models.layers.backbone_utils.
            maybe_checkpoint`). Defaults to False.
        mixer_cfg (dict, optional): Extra arguments of the mixers (e.g.
            ``scan_impl``). Defaults to None.
        se_ratio (int, optional): Seed-002 option (paper:
            papers/improving-ssm-vim-mambavision.txt, reduction 4): a
            Squeeze-and-Excitation block (:class:`VimSE`, ``layers.{i}.se``)
            at the end of every layer, scaling the channels of the mixer
            output before the residual add (and before stochastic depth):
            ``Linear(D, D // r) -> ReLU -> Linear(D // r, D) -> sigmoid``.
            The squeeze is the mean over *all* tokens of the sequence, the
            class token or registers (and the tokens of zero-padded image
            borders) included, exactly the tokens the mixer mixes: the layer
            keeps the plain interface ``layer(hidden, residual)`` with no
            token layout, and the squeeze is order-independent, so SLWS
            (which shuffles the tokens of a layer) and the ViT-Adapter
            (:class:`~mmssm.models.backbones.PlainAdapter`, through
            ``run_layer``) work unchanged. None or 0: no SE (the official
            model). Defaults to None.
        patch_embed (str): Seed-002 option: ``'conv'`` (the official dense
            ``patch_size x patch_size`` convolution, :class:`VimPatchEmbed`)
            or ``'mbv2'`` (a MobileNetV2 depthwise-separable stem reaching
            the same stride and width, :class:`VimMBV2PatchEmbed`;
            ``patch_size`` 4, 8, 16 or 32, no overlapping ``stride``; it has
            BatchNorm, so ``norm_eval`` is allowed). Defaults to ``'conv'``.
        init_cfg (dict, optional): Initialization config;
            ``dict(type='Pretrained', checkpoint=...)`` accepts official
            hustvl/Vim and Mamba-Reg files (``{'model': ..., 'args': ...}``;
            their classifier keys are dropped by :meth:`convert_checkpoint`),
            files made by ``tools/model_converters/vim2mmssm.py`` and mmssm
            checkpoints (``backbone.`` keys), loaded strictly (any missing,
            unexpected or mis-shaped key stops; ``strict=False`` for a
            partial load). With the seed-002 options on, an official-layout
            file (no ``se`` keys / the dense ``patch_embed.proj``) still
            loads strictly for every other parameter: the ``se`` and
            ``mbv2`` parameters are reported as newly initialised (they keep
            their random init), and the official ``patch_embed.proj.*``
            weights, which the ``mbv2`` stem replaces, are dropped with a
            warning naming them (:meth:`convert_checkpoint`).
            Defaults to None.
    """

    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'], dict(embed_dims=192, num_layers=24)),
        **dict.fromkeys(['s', 'small'], dict(embed_dims=384, num_layers=24)),
        **dict.fromkeys(['b', 'base'], dict(embed_dims=768, num_layers=24)),
        **dict.fromkeys(['m', 'middle'], dict(embed_dims=576,
                                              num_layers=32)),
        **dict.fromkeys(['l', 'large'], dict(embed_dims=1024,
                                             num_layers=48)),
        # Mamba-Reg (mambar_{tiny,small,base,large}_patch16_224)
        **dict.fromkeys(['reg-t', 'reg-tiny'],
                        dict(embed_dims=192, num_layers=24,
                             num_registers=12)),
        **dict.fromkeys(['reg-s', 'reg-small'],
                        dict(embed_dims=384, num_layers=24,
                             num_registers=12)),
        **dict.fromkeys(['reg-b', 'reg-base'],
                        dict(embed_dims=768, num_layers=24,
                             num_registers=12)),
        **dict.fromkeys(['reg-m', 'reg-middle'],
                        dict(embed_dims=576, num_layers=32,
                             num_registers=12)),
        **dict.fromkeys(['reg-l', 'reg-large'],
                        dict(embed_dims=1024, num_layers=48,
                             num_registers=16)),
    }
    OUT_TYPES = ('featmap', 'cls_token', 'avg_featmap', 'raw')
    PATCH_EMBEDS = ('conv', 'mbv2')
    #: Tokens (batch x sequence) from which CPU inference runs on mmssm's
    #: kernel threads alone (see :meth:`forward`).
    _EXCLUSIVE_MIN_TOKENS = 1024

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 img_size: Union[int, Sequence[int]] = 224,
                 patch_size: int = 16,
                 stride: Optional[int] = None,
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 out_type: str = 'featmap',
                 layer_output: str = 'stream',
                 with_cls_token: Optional[bool] = None,
                 cls_position: str = 'middle',
                 num_registers: Optional[int] = None,
                 final_norm: bool = True,
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 norm_eps: float = 1e-5,
                 interpolate_mode: str = 'bicubic',
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 mixer_cfg: Optional[dict] = None,
                 se_ratio: Optional[int] = None,
                 patch_embed: str = 'conv',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = parse_arch(
            arch, self.arch_zoo, ('embed_dims', 'num_layers'), name='Vim')
        self.embed_dims = self.arch_settings['embed_dims']
        self.num_layers = self.arch_settings['num_layers']
        if out_type not in self.OUT_TYPES:
            raise ValueError(f'Vim out_type must be one of {self.OUT_TYPES},'
                             f' got {out_type!r}')
        if num_registers is None:
            num_registers = self.arch_settings.get('num_registers', 0)
        if (not isinstance(num_registers, int)
                or isinstance(num_registers, bool) or num_registers < 0):
            raise ValueError('Vim num_registers must be an int >= 0, got '
                             f'{num_registers!r}')
        if with_cls_token is None:
            with_cls_token = num_registers == 0
        if with_cls_token and num_registers:
            raise ValueError(
                'Vim with registers (Mamba-Reg) has no class token: set '
                'with_cls_token=False (or None) when num_registers > 0')
        if out_type == 'cls_token' and not (with_cls_token or num_registers):
            raise ValueError("Vim out_type='cls_token' needs "
                             'with_cls_token=True or registers')
        if layer_output not in ('stream', 'mixer'):
            raise ValueError("Vim layer_output must be 'stream' or 'mixer', "
                             f'got {layer_output!r}')
        if patch_embed not in self.PATCH_EMBEDS:
            raise ValueError(f'Vim patch_embed must be one of '
                             f'{self.PATCH_EMBEDS} (the dense patch conv or '
                             f'the MobileNetV2 stem), got {patch_embed!r}')
        if se_ratio is not None and (
                not isinstance(se_ratio, int) or isinstance(se_ratio, bool)
                or se_ratio < 0
                or (se_ratio and self.embed_dims // se_ratio < 1)):
            raise ValueError(
                'Vim se_ratio must be None or 0 (no SE block) or a positive '
                'int reduction ratio r with embed_dims // r >= 1 (the paper: '
                f'4; embed_dims={self.embed_dims}), got {se_ratio!r}')
        self.se_ratio = se_ratio or None
        self.patch_embed_type = patch_embed
        self.out_type = out_type
        self.layer_output = layer_output
        self.out_indices = parse_out_indices(out_indices, self.num_layers)
        self.with_cls_token = with_cls_token
        self.num_registers = num_registers
        cls_token_index(1, cls_position)  # validates
        self.cls_position = cls_position
        self.final_norm = final_norm
        self.interpolate_mode = interpolate_mode
        self._init_training_options(self.num_layers, frozen_stages,
                                    norm_eval, with_cp)

        embed_cls = (VimMBV2PatchEmbed
                     if patch_embed == 'mbv2' else VimPatchEmbed)
        self.patch_embed = embed_cls(in_channels, self.embed_dims,
                                     patch_size, stride)
        if isinstance(img_size, int):
            img_size = (img_size, img_size)
        self.img_size = tuple(img_size)
        self.patch_resolution = self.patch_embed.grid_size(*self.img_size)
        num_patches = self.patch_resolution[0] * self.patch_resolution[1]
        if with_cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))
        elif num_registers:
            # Mamba-Reg names: the registers are `cls_token` (1, n, C)
            self.cls_token = nn.Parameter(
                torch.zeros(1, num_registers, self.embed_dims))
            self.pos_embed_cls = nn.Parameter(
                torch.zeros(1, num_registers, self.embed_dims))
        self.pos_embed = nn.Parameter(
            torch.zeros(1, num_patches + int(with_cls_token),
                        self.embed_dims))
        # no weight decay on the embeddings and the class token/registers
        # (the official recipes exempt them; mmssm's optimizer constructor
        # reads the flag)
        for name in ('pos_embed', 'pos_embed_cls', 'cls_token'):
            if hasattr(self, name):
                getattr(self, name)._no_weight_decay = True
        self.drop_after_pos = nn.Dropout(p=drop_rate)

        mixer_cfg = dict(mixer_cfg or {})
        for key in ('d_state', 'expand', 'd_conv', 'dt_rank'):
            if key in self.arch_settings:
                mixer_cfg.setdefault(key, self.arch_settings[key])
        dpr = stage_drop_path_rates(drop_path_rate, [self.num_layers])[0]
        self.layers = nn.ModuleList([
            VimLayer(
                self.embed_dims,
                drop_path_rate=dpr[i],
                norm_eps=norm_eps,
                mixer_cfg=mixer_cfg,
                se_ratio=self.se_ratio) for i in range(self.num_layers)
        ])
        self.norm_f = RMSNorm(self.embed_dims, eps=norm_eps)
        if not final_norm:
            # Kept for the checkpoint layout but unused: no gradient, so that
            # DistributedDataParallel does not wait for one.
            self.norm_f.requires_grad_(False)

        self._vim_init()
        self._finish_init()

    # ------------------------------------------------------------------ init
    @torch.no_grad()
    def _vim_init(self) -> None:
        """Random init of the official code (``segm_init_weights`` of the
        patch conv, truncated normal embeddings, GPT-2 style ``out_proj``
        rescaling by ``1 / sqrt(num_layers)``); the ``mbv2`` stem gets
        torchvision's MobileNetV2 init, the SE blocks PyTorch's ``Linear``
        default."""
        if isinstance(self.patch_embed, VimMBV2PatchEmbed):
            self.patch_embed.init_weights()
        else:
            conv = self.patch_embed.proj
            fan_in = (conv.in_channels * conv.kernel_size[0] *
                      conv.kernel_size[1])
            # lecun normal: truncated normal with variance 1 / fan_in
            trunc_normal_(conv.weight,
                          std=math.sqrt(1. / fan_in) / .87962566103)
            nn.init.zeros_(conv.bias)
        trunc_normal_(self.pos_embed, std=.02)
        if self.with_cls_token or self.num_registers:
            trunc_normal_(self.cls_token, std=.02)
        if self.num_registers:
            trunc_normal_(self.pos_embed_cls, std=.02)
        for layer in self.layers:
            weight = layer.mixer.out_proj.weight
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
            weight /= math.sqrt(self.num_layers)

    def convert_checkpoint(self, state_dict, prefix: str = '') -> list:
        """Fit an official, converted or mmssm checkpoint to this model, in
        place (also the ``load_state_dict`` pre-hook).

        The official backbone keys are Vim's own. The official classifier
        keys under ``prefix`` (``head.*``, Mamba-Reg's ``neck.*`` /
        ``norm_neck.*``, unused ``rope.*`` buffers) are dropped, and the
        position embedding is fitted (:meth:`_prepare_pos_embed`).

        The seed-002 options (:meth:`_fit_seed002_options`): a checkpoint of
        the official layout lacks their parameters by design, which are
        returned (strict loading then reports them as newly initialised and
        stays strict about every other key); with ``patch_embed='mbv2'``
        the official dense ``patch_embed.proj.*`` weights are dropped with
        a warning naming them.

        Returns:
            list[str]: The option parameters the checkpoint lacks by design
            (without ``prefix``).
        """
        self._drop_checkpoint_keys(
            state_dict, prefix, _OFFICIAL_HEAD_PREFIXES +
            _OFFICIAL_DROPPED_PREFIXES + ('head.', ), 'classifier')
        self._prepare_pos_embed(state_dict, prefix)
        return self._fit_seed002_options(state_dict, prefix)

    def _fit_seed002_options(self, state_dict, prefix) -> list:
        """The ``se_ratio`` / ``patch_embed='mbv2'`` part of
        :meth:`convert_checkpoint`.

        Rules (idempotent; a checkpoint saved with the same options passes
        unchanged):

        * ``se_ratio``: when the checkpoint has layer keys (``layers.*``) but
          no ``layers.{i}.se.*`` key at all (the official layout), every
          ``layers.{i}.se.*`` parameter of this model is absent by design.
          A checkpoint with some ``se`` keys is taken as an SE checkpoint:
          the ones it lacks are missing (strict loading stops).
        * ``patch_embed='mbv2'``: when the checkpoint has the dense
          ``patch_embed.proj.*`` and no key of the MobileNetV2 stem, the
          dense keys are deleted (a warning names them) and every
          ``patch_embed.*`` entry of this model (BatchNorm statistics
          included) is absent by design.
        """
        absent = []
        local = [k[len(prefix):] for k in state_dict if k.startswith(prefix)]
        def is_se(key):  # layers.{i}.se.*
            return key.startswith('layers.') and key.split('.')[2:3] == ['se']

        if self.se_ratio and any(k.startswith('layers.') for k in local) \
                and not any(is_se(k) for k in local):
            absent += [k for k in self.state_dict(keep_vars=True) if is_se(k)]
        if self.patch_embed_type == 'mbv2':
            dense = [k for k in local if k.startswith('patch_embed.proj.')]
            if dense and not any(
                    k.startswith(('patch_embed.stem.', 'patch_embed.blocks.'))
                    for k in local):
                for key in dense:
                    del state_dict[prefix + key]
                print_log(
                    f"Vim (patch_embed='mbv2'): dropped the {len(dense)} "
                    'weights of the dense patch embedding that the '
                    f'MobileNetV2 stem replaces: {sorted(dense)}',
                    logger='current',
                    level=logging.WARNING)
                absent += [
                    k for k in self.state_dict(keep_vars=True)
                    if k.startswith('patch_embed.')
                ]
        return absent

    def _prepare_pos_embed(self, state_dict, prefix) -> None:
        """``load_state_dict`` pre-hook: fit a checkpoint's ``pos_embed`` to
        this model (grid resize; class row dropped when this model has no
        class token)."""
        name = prefix + 'pos_embed'
        if self.num_registers or (prefix + 'pos_embed_cls') in state_dict:
            self._prepare_register_embed(state_dict, prefix)
            return
        if name not in state_dict:
            return
        ckpt_pos = state_dict[name]
        ckpt_has_cls = (prefix + 'cls_token') in state_dict
        if ckpt_has_cls and not self.with_cls_token:
            del state_dict[prefix + 'cls_token']
        elif self.with_cls_token and not ckpt_has_cls:
            raise KeyError(f'{prefix}cls_token is missing from the '
                           'checkpoint; build Vim with with_cls_token=False '
                           'to load class-token-free weights')
        num_patches = ckpt_pos.shape[1] - int(ckpt_has_cls)
        if (ckpt_pos.shape[1] == self.pos_embed.shape[1]
                and ckpt_has_cls == self.with_cls_token):
            return
        src = _square_grid(num_patches, f'Vim {name}')
        new = resize_vim_pos_embed(ckpt_pos, src, self.patch_resolution,
                                   ckpt_has_cls, self.interpolate_mode,
                                   self.cls_position)
        if ckpt_has_cls and not self.with_cls_token:
            mid = cls_token_index(
                self.patch_resolution[0] * self.patch_resolution[1],
                self.cls_position)
            new = torch.cat([new[:, :mid], new[:, mid + 1:]], dim=1)
        MMLogger.get_current_instance().info(
            f'Vim: resized {name} from grid {src} '
            f'{"(with class row) " * ckpt_has_cls}to '
            f'{self.patch_resolution}')
        state_dict[name] = new

    def _prepare_register_embed(self, state_dict, prefix) -> None:
        """The Mamba-Reg part of :meth:`_prepare_pos_embed`: check the
        registers (``cls_token`` ``(1, n, C)``, ``pos_embed_cls``) and resize
        the patch-only ``pos_embed``."""
        regs = state_dict.get(prefix + 'cls_token')
        if not self.num_registers:
            raise KeyError(
                f'the checkpoint has Mamba-Reg registers ({prefix}'
                f'pos_embed_cls, {prefix}cls_token of shape '
                f'{None if regs is None else tuple(regs.shape)}); build Vim '
                'with num_registers (or a reg-* arch) to load it')
        if (prefix + 'pos_embed_cls') not in state_dict and regs is not None:
            raise KeyError(
                f'{prefix}pos_embed_cls is missing: not a Mamba-Reg '
                f'checkpoint (a {tuple(regs.shape)} cls_token), but this Vim '
                f'has {self.num_registers} registers')
        for key in ('cls_token', 'pos_embed_cls'):
            value = state_dict.get(prefix + key)
            if value is not None and value.shape[1] != self.num_registers:
                raise ValueError(
                    f'checkpoint {prefix}{key} has {value.shape[1]} '
                    f'registers, this Vim {self.num_registers}')
        name = prefix + 'pos_embed'
        ckpt_pos = state_dict.get(name)
        if ckpt_pos is None or ckpt_pos.shape[1] == self.pos_embed.shape[1]:
            return
        src = _square_grid(ckpt_pos.shape[1], f'Vim {name}')
        state_dict[name] = resize_vim_pos_embed(ckpt_pos, src,
                                                self.patch_resolution, False,
                                                self.interpolate_mode)
        MMLogger.get_current_instance().info(
            f'Vim: resized {name} from grid {src} to '
            f'{self.patch_resolution}')

    # --------------------------------------------------------------- forward
    def token_layout(self, grid: Tuple[int, int], device=None):
        """Positions of the patch and extra tokens in the sequence.

        Args:
            grid (tuple[int, int]): Patch grid ``(h, w)``.
            device (torch.device, optional): Device of the indices.

        Returns:
            tuple[torch.Tensor]: ``patch_index`` ``(h * w,)`` (row-major
            patch order) and ``extra_index`` (the class token's position,
            the registers' positions, or empty).
        """
        num_patches = grid[0] * grid[1]
        if self.num_registers:
            _, reg_pos, patch_pos = mamba_reg_layout(
                num_patches, self.num_registers, device)
            return patch_pos, reg_pos
        index = torch.arange(num_patches + int(self.with_cls_token),
                             device=device)
        if not self.with_cls_token:
            return index, index[:0]
        mid = cls_token_index(num_patches, self.cls_position)
        return torch.cat([index[:mid], index[mid + 1:]]), index[mid:mid + 1]

    def prepare_tokens(self, x: torch.Tensor):
        """Patch-embed images and add the class token and position embedding.

        Args:
            x (torch.Tensor): Images ``(B, C, H, W)``.

        Returns:
            tuple: Tokens ``(B, L, C)``, the patch grid ``(h, w)`` and the
            index of the class token (``h * w // 2``, or 0 with
            ``cls_position='head'``; ``None`` without it), or, with
            registers, their positions ``(n,)`` (a LongTensor).
        """
        check_image_input(x, self.patch_embed.in_channels, 'Vim')
        tokens, grid = self.patch_embed(x)
        cls_index = None
        if self.num_registers:
            pos_embed = resize_vim_pos_embed(self.pos_embed,
                                             self.patch_resolution, grid,
                                             False, self.interpolate_mode)
            tokens = self.drop_after_pos(tokens + pos_embed)
            order, reg_index, _ = mamba_reg_layout(
                tokens.shape[1], self.num_registers, tokens.device)
            regs = (self.cls_token + self.pos_embed_cls).expand(
                tokens.shape[0], -1, -1)
            tokens = torch.cat([tokens, regs.to(tokens.dtype)], 1)[:, order]
            return tokens, grid, reg_index
        if self.with_cls_token:
            cls_index = cls_token_index(tokens.shape[1], self.cls_position)
            cls_token = self.cls_token.expand(tokens.shape[0], -1, -1)
            tokens = torch.cat(
                [tokens[:, :cls_index], cls_token, tokens[:, cls_index:]], 1)
        pos_embed = resize_vim_pos_embed(self.pos_embed,
                                         self.patch_resolution, grid,
                                         self.with_cls_token,
                                         self.interpolate_mode,
                                         self.cls_position)
        return self.drop_after_pos(tokens + pos_embed), grid, cls_index

    # ------------------------------------------ plain-backbone interface
    @property
    def in_channels(self) -> int:
        """Image channels."""
        return self.patch_embed.in_channels

    @property
    def token_stride(self) -> int:
        """Pixels between neighbouring tokens (the patch stride)."""
        return self.patch_embed.stride

    def grid_size(self, h: int, w: int) -> Tuple[int, int]:
        """Token grid of an ``h x w`` image (after padding)."""
        return self.patch_embed.grid_size(h, w)

    def final_stream_norm(self, stream: torch.Tensor) -> torch.Tensor:
        """``norm_f`` with ``final_norm``, else the identity."""
        return self.norm_f(stream) if self.final_norm else stream

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Forward images ``(B, C, H, W)``.

        Returns:
            tuple[torch.Tensor]: One output per ``out_indices`` entry, shaped
            as ``out_type`` says.
        """
        hidden, grid, cls_index = self.prepare_tokens(x)
        # inference on the CPU: the kernels run on torch's OpenMP team when
        # they can (mmssm.ops.cpu_threads.launch_is_cheap); otherwise long
        # sequences run on mmssm's kernel threads alone
        # (mmssm.ops.cpu_threads.exclusive_threads) and short ones keep
        # torch's own matrix products, which are faster there
        exclusive = fast_path_enabled(hidden) and not launch_is_cheap() and \
            hidden.shape[0] * hidden.shape[1] >= self._EXCLUSIVE_MIN_TOKENS
        with (exclusive_threads() if exclusive else contextlib.nullcontext()):
            return self._forward_layers(hidden, grid, cls_index)

    def _forward_layers(self, hidden, grid, cls_index):
        """The layers and the outputs of :meth:`forward`."""
        residual = None
        outs = []
        for i in range(self.num_layers):
            hidden, residual = self.run_layer(i, hidden, residual)
            if i in self.out_indices:
                if i == self.num_layers - 1 and self.final_norm:
                    feat = self.norm_f(residual + hidden)
                elif self.layer_output == 'stream':
                    feat = residual + hidden
                else:
                    feat = hidden
                outs.append(self._format_output(feat, grid, cls_index))
        return tuple(outs)

    def _format_output(self, tokens: torch.Tensor, grid: Tuple[int, int],
                       cls_index: Optional[int]) -> torch.Tensor:
        if self.out_type == 'raw':
            return tokens
        if self.out_type == 'cls_token':
            # registers: (B, n * C), Mamba-Reg's classification feature
            return tokens[:, cls_index].flatten(1)
        if isinstance(cls_index, torch.Tensor):
            tokens = tokens[:, self.token_layout(grid, tokens.device)[0]]
        elif cls_index is not None:
            tokens = torch.cat(
                [tokens[:, :cls_index], tokens[:, cls_index + 1:]], dim=1)
        if self.out_type == 'avg_featmap':
            return tokens.mean(dim=1)
        batch = tokens.shape[0]
        return tokens.transpose(1, 2).reshape(batch, self.embed_dims,
                                              *grid).contiguous()

    # ------------------------------------------------- training utilities
    def stem_modules(self) -> list:
        """Patch embedding, position embedding, class token / registers."""
        items = [self.patch_embed, self.pos_embed]
        if self.with_cls_token or self.num_registers:
            items.append(self.cls_token)
        if self.num_registers:
            items.append(self.pos_embed_cls)
        return items

    def stage_modules(self, index: int) -> list:
        """Layer ``index`` (and ``norm_f`` with the last layer)."""
        items = [self.layers[index]]
        if index == self.num_layers - 1 and self.final_norm:
            items.append(self.norm_f)
        return items

    def get_layer_depth(self, param_name: str, prefix: str = ''):
        """Layer depth of a parameter, for layer-wise lr decay.

        mmpretrain's protocol: embeddings (``patch_embed``, ``pos_embed``,
        ``cls_token``) are depth 0, ``layers.i`` is ``i + 1``, everything
        else (``norm_f``, parameters outside the backbone) is the top depth
        ``num_layers + 1``.

        Args:
            param_name (str): Parameter name.
            prefix (str): Prefix of the backbone's parameters in
                ``param_name`` (e.g. ``'backbone.'``). Defaults to ``''``.

        Returns:
            tuple[int, int]: ``(layer_depth, num_depths)`` with
            ``num_depths = num_layers + 2``.
        """
        num_depths = self.num_layers + 2
        if not param_name.startswith(prefix):
            return num_depths - 1, num_depths
        name = param_name[len(prefix):]
        if name in ('cls_token', 'pos_embed',
                    'pos_embed_cls') or name.startswith(
                'patch_embed.'):
            return 0, num_depths
        if name.startswith('layers.'):
            return int(name.split('.')[1]) + 1, num_depths
        return num_depths - 1, num_depths
