"""MambaVision: a hybrid Mamba + self-attention hierarchical backbone.

Hatamizadeh and Kautz, "MambaVision: A Hybrid Mamba-Transformer Vision
Backbone" (CVPR 2025). The layers, their order, their names and every default
follow the official code (NVlabs/MambaVision,
``mambavision/models/mamba_vision.py`` for the classifier and
``object_detection/tools/mamba_vision.py`` for the dense wrapper), so that the
released ``.pth.tar`` files and their Hugging Face ``model.safetensors``
copies load as they are (:meth:`MambaVision.convert_checkpoint`):

* stem ``patch_embed.conv_down``: conv3x3 s2 (no bias) -> BN (eps 1e-4) ->
  ReLU -> conv3x3 s2 (no bias) -> BN (eps 1e-4) -> ReLU (stride 4);
* stages 0-1 (``levels.0``, ``levels.1``): :class:`MambaVisionConvBlock`
  (conv3x3 -> BN -> GELU(tanh) -> conv3x3 -> BN, optional layer scale,
  residual);
* stages 2-3: the map is zero padded on the right and bottom to a multiple of
  the stage's window (a window larger than the map pads the map up to the
  window: attention and scan then run over one window holding the map and
  zeros), split into ``ws x ws`` windows, and every block of the stage runs
  on the windows' token sequences; the first ``ceil(d / 2)`` blocks of a
  stage of depth ``d`` use :class:`MambaVisionMixer`, the others
  :class:`MambaVisionAttention` (:class:`MambaVisionBlock`: pre-norm LN,
  mixer, LN, MLP ratio 4 with exact GELU, optional layer scale
  ``gamma_1``/``gamma_2``); the padding is cropped off afterwards;
* every stage but the last ends with ``downsample`` (conv3x3 s2, no bias,
  ``C -> 2C``);
* stochastic depth grows linearly from 0 over all blocks.

Outputs: for dense prediction the stage features *before* the downsampling,
each through its own output norm ``outnorm{i}`` (a channels-first LayerNorm,
eps 1e-5, as the official detection wrapper; ``out_norm='bn'`` or ``None``
are the other choices); for classification (``out_type='avgpool'``) the
official head's input: BatchNorm ``norm`` on the last map, then global
average pooling, a ``(B, C)`` vector for mmpretrain's ``LinearClsHead``.

Departures from the official code, all deliberate:

* the selective scan is :func:`mmssm.ops.selective_scan` (Triton on CUDA, the
  CPU kernels otherwise) instead of ``mamba_ssm``'s CUDA
  ``selective_scan_fn``; same recurrence, float32 accumulation;
* attention dropout is applied in training mode only (the official fused
  path passes ``dropout_p`` in eval mode too; both default to 0);
* the per-output norms, ``frozen_stages``, ``norm_eval`` and ``with_cp`` are
  the shared mmssm options (:class:`~mmssm.models.backbones.base.
  BaseBackbone`); the official dense wrapper has no frozen stages, and its
  checkpoint loader prints and swallows every error, where this one loads
  strictly (:func:`mmssm.utils.checkpoint.load_pretrained`);
* stages after the last one in ``out_indices`` are not run (the official
  dense wrapper runs them and discards them);
* ``qk_norm`` (off in every official model) and the unused ``resolution``
  argument are not implemented; the classifier's ``head`` lives in
  mmpretrain (``LinearClsHead``), not in the backbone.

GMambaVision options (papers/improving-ssm-vim-mambavision.txt, "seed 002"),
all off by default; with them off the model, its keys and its outputs are
the official ones. The paper describes them in a few sentences and ships no
code, so the details below are this implementation's choices:

* ``attn_type`` of the attention blocks of stages 2-3 (the mixers and the
  official window partition are unchanged; every option works inside each
  ``ws x ws`` window sequence of the official partition, stage padding
  included, as the official attention does):

  - ``'global'`` (official): attention over the whole window sequence;
  - ``'shifted_window'``: Swin attention inside each window. "Window
    halved per stage" is read as: the attention windows of a stage are
    ``aw = window_size[i] // 2`` (floor), half the stage's own window (with
    the classification windows (8, 8, 14, 7): 7x7 sub-windows of the 14x14
    stage-2 map, 3x3 sub-windows of the 7x7 stage-3 map); the other
    reading, a window that halves from stage 2 to stage 3, is what the
    official windows (14, 7) already do. A window side that is not a
    multiple of ``aw`` is zero padded (right/bottom) to one; padding keys
    are masked (Swin lets them be attended). Every odd attention block of a
    stage (the 2nd, 4th, ... attention block, counted among the attention
    blocks) rolls the padded window by ``-(aw // 2)`` on both axes and
    masks pairs from different regions of the roll (Swin's mask), i.e.
    attends within windows shifted by ``aw // 2``; the roll is cyclic over
    the window, not over the whole map. No relative position bias (the
    paper lists it as a separate variant). ``aw = 1`` has no shift.
  - ``'relative'``: ``'global'`` plus a learned bias per head and relative
    offset, a table of ``(2 ws - 1) ** 2`` rows per head (CoAtNet/Swin),
    sized for the stage's window: positions are those of the ``ws x ws``
    window, so on a map smaller than the window (padded up to it) the real
    tokens keep their true offsets and the padding tokens, which the
    official attention also attends, carry their own. Memory grows as
    ``ws ** 4`` per head (the detection windows 112/56 give a
    ``(heads, 12544, 12544)`` bias: use classification-size windows).

* ``num_registers``: ``R`` learned tokens per hybrid stage
  (``levels.{i}.registers``, ``(1, R, C_i)``, shared by the stage's windows
  and blocks), appended to the end of every window sequence before the
  stage's first block, carried through every mixer, attention and MLP of
  the stage (as Mamba-R/ViT registers) and dropped after its last block:
  the feature maps keep their shapes. The mixer's scan runs left to right,
  so in the mixers the registers read the window's tokens but only the last
  token reads them (through the 'same' conv1d); the attention blocks read
  them everywhere (with ``'shifted_window'`` every token sees the registers
  besides its sub-window, and the registers see the whole window; with
  ``'relative'`` pairs involving a register get no bias). The paper's
  extra column of the map and its register head for classification are
  not built.

* ``downsample='attn_pool'``: :class:`MambaVisionAttnPool` (softmax-weighted
  2x2 pooling scored by ``Linear(C, 1)``, then ``Linear(C, 2C)``) in place
  of the strided conv between levels.

An official checkpoint loads into a model with these options: every other
weight strictly, the new parameters reported as newly initialised, and the
strided-conv weights that ``'attn_pool'`` replaces dropped with a warning
(:meth:`MambaVision.convert_checkpoint`).
"""
import logging
import math
import re
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_

from mmssm.ops import selective_scan
from mmssm.registry import register_model
from ..layers.backbone_utils import (check_image_input, parse_arch,
                                     parse_out_indices, stage_drop_path_rates)
from ..layers.norm import LayerNorm2d
from ..layers.ssm_init import a_log_init, dt_proj_init_
from .base import BaseBackbone

__all__ = [
    'MambaVision', 'MambaVisionMixer', 'MambaVisionAttention',
    'MambaVisionBlock', 'MambaVisionConvBlock', 'window_partition',
    'window_reverse', 'convert_mambavision', 'mambavision_checkpoint_layout',
    'MambaVisionAttnPool', 'shifted_window_mask', 'relative_position_index'
]


# ---------------------------------------------------------------------------
# Windows
# ---------------------------------------------------------------------------
def window_partition(x: torch.Tensor,
                     window_size: int) -> Tuple[torch.Tensor, tuple]:
    """Zero pad a ``(B, C, H, W)`` map on the right and bottom to multiples of
    ``window_size`` and cut it into windows.

    A side shorter than the window is padded up to the window. Windows are
    ordered row-major over the padded map, batch first, and their tokens
    row-major inside the window (the official layout).

    Returns:
        tuple: ``(B * nH * nW, ws * ws, C)`` windows and the padded size
        ``(Hp, Wp)``.
    """
    batch, channels, height, width = x.shape
    ws = window_size
    pad_b = (ws - height % ws) % ws
    pad_r = (ws - width % ws) % ws
    if pad_b or pad_r:
        x = F.pad(x, (0, pad_r, 0, pad_b))
    hp, wp = height + pad_b, width + pad_r
    x = x.view(batch, channels, hp // ws, ws, wp // ws, ws)
    windows = x.permute(0, 2, 4, 3, 5, 1).reshape(-1, ws * ws, channels)
    return windows, (hp, wp)


def window_reverse(windows: torch.Tensor, window_size: int,
                   padded_hw: Tuple[int, int],
                   hw: Tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, ws * ws, C)`` windows
    of a ``padded_hw`` map back to a ``(B, C, H, W)`` map cropped to ``hw``."""
    ws = window_size
    hp, wp = padded_hw
    channels = windows.shape[-1]
    batch = windows.shape[0] // ((hp // ws) * (wp // ws))
    x = windows.reshape(batch, hp // ws, wp // ws, ws, ws, channels)
    x = x.permute(0, 5, 1, 3, 2, 4).reshape(batch, channels, hp, wp)
    if (hp, wp) != tuple(hw):
        x = x[:, :, :hw[0], :hw[1]]
    return x.contiguous()


# ---------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------
class MambaVisionStem(BaseModule):
    """Stride-4 stem: ``conv_down`` = conv3x3 s2 (``in_dim``) -> BN -> ReLU
    -> conv3x3 s2 (``dim``) -> BN -> ReLU; convs without bias, BN eps 1e-4
    (official ``PatchEmbed``; its ``proj`` is an identity, not built)."""

    def __init__(self, in_channels: int, in_dim: int, dim: int) -> None:
        super().__init__()
        self.conv_down = nn.Sequential(
            nn.Conv2d(in_channels, in_dim, 3, 2, 1, bias=False),
            nn.BatchNorm2d(in_dim, eps=1e-4), nn.ReLU(),
            nn.Conv2d(in_dim, dim, 3, 2, 1, bias=False),
            nn.BatchNorm2d(dim, eps=1e-4), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_down(x)


class MambaVisionDownsample(BaseModule):
    """conv3x3 s2, no bias, ``C -> 2C`` (official ``Downsample``; key
    ``reduction.0.weight``)."""

    def __init__(self, dim: int, out_dim: Optional[int] = None) -> None:
        super().__init__()
        self.reduction = nn.Sequential(
            nn.Conv2d(dim, out_dim or 2 * dim, 3, 2, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduction(x)


class MambaVisionAttnPool(BaseModule):
    """Attention pooling between levels (``downsample='attn_pool'``,
    GMambaVision), in place of the strided conv: ``(B, C, H, W)`` ->
    ``(B, out_dim, ceil(H / 2), ceil(W / 2))``.

    Each position gets a score ``score(x)`` (``Linear(C, 1)``, no bias: a
    bias would be the same for the four candidates and cancel in the
    softmax); over every 2x2 neighbourhood (rows ``2i, 2i+1``, columns
    ``2j, 2j+1``) the scores go through a softmax, the four features are
    summed with these weights, and ``proj`` (``Linear(C, out_dim)``, no bias,
    like the conv it replaces) maps the result to ``out_dim`` (``2C``). An
    odd side is zero padded by one on the right/bottom (the conv path's
    output size ``ceil(n / 2)``); padded positions are left out of the
    softmax (a border neighbourhood pools its 1 or 2 real positions). With
    the init of :meth:`MambaVision.init_random_weights` (scores near 0) it
    starts close to 2x2 average pooling followed by a linear projection.
    """

    def __init__(self, dim: int, out_dim: Optional[int] = None) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1, bias=False)
        self.proj = nn.Linear(dim, out_dim or 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        ho, wo = -(-height // 2), -(-width // 2)
        pad_b, pad_r = 2 * ho - height, 2 * wo - width
        x = x.permute(0, 2, 3, 1)
        if pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        # (B, ho, wo, 4, C): the 2x2 neighbourhood, row-major
        x = x.reshape(batch, ho, 2, wo, 2, channels).permute(
            0, 1, 3, 2, 4, 5).reshape(batch, ho, wo, 4, channels)
        scores = self.score(x).squeeze(-1)  # (B, ho, wo, 4)
        if pad_b or pad_r:
            valid = x.new_ones(2 * ho, 2 * wo, dtype=torch.bool)
            valid[height:] = False
            valid[:, width:] = False
            valid = valid.reshape(ho, 2, wo, 2).permute(0, 2, 1,
                                                        3).reshape(ho, wo, 4)
            scores = scores.masked_fill(~valid, float('-inf'))
        weights = scores.softmax(-1)
        pooled = (weights.unsqueeze(-1) * x).sum(3)  # (B, ho, wo, C)
        return self.proj(pooled).permute(0, 3, 1, 2).contiguous()


class MambaVisionConvBlock(BaseModule):
    """Residual conv block of stages 0-1 (channels-first).

    ``x + drop_path(gamma * BN(conv(GELU_tanh(BN(conv(x))))))``; the convs are
    3x3 with bias, the BNs have eps 1e-5; ``gamma`` exists only when
    ``layer_scale`` is a number (never in the official presets).

    ``channel_prune_chains`` declares that :meth:`forward` applies
    ``conv1 -> norm1 -> act1 -> conv2`` one after the other, so that
    ``tools/model_converters/prune2dense.py`` may remove the channels a
    structured (early-bird) mask prunes from ``norm1``.
    """

    channel_prune_chains = (('conv1', 'norm1', 'act1', 'conv2'), )

    def __init__(self,
                 dim: int,
                 drop_path: float = 0.,
                 layer_scale: Optional[float] = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, 1, 1)
        self.norm1 = nn.BatchNorm2d(dim, eps=1e-5)
        self.act1 = nn.GELU(approximate='tanh')
        self.conv2 = nn.Conv2d(dim, dim, 3, 1, 1)
        self.norm2 = nn.BatchNorm2d(dim, eps=1e-5)
        if _is_number(layer_scale):
            self.gamma = nn.Parameter(layer_scale * torch.ones(dim))
        else:
            self.gamma = None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else \
            nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
        if self.gamma is not None:
            y = y * self.gamma.view(1, -1, 1, 1)
        return x + self.drop_path(y)


class MambaVisionMixer(BaseModule):
    """The MambaVision token mixer (official ``MambaVisionMixer``, with
    ``expand=1``) on ``(B, L, C)`` sequences.

    ``x, z = split(in_proj(h))`` (``C/2`` channels each); both go through
    their own depthwise conv1d (kernel ``d_conv``, non-causal 'same' padding,
    no bias, as the official ``bias=conv_bias // 2 == 0``) and SiLU; ``x``
    feeds a single-direction selective scan (``x_proj -> dt, B, C``;
    ``dt_proj`` weight on ``dt``, its bias as ``delta_bias`` with softplus;
    skip ``D``; no ``z`` gate); ``z`` skips the scan (the symmetric branch);
    ``out_proj(cat(y, z))``. ``dt_rank = ceil(C / 16)``.

    Args:
        dim (int): Channels ``C`` (even).
        d_state (int): State size. Defaults to 8.
        d_conv (int): Kernel of the depthwise convs. Defaults to 3.
        scan_impl (str, optional): ``impl`` of
            :func:`mmssm.ops.selective_scan`.
    """

    def __init__(self,
                 dim: int,
                 d_state: int = 8,
                 d_conv: int = 3,
                 scan_impl: Optional[str] = None) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f'MambaVisionMixer needs an even dim, got {dim}')
        self.dim = dim
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = dim  # expand = 1
        self.dt_rank = math.ceil(dim / 16)
        self.scan_impl = scan_impl
        half = self.d_inner // 2
        self.in_proj = nn.Linear(dim, self.d_inner, bias=False)
        self.x_proj = nn.Linear(
            half, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, half, bias=True)
        dt_proj_init_(self.dt_proj, self.dt_rank)
        self.A_log = nn.Parameter(a_log_init(half, d_state))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(half))
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(self.d_inner, dim, bias=False)
        self.conv1d_x = nn.Conv1d(
            half, half, kernel_size=d_conv, groups=half, bias=False)
        self.conv1d_z = nn.Conv1d(
            half, half, kernel_size=d_conv, groups=half, bias=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(B, L, C)`` -> ``(B, L, C)``."""
        half = self.d_inner // 2
        xz = self.in_proj(hidden).transpose(1, 2)  # (B, C, L)
        x, z = xz.chunk(2, dim=1)
        x = F.silu(
            F.conv1d(x, self.conv1d_x.weight, None, padding='same',
                     groups=half))
        z = F.silu(
            F.conv1d(z, self.conv1d_z.weight, None, padding='same',
                     groups=half))
        x_dbl = self.x_proj(x.transpose(1, 2))  # (B, L, R + 2N)
        dt, b, c = torch.split(
            x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight).transpose(1, 2)
        y = selective_scan(
            x,
            delta,
            -torch.exp(self.A_log.float()),
            b.transpose(1, 2).contiguous(),
            c.transpose(1, 2).contiguous(),
            self.D.float(),
            z=None,
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
            impl=self.scan_impl)
        y = torch.cat([y, z], dim=1).transpose(1, 2)
        return self.out_proj(y)


def shifted_window_mask(window_size: int, num_registers: int = 0,
                        shift: bool = False,
                        device=None) -> torch.Tensor:
    """Which keys each query may see in the shifted-window attention of one
    ``window_size x window_size`` window (``attn_type='shifted_window'``).

    The window is cut into sub-windows of ``aw = window_size // 2`` (zero
    padded on the right and bottom to ``P = ceil(window_size / aw) * aw``);
    with ``shift`` the padded canvas is rolled by ``-s = -(aw // 2)`` on both
    axes first (Swin's cyclic shift). A query sees the keys of its sub-window
    that lie in its Swin region of the rolled canvas (slices ``[0, P - aw)``,
    ``[P - aw, P - s)``, ``[P - s, P)`` per axis), never a padding token
    (itself excepted, so that a padding query's row is not empty; those rows
    are cropped), and every register.

    Returns:
        Tensor: bool ``(n * n, aw * aw, aw * aw + num_registers)`` with
        ``n = P // aw``, sub-windows row-major over the rolled canvas.
    """
    aw = window_size // 2
    s = aw // 2 if shift else 0
    n = -(-window_size // aw)
    p = n * aw
    pos = torch.arange(p, device=device)
    region = torch.zeros(p, dtype=torch.long, device=device)
    if s:
        region[p - aw:p - s] = 1
        region[p - s:] = 2
    # the rolled position q holds the original position (q + s) mod P
    valid = (pos + s) % p < window_size
    rid = (region[:, None] * 3 + region[None, :]).view(n, aw, n, aw)
    val = (valid[:, None] & valid[None, :]).view(n, aw, n, aw)
    rid = rid.permute(0, 2, 1, 3).reshape(n * n, aw * aw)
    val = val.permute(0, 2, 1, 3).reshape(n * n, aw * aw)
    allowed = (rid[:, :, None] == rid[:, None, :]) & val[:, None, :]
    allowed |= torch.eye(aw * aw, dtype=torch.bool, device=device)
    if num_registers:
        allowed = torch.cat([
            allowed,
            allowed.new_ones(n * n, aw * aw, num_registers)
        ], -1)
    return allowed


def relative_position_index(window_size: int, device=None) -> torch.Tensor:
    """``(ws * ws, ws * ws)`` index into a ``((2 ws - 1) ** 2, heads)`` table:
    for tokens ``i``, ``j`` (row-major in the window) at ``(y, x)``,
    ``(y_i - y_j + ws - 1) * (2 ws - 1) + (x_i - x_j + ws - 1)`` (Swin's
    layout)."""
    ws = window_size
    ys, xs = torch.meshgrid(
        torch.arange(ws, device=device),
        torch.arange(ws, device=device),
        indexing='ij')
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    dy = ys[:, None] - ys[None, :] + ws - 1
    dx = xs[:, None] - xs[None, :] + ws - 1
    return dy * (2 * ws - 1) + dx


class MambaVisionAttention(BaseModule):
    """Multi-head self-attention of the hybrid stages (``qkv`` with bias,
    ``proj``), computed with :func:`torch.nn.functional.
    scaled_dot_product_attention` (scale ``head_dim ** -0.5``), on the
    ``(B * nW, ws * ws [+ R], C)`` sequences of one stage's windows.

    ``attn_type`` (GMambaVision, see :class:`MambaVision`):

    * ``'global'`` (official): every token of the window sequence attends to
      every other (padding tokens of the stage and registers included);
    * ``'shifted_window'``: Swin-style attention inside sub-windows of
      ``window_size // 2`` of the window (:func:`shifted_window_mask`; with
      ``shift`` the sub-windows are shifted by ``(window_size // 2) // 2``);
      registers see the whole window and are seen by every token;
    * ``'relative'``: ``'global'`` plus a learned bias per head and relative
      offset (``relative_position_bias_table``, ``((2 ws - 1) ** 2,
      num_heads)``, gathered by :func:`relative_position_index` into a
      ``(num_heads, ws * ws, ws * ws)`` bias added to the logits); pairs
      involving a register get no bias.

    Args:
        window_size (int, optional): Side ``ws`` of the stage's windows;
            needed by ``'shifted_window'`` and ``'relative'``.
        shift (bool): Shift the sub-windows (``'shifted_window'`` only).
        num_registers (int): Register tokens at the end of every sequence.
    """

    ATTN_TYPES = ('global', 'shifted_window', 'relative')

    def __init__(self,
                 dim: int,
                 num_heads: int,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 attn_type: str = 'global',
                 window_size: Optional[int] = None,
                 shift: bool = False,
                 num_registers: int = 0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim {dim} is not divisible by num_heads '
                             f'{num_heads}')
        if attn_type not in self.ATTN_TYPES:
            raise ValueError(f'MambaVision attn_type must be one of '
                             f'{self.ATTN_TYPES}, got {attn_type!r}')
        if attn_type != 'global' and not (_is_number(window_size)
                                          and window_size >= 1):
            raise ValueError(f"attn_type={attn_type!r} needs the stage's "
                             f'window_size (>= 1), got {window_size!r}')
        if attn_type == 'shifted_window' and window_size < 2:
            raise ValueError(
                "attn_type='shifted_window' halves the window: window_size "
                f'must be >= 2, got {window_size}')
        if shift and attn_type != 'shifted_window':
            raise ValueError("shift=True needs attn_type='shifted_window'")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attn_drop = attn_drop
        self.attn_type = attn_type
        self.window_size = window_size
        self.num_registers = num_registers
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        if attn_type == 'shifted_window':
            self.sub_window = window_size // 2
            self.shift_size = self.sub_window // 2 if shift else 0
            self.register_buffer(
                'attn_mask',
                shifted_window_mask(window_size, num_registers, shift),
                persistent=False)
        elif attn_type == 'relative':
            self.relative_position_bias_table = nn.Parameter(
                torch.zeros((2 * window_size - 1)**2, num_heads))
            trunc_normal_(self.relative_position_bias_table, std=.02)
            self.register_buffer(
                'relative_position_index',
                relative_position_index(window_size),
                persistent=False)

    def _check_length(self, length: int) -> None:
        want = self.window_size**2 + self.num_registers
        if length != want:
            raise ValueError(
                f"MambaVisionAttention (attn_type={self.attn_type!r}) runs "
                f'on windows of {self.window_size}x{self.window_size} tokens '
                f'plus {self.num_registers} registers ({want}), got a '
                f'sequence of {length}')

    def relative_bias(self) -> torch.Tensor:
        """``(num_heads, L, L)`` bias of ``'relative'`` (zero in the rows and
        columns of the registers)."""
        n = self.window_size**2
        bias = self.relative_position_bias_table[
            self.relative_position_index.reshape(-1)].reshape(n, n, -1)
        bias = bias.permute(2, 0, 1)
        if self.num_registers:
            bias = F.pad(bias, (0, self.num_registers, 0, self.num_registers))
        return bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        drop = self.attn_drop if self.training else 0.
        qkv = self.qkv(x)
        if self.attn_type == 'shifted_window':
            self._check_length(length)
            return self.proj_drop(self.proj(self._shifted(qkv)))
        qkv = qkv.reshape(batch, length, 3, self.num_heads,
                          self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        mask = None
        if self.attn_type == 'relative':
            self._check_length(length)
            mask = self.relative_bias().unsqueeze(0).to(q.dtype)
        x = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=drop)
        x = x.transpose(1, 2).reshape(batch, length, dim)
        return self.proj_drop(self.proj(x))

    def _shifted(self, qkv: torch.Tensor) -> torch.Tensor:
        """Shifted-window attention on ``(B', ws * ws + R, 3C)`` projections;
        returns ``(B', ws * ws + R, C)`` before ``proj``."""
        batch, length, _ = qkv.shape
        ws, aw, s = self.window_size, self.sub_window, self.shift_size
        heads, hd = self.num_heads, self.head_dim
        dim = heads * hd
        tokens = ws * ws
        n = -(-ws // aw)
        p = n * aw
        drop = self.attn_drop if self.training else 0.
        grid = qkv[:, :tokens].reshape(batch, ws, ws, 3 * dim)
        if p != ws:  # padding keys are masked (shifted_window_mask)
            grid = F.pad(grid, (0, 0, 0, p - ws, 0, p - ws))
        if s:
            grid = torch.roll(grid, (-s, -s), (1, 2))
        # (3, B' * n * n, heads, aw * aw, hd), sub-windows row-major
        win = grid.reshape(batch, n, aw, n, aw, 3, heads, hd).permute(
            5, 0, 1, 3, 6, 2, 4, 7).reshape(3, batch * n * n, heads,
                                             aw * aw, hd)
        q, k, v = win.unbind(0)
        mask = self.attn_mask
        regs = None
        if self.num_registers:
            regs = qkv[:, tokens:].reshape(batch, self.num_registers, 3,
                                           heads, hd).permute(2, 0, 3, 1, 4)
            # every sub-window also sees the registers' keys and values
            rk, rv = (t.unsqueeze(1).expand(-1, n * n, -1, -1, -1).reshape(
                batch * n * n, heads, self.num_registers, hd)
                      for t in (regs[1], regs[2]))
            k = torch.cat([k, rk], 2)
            v = torch.cat([v, rv], 2)
        mask = mask.unsqueeze(0).expand(batch, -1, -1, -1).reshape(
            batch * n * n, 1, aw * aw, mask.shape[-1])
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=drop)
        out = out.reshape(batch, n, n, heads, aw, aw, hd).permute(
            0, 1, 4, 2, 5, 3, 6).reshape(batch, p, p, dim)
        if s:
            out = torch.roll(out, (s, s), (1, 2))
        out = out[:, :ws, :ws].reshape(batch, tokens, dim)
        if regs is not None:
            # the registers attend to the whole window (and each other)
            full = qkv.reshape(batch, length, 3, heads,
                               hd).permute(2, 0, 3, 1, 4)
            reg_out = F.scaled_dot_product_attention(
                regs[0], full[1], full[2], dropout_p=drop)
            out = torch.cat(
                [out, reg_out.transpose(1, 2).reshape(batch, -1, dim)], 1)
        return out


class MambaVisionMlp(BaseModule):
    """``fc2(drop(GELU(fc1(x))))`` with dropout after both (timm ``Mlp``)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class MambaVisionBlock(BaseModule):
    """Block of the hybrid stages, on ``(B, L, C)`` window sequences.

    ``x = x + drop_path(gamma_1 * mixer(LN(x)))``;
    ``x = x + drop_path(gamma_2 * mlp(LN(x)))``; the mixer is
    :class:`MambaVisionMixer` or, with ``attention=True``,
    :class:`MambaVisionAttention` (built with the keyword arguments of
    ``attn_cfg``: ``attn_type``, ``window_size``, ``shift``,
    ``num_registers``); ``gamma_1``/``gamma_2`` exist only when
    ``layer_scale`` is a number. LayerNorm eps 1e-5.
    """

    def __init__(self,
                 dim: int,
                 num_heads: int,
                 attention: bool,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 drop: float = 0.,
                 attn_drop: float = 0.,
                 drop_path: float = 0.,
                 layer_scale: Optional[float] = None,
                 scan_impl: Optional[str] = None,
                 attn_cfg: Optional[Dict] = None) -> None:
        super().__init__()
        self.attention = attention
        self.norm1 = nn.LayerNorm(dim)
        if attention:
            self.mixer = MambaVisionAttention(
                dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop,
                proj_drop=drop, **(attn_cfg or {}))
        else:
            self.mixer = MambaVisionMixer(dim, scan_impl=scan_impl)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else \
            nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MambaVisionMlp(dim, int(dim * mlp_ratio), drop)
        if _is_number(layer_scale):
            self.gamma_1 = nn.Parameter(layer_scale * torch.ones(dim))
            self.gamma_2 = nn.Parameter(layer_scale * torch.ones(dim))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mixer(self.norm1(x))
        if self.gamma_1 is not None:
            y = self.gamma_1 * y
        x = x + self.drop_path(y)
        y = self.mlp(self.norm2(x))
        if self.gamma_2 is not None:
            y = self.gamma_2 * y
        return x + self.drop_path(y)


class MambaVisionStage(BaseModule):
    """One level: ``blocks`` (conv blocks, or hybrid blocks run on windows of
    ``window_size``) and the optional ``downsample`` that feeds the next
    stage. The backbone runs the blocks (:meth:`MambaVision.forward`).

    With ``num_registers`` (hybrid stages, GMambaVision) the stage owns
    ``registers`` (``(1, num_registers, dim)``, shared by every window and
    block of the stage): appended to the end of every window sequence
    before the first block and dropped after the last one."""

    def __init__(self, blocks: List[nn.Module], hybrid: bool,
                 window_size: int,
                 downsample: Optional[nn.Module],
                 num_registers: int = 0,
                 dim: Optional[int] = None) -> None:
        super().__init__()
        self.hybrid = hybrid
        self.window_size = window_size
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample
        self.num_registers = num_registers
        if num_registers:
            if not hybrid or dim is None:
                raise ValueError('registers exist in the hybrid stages only '
                                 '(and need the stage dim)')
            self.registers = nn.Parameter(torch.zeros(1, num_registers, dim))
            trunc_normal_(self.registers, std=.02)
        else:
            self.registers = None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ---------------------------------------------------------------------------
# The backbone
# ---------------------------------------------------------------------------
@register_model()
class MambaVision(BaseBackbone):
    """MambaVision backbone for classification, detection and segmentation.

    A PyTorch implementation of `MambaVision: A Hybrid Mamba-Transformer
    Vision Backbone <https://arxiv.org/abs/2407.08083>`_ matching the official
    code (see the module docstring for the structure and the departures).
    Parameters of the classifier (this backbone with
    ``out_type='avgpool'`` plus a 1000-class linear head): T 31.79 M,
    T2 35.10 M, S 50.14 M, B 97.69 M, L 227.96 M, L2 241.55 M (published
    31.8, 35.1, 50.1, 97.7, 227.9, 241.5).

    Any input size works: the stem and the downsampling convs map a side of
    ``n`` to ``ceil(n / 2)``, so stage ``i`` has
    ``ceil(H / 2 ** (i + 2)) x ceil(W / 2 ** (i + 2))`` positions (e.g.
    200x264 -> 50x66, 25x33, 13x17, 7x9); the hybrid stages pad their maps
    to the windows and crop them back.

    Args:
        arch (str | dict): ``'tiny'``, ``'tiny2'``, ``'small'``, ``'base'``,
            ``'large'``, ``'large2'`` (also ``'t'``, ``'t2'``, ``'s'``,
            ``'b'``, ``'l'``, ``'l2'``) or a dict with ``dim``, ``in_dim``,
            ``depths``, ``num_heads`` and optionally ``window_size``
            (default (8, 8, 14, 7)), ``drop_path_rate`` (default 0.2) and
            ``layer_scale`` (default None). Defaults to 'tiny'.
        in_channels (int): Image channels. Defaults to 3.
        window_size (Sequence[int], optional): Window of every stage
            (stages 0-1 ignore theirs); None takes the arch's (8, 8, 14, 7),
            the classification windows; the official detection configs use
            (8, 8, 112, 56).
        out_indices (int | Sequence[int]): Stages returned.
            Defaults to (0, 1, 2, 3).
        out_type (str): ``'featmap'`` (maps before the downsampling, each
            through ``outnorm{i}``) or ``'avgpool'`` (classification: the
            last stage through the official final BatchNorm ``norm`` and
            global average pooling, a ``(B, C)`` vector; ``out_indices`` must
            then be the last stage). Defaults to 'featmap'.
        out_norm (str, optional): Output norm of ``'featmap'``: ``'ln2d'``
            (LayerNorm over channels, eps 1e-5, the official detection
            default), ``'bn'`` or None (no output norm). Defaults to 'ln2d'.
        drop_path_rate (float, optional): Stochastic depth of the last block
            (linear from 0); None takes the arch's (0.2 for T/T2/S, 0.3 for
            B/L/L2, the official defaults).
        drop_rate (float): Dropout after the projections and MLP layers.
            Defaults to 0.
        attn_drop_rate (float): Attention dropout. Defaults to 0.
        mlp_ratio (float): MLP expansion of the hybrid blocks. Defaults to 4.
        qkv_bias (bool): Bias of ``qkv``. Defaults to True.
        layer_scale_conv (float, optional): Layer scale of the conv blocks
            (None in every official model). Defaults to None.
        frozen_stages (int): The meaning shared by every mmssm backbone:
            ``-1`` nothing, ``0`` the stem, ``k`` the stem and stages
            ``0 .. k-1`` with their output norms and the downsampling that
            ends each of them (as mmdet's Swin, whose stages also end with
            their downsampling). Defaults to -1.
        norm_eval (bool): Keep the BatchNorms (stem, conv blocks, ``norm``)
            in eval mode while training. Defaults to False.
        with_cp (bool): Gradient checkpointing of every block (training
            mode). Defaults to False.
        scan_impl (str, optional): ``impl`` of :func:`mmssm.ops.
            selective_scan`. Defaults to None.
        attn_type (str): GMambaVision attention of the attention blocks of
            stages 2-3: ``'global'`` (official), ``'shifted_window'``
            (Swin windows of ``window_size[i] // 2`` inside every window,
            shifted by half of that on every odd attention block; needs
            windows >= 2) or ``'relative'`` (a learned relative position
            bias per head over the window; new keys
            ``levels.{i}.blocks.{j}.mixer.relative_position_bias_table``).
            See the module docstring. Defaults to 'global'.
        num_registers (int): GMambaVision register tokens per hybrid stage
            (``levels.{2,3}.registers``), appended to every window sequence
            and dropped from the outputs; 0 for none. Defaults to 0.
        downsample (str): ``'conv'`` (official strided conv3x3) or
            ``'attn_pool'`` (:class:`MambaVisionAttnPool`, keys
            ``levels.{i}.downsample.score/proj.weight``). Defaults to 'conv'.
        init_cfg (dict | list[dict], optional): None gives the official
            random init (:meth:`init_random_weights`);
            ``dict(type='Pretrained', checkpoint=...)`` loads an official
            ``.pth.tar``, a Hugging Face ``model.safetensors`` or an mmssm
            file strictly (:meth:`convert_checkpoint`); with the GMambaVision
            options on, an official file loads every other weight and the
            options' parameters keep their initialisation (logged).
    """

    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'], {
            'dim': 80, 'in_dim': 32, 'depths': [1, 3, 8, 4],
            'num_heads': [2, 4, 8, 16], 'drop_path_rate': 0.2,
            'layer_scale': None}),
        **dict.fromkeys(['t2', 'tiny2'], {
            'dim': 80, 'in_dim': 32, 'depths': [1, 3, 11, 4],
            'num_heads': [2, 4, 8, 16], 'drop_path_rate': 0.2,
            'layer_scale': None}),
        **dict.fromkeys(['s', 'small'], {
            'dim': 96, 'in_dim': 64, 'depths': [3, 3, 7, 5],
            'num_heads': [2, 4, 8, 16], 'drop_path_rate': 0.2,
            'layer_scale': None}),
        **dict.fromkeys(['b', 'base'], {
            'dim': 128, 'in_dim': 64, 'depths': [3, 3, 10, 5],
            'num_heads': [2, 4, 8, 16], 'drop_path_rate': 0.3,
            'layer_scale': 1e-5}),
        **dict.fromkeys(['l', 'large'], {
            'dim': 196, 'in_dim': 64, 'depths': [3, 3, 10, 5],
            'num_heads': [4, 8, 16, 32], 'drop_path_rate': 0.3,
            'layer_scale': 1e-5}),
        **dict.fromkeys(['l2', 'large2'], {
            'dim': 196, 'in_dim': 64, 'depths': [3, 3, 12, 5],
            'num_heads': [4, 8, 16, 32], 'drop_path_rate': 0.3,
            'layer_scale': 1e-5}),
    }  # yapf: disable
    _arch_keys = ('dim', 'in_dim', 'depths', 'num_heads')
    #: The official classification windows.
    default_window_size = (8, 8, 14, 7)

    def __init__(self,
                 arch: Union[str, Dict] = 'tiny',
                 in_channels: int = 3,
                 window_size: Optional[Sequence[int]] = None,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 out_type: str = 'featmap',
                 out_norm: Optional[str] = 'ln2d',
                 drop_path_rate: Optional[float] = None,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 layer_scale_conv: Optional[float] = None,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 scan_impl: Optional[str] = None,
                 attn_type: str = 'global',
                 num_registers: int = 0,
                 downsample: str = 'conv',
                 init_cfg: Optional[Union[Dict, List[Dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        arch = parse_arch(arch, self.arch_zoo, self._arch_keys, 'MambaVision')
        self.dim = int(arch['dim'])
        self.in_dim = int(arch['in_dim'])
        self.depths = list(arch['depths'])
        self.num_heads = list(arch['num_heads'])
        self.num_stages = len(self.depths)
        if self.num_stages != 4 or len(self.num_heads) != 4:
            raise ValueError('MambaVision has 4 stages: depths and num_heads '
                             f'need 4 entries, got {self.depths}, '
                             f'{self.num_heads}')
        if any(d < 1 for d in self.depths):
            raise ValueError(f'depths must be >= 1, got {self.depths}')
        if window_size is None:
            window_size = arch.get('window_size', self.default_window_size)
        self.window_size = [int(w) for w in window_size]
        if len(self.window_size) != 4 or min(self.window_size) < 1:
            raise ValueError('window_size needs 4 positive entries, got '
                             f'{window_size}')
        if drop_path_rate is None:
            drop_path_rate = arch.get('drop_path_rate', 0.2)
        self.drop_path_rate = drop_path_rate
        self.layer_scale = arch.get('layer_scale', None)
        self.dims = [self.dim * 2**i for i in range(self.num_stages)]
        self.in_channels = in_channels
        self.out_indices = parse_out_indices(out_indices, self.num_stages)
        if out_type not in ('featmap', 'avgpool'):
            raise ValueError("out_type must be 'featmap' or 'avgpool', got "
                             f'{out_type!r}')
        if out_type == 'avgpool' and \
                self.out_indices != (self.num_stages - 1, ):
            raise ValueError("out_type='avgpool' pools the last stage: "
                             f'out_indices must be ({self.num_stages - 1}, ),'
                             f' got {self.out_indices}')
        if out_norm not in ('ln2d', 'bn', None):
            raise ValueError("out_norm must be 'ln2d', 'bn' or None, got "
                             f'{out_norm!r}')
        self.out_type = out_type
        self._check_gmv_options(attn_type, num_registers, downsample)
        self.attn_type = attn_type
        self.num_registers = num_registers
        self.downsample_type = downsample
        self._init_training_options(self.num_stages, frozen_stages,
                                    norm_eval, with_cp)

        self.patch_embed = MambaVisionStem(in_channels, self.in_dim,
                                           self.dim)
        with torch.device('cpu'):  # plain floats, also when built on meta
            dpr = stage_drop_path_rates(drop_path_rate, self.depths)
        self.levels = nn.ModuleList()
        for i, (depth, dim) in enumerate(zip(self.depths, self.dims)):
            hybrid = i >= 2
            if hybrid:
                first_attention = (depth + 1) // 2  # ceil(depth / 2) mixers
                blocks = [
                    MambaVisionBlock(
                        dim,
                        self.num_heads[i],
                        attention=j >= first_attention,
                        mlp_ratio=mlp_ratio,
                        qkv_bias=qkv_bias,
                        drop=drop_rate,
                        attn_drop=attn_drop_rate,
                        drop_path=dpr[i][j],
                        layer_scale=self.layer_scale,
                        scan_impl=scan_impl,
                        attn_cfg=self._attn_cfg(i, j - first_attention))
                    for j in range(depth)
                ]
            else:
                blocks = [
                    MambaVisionConvBlock(
                        dim, drop_path=dpr[i][j],
                        layer_scale=layer_scale_conv) for j in range(depth)
                ]
            if i == self.num_stages - 1:
                down = None
            elif self.downsample_type == 'attn_pool':
                down = MambaVisionAttnPool(dim)
            else:
                down = MambaVisionDownsample(dim)
            self.levels.append(
                MambaVisionStage(
                    blocks, hybrid, self.window_size[i], down,
                    num_registers=num_registers if hybrid else 0, dim=dim))

        if out_type == 'avgpool':
            self.norm = nn.BatchNorm2d(self.dims[-1])
        elif out_norm is not None:
            for i in self.out_indices:
                self.add_module(
                    f'outnorm{i}',
                    LayerNorm2d(self.dims[i], eps=1e-5)
                    if out_norm == 'ln2d' else nn.BatchNorm2d(self.dims[i]))
        self._finish_init()

    #: Choices of the GMambaVision options (:meth:`_check_gmv_options`).
    ATTN_TYPES = MambaVisionAttention.ATTN_TYPES
    DOWNSAMPLES = ('conv', 'attn_pool')

    def _check_gmv_options(self, attn_type, num_registers,
                           downsample) -> None:
        if attn_type not in self.ATTN_TYPES:
            raise ValueError(f'MambaVision attn_type must be one of '
                             f'{self.ATTN_TYPES}, got {attn_type!r}')
        if not isinstance(num_registers, int) or isinstance(
                num_registers, bool) or num_registers < 0:
            raise ValueError('MambaVision num_registers must be an int >= 0 '
                             f'(0: no registers), got {num_registers!r}')
        if downsample not in self.DOWNSAMPLES:
            raise ValueError(f'MambaVision downsample must be one of '
                             f'{self.DOWNSAMPLES}, got {downsample!r}')
        if attn_type == 'shifted_window':
            small = [(i, self.window_size[i]) for i in (2, 3)
                     if self.window_size[i] < 2]
            if small:
                raise ValueError(
                    "MambaVision attn_type='shifted_window' halves the "
                    'window of stages 2-3: their window_size must be >= 2, '
                    f'got {self.window_size}')

    def _attn_cfg(self, stage: int, attn_index: int) -> Optional[Dict]:
        """Keyword arguments of the attention of block ``attn_index``
        (0-based among the stage's attention blocks; negative for a mixer)
        of hybrid stage ``stage``; None for the official attention."""
        if attn_index < 0 or (self.attn_type == 'global'
                              and not self.num_registers):
            return None
        cfg = dict(attn_type=self.attn_type,
                   num_registers=self.num_registers,
                   window_size=self.window_size[stage])
        if self.attn_type == 'shifted_window':
            cfg['shift'] = attn_index % 2 == 1
        return cfg

    # ------------------------------------------------------------------
    # forward
    # ------------------------------------------------------------------
    def _run_stage(self, stage: MambaVisionStage,
                   x: torch.Tensor) -> torch.Tensor:
        """The blocks of ``stage`` on a ``(B, C, H, W)`` map (windows for the
        hybrid stages); returns the map before the downsampling."""
        if not stage.hybrid:
            for block in stage.blocks:
                x = self.checkpointed(block, x)
            return x
        hw = tuple(x.shape[-2:])
        x, padded_hw = window_partition(x, stage.window_size)
        if stage.registers is not None:
            # the same learned registers at the end of every window
            x = torch.cat([
                x,
                stage.registers.to(x.dtype).expand(x.shape[0], -1, -1)
            ], 1)
        for block in stage.blocks:
            x = self.checkpointed(block, x)
        if stage.registers is not None:
            x = x[:, :stage.window_size**2]
        return window_reverse(x, stage.window_size, padded_hw, hw)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Forward.

        Args:
            x (Tensor): ``(B, in_channels, H, W)`` images.

        Returns:
            tuple[Tensor]: For each stage of ``out_indices`` its
            ``(B, C_i, ceil(H / 2^(i+2)), ceil(W / 2^(i+2)))`` map (through
            ``outnorm{i}`` when built), or with ``out_type='avgpool'`` the
            pooled ``(B, C)`` feature of the last stage.
        """
        check_image_input(x, self.in_channels, 'MambaVision')
        x = self.patch_embed(x)
        outs = []
        last = max(self.out_indices)  # later stages would not be used
        for i, stage in enumerate(self.levels[:last + 1]):
            feat = self._run_stage(stage, x)
            if i in self.out_indices:
                if self.out_type == 'avgpool':
                    outs.append(self.norm(feat).mean(dim=(2, 3)))
                else:
                    norm = getattr(self, f'outnorm{i}', None)
                    outs.append(norm(feat) if norm is not None else feat)
            if i < last:
                x = stage.downsample(feat)
        return tuple(outs)

    # ------------------------------------------------------------------
    # training options
    # ------------------------------------------------------------------
    def stem_modules(self) -> List[nn.Module]:
        return [self.patch_embed]

    def stage_modules(self, index: int) -> List[nn.Module]:
        modules = [self.levels[index]]
        norm = getattr(self, f'outnorm{index}', None)
        if norm is not None:
            modules.append(norm)
        if self.out_type == 'avgpool' and index == self.num_stages - 1:
            modules.append(self.norm)
        return modules

    # ------------------------------------------------------------------
    # initialisation and checkpoints
    # ------------------------------------------------------------------
    def init_random_weights(self) -> None:
        """The official init (``MambaVision._init_weights`` applied to every
        module): linear layers truncated normal (std 0.02) with zero bias,
        LayerNorm/BatchNorm weight 1 and bias 0; convolutions keep PyTorch's
        default init, ``A_log`` and ``D`` their S4D-real/ones values. As in
        the official code this also reaches the mixers' ``dt_proj`` (weight
        truncated normal, bias 0: the Mamba ``dt`` init of the constructor
        does not survive), which is how the released models were trained.
        The GMambaVision parameters: attention pooling's linear layers as
        every linear layer, registers and relative position bias tables
        truncated normal with std 0.02 (as ViT registers and Swin)."""
        if self.init_cfg is not None:
            BaseModule.init_weights(self)
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.LayerNorm, nn.modules.batchnorm._NormBase)):
                if m.weight is not None:
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
        # GMambaVision options: truncated normal (std 0.02) registers (as
        # ViT/Mamba-R registers) and relative position bias tables (Swin)
        for name, param in self.named_parameters():
            if name.endswith(('.registers', '.relative_position_bias_table')):
                trunc_normal_(param, std=.02)
        self._is_init = True

    def convert_checkpoint(self, state_dict: Dict[str, torch.Tensor],
                           prefix: str = '') -> List[str]:
        """Accept the official layouts under ``prefix`` (also the
        ``load_state_dict`` pre-hook).

        mmssm keys are the official keys, plus ``outnorm{i}`` (as the
        official detection wrapper). The Hugging Face layout (every key
        under ``model.``) is unprefixed; the classifier's ``head.*`` is
        dropped, and so is the final BatchNorm ``norm.*`` unless
        ``out_type='avgpool'`` (both logged). Keys of an official or Hugging
        Face file that no MambaVision has raise a ``ValueError`` naming them
        (:func:`convert_mambavision`); a missing key stops the strict load.

        With the GMambaVision options on, a checkpoint without their
        parameters (an official one) lacks them by design, and the
        strided-conv weights that ``downsample='attn_pool'`` replaces are
        dropped with a warning (:meth:`_fit_gmv_options`).

        Returns:
            list[str]: For an official or Hugging Face classifier file (one
            with ``norm.*`` or ``head.*``), the ``outnorm{i}`` keys: the
            classifier has no output norms, they keep their initialisation;
            plus the GMambaVision parameters the checkpoint lacks by design.
        """
        keys = [k for k in state_dict if k.startswith(prefix)]
        local = OrderedDict((k[len(prefix):], state_dict[k]) for k in keys)
        layout = mambavision_checkpoint_layout(local)
        absent = []
        if layout != 'mmssm':
            converted = convert_mambavision(local)
            for key in keys:
                del state_dict[key]
            for key, value in converted.items():
                state_dict[prefix + key] = value
            absent = [
                k for k in self.state_dict() if k.startswith('outnorm')
            ]
            if layout == 'hf':
                print_log(
                    f'MambaVision: converted {len(keys)} keys of the Hugging '
                    'Face layout (model.*)',
                    logger='current',
                    level=logging.INFO)
        unused = ('head.', )
        if self.out_type != 'avgpool':
            unused += ('norm.', )
        self._drop_checkpoint_keys(state_dict, prefix, unused,
                                   'classifier (head, final norm)')
        return absent + self._fit_gmv_options(state_dict, prefix)

    def _fit_gmv_options(self, state_dict: Dict[str, torch.Tensor],
                         prefix: str) -> List[str]:
        """The GMambaVision part of :meth:`convert_checkpoint` (the rules of
        Vim's seed-002 options; idempotent: a checkpoint saved with the same
        options passes unchanged).

        * ``num_registers``: a checkpoint with ``levels.*`` keys and no
          ``levels.{i}.registers`` at all (an official one) lacks every
          ``levels.{i}.registers`` of this model by design;
        * ``attn_type='relative'``: likewise for the
          ``relative_position_bias_table`` of every attention block;
        * ``downsample='attn_pool'``: when the checkpoint has the official
          ``levels.{i}.downsample.reduction.0.weight`` and no attention
          pooling key, those conv weights are deleted (a warning names
          them) and every ``levels.{i}.downsample.*`` of this model is
          absent by design.

        A checkpoint with only some of an option's keys is not the official
        layout: the keys it lacks are missing (strict loading stops).
        """
        local = [k[len(prefix):] for k in state_dict if k.startswith(prefix)]
        if not any(k.startswith('levels.') for k in local):
            return []
        own = list(self.state_dict(keep_vars=True))
        absent = []
        for suffix, on in (('.registers', self.num_registers > 0),
                           ('.relative_position_bias_table',
                            self.attn_type == 'relative')):
            if on and not any(k.endswith(suffix) for k in local):
                absent += [k for k in own if k.endswith(suffix)]
        if self.downsample_type == 'attn_pool':
            conv = [
                k for k in local if re.match(
                    r'^levels\.\d+\.downsample\.reduction\.', k)
            ]
            pool = [
                k for k in local if re.match(
                    r'^levels\.\d+\.downsample\.(score|proj)\.', k)
            ]
            if conv and not pool:
                for key in conv:
                    del state_dict[prefix + key]
                print_log(
                    "MambaVision (downsample='attn_pool'): dropped the "
                    f'{len(conv)} weights of the strided-conv downsampling '
                    f'that the attention pooling replaces: {sorted(conv)}',
                    logger='current',
                    level=logging.WARNING)
                absent += [
                    k for k in own
                    if re.match(r'^levels\.\d+\.downsample\.', k)
                ]
        return absent


# ---------------------------------------------------------------------------
# Checkpoint conversion
# ---------------------------------------------------------------------------
_BN = r'(weight|bias|running_mean|running_var|num_batches_tracked)'
_OFFICIAL_KEY = re.compile(
    r'^(patch_embed\.conv_down\.[0134]\.' + _BN +
    r'|levels\.\d+\.blocks\.\d+\.(conv[12]\.(weight|bias)|norm[12]\.' + _BN +
    r'|gamma|gamma_[12]|mlp\.fc[12]\.(weight|bias)'
    r'|mixer\.(in_proj\.weight|x_proj\.weight|dt_proj\.(weight|bias)|A_log'
    r'|D|out_proj\.weight|conv1d_[xz]\.weight|qkv\.(weight|bias)'
    r'|proj\.(weight|bias)|relative_position_bias_table))'
    r'|levels\.\d+\.registers'
    r'|levels\.\d+\.downsample\.(reduction\.0|score|proj)\.weight'
    r'|norm\.' + _BN + r'|outnorm\d+\.' + _BN + r'|head\.(weight|bias))$')


def mambavision_checkpoint_layout(keys: Iterable[str]) -> str:
    """``'hf'`` (every key under ``model.``), ``'official'`` (the release
    ``.pth.tar``: has the classifier's ``norm.*`` or ``head.*``) or
    ``'mmssm'`` (anything else, e.g. an official detection backbone, whose
    keys are mmssm's)."""
    keys = list(keys)
    under_model = [k for k in keys if k.startswith('model.')]
    if under_model:
        if len(under_model) != len(keys):
            other = next(k for k in keys if not k.startswith('model.'))
            raise ValueError(
                'The checkpoint mixes Hugging Face MambaVision keys (e.g. '
                f'{under_model[0]!r}) with other keys (e.g. {other!r})')
        return 'hf'
    if any(k.startswith(('norm.', 'head.')) for k in keys):
        return 'official'
    return 'mmssm'


def convert_mambavision(
        state_dict: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """Convert an official MambaVision state dict to mmssm keys.

    The release ``.pth.tar`` (``state_dict`` entry) has the mmssm keys
    already (``patch_embed.conv_down.*``, ``levels.{i}.blocks.{j}.*``,
    ``levels.{i}.downsample.reduction.0.weight``, ``norm.*``, ``head.*``);
    the Hugging Face ``model.safetensors`` has them under ``model.``, which is
    removed. The classifier's ``norm`` and ``head`` are kept (the backbone
    drops what it does not use when loading). The keys of the GMambaVision
    options (registers, relative position bias tables, attention pooling)
    are MambaVision keys too (an mmssm classifier saved with them has
    ``norm.*`` and is read as this layout).

    Raises:
        ValueError: On a key that is no MambaVision key (naming it), or on a
            file mixing the Hugging Face layout with other keys.
    """
    layout = mambavision_checkpoint_layout(state_dict)
    out = OrderedDict()
    for key, value in state_dict.items():
        new = key[len('model.'):] if layout == 'hf' else key
        if not _OFFICIAL_KEY.match(new):
            raise ValueError(
                f'{key!r} is not a key of an official, Hugging Face or '
                f'mmssm MambaVision checkpoint ({layout} layout detected)')
        out[new] = value
    return out
