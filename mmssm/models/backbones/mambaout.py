"""MambaOut backbone.

Implements "MambaOut: Do We Really Need Mamba for Vision?" (Weihao Yu and
Xinchao Wang, 2024, https://arxiv.org/abs/2405.07992): a four-stage hierarchy
of Gated CNN blocks, i.e. Mamba blocks without the state-space model. The
layers, their order and their defaults follow the official code
(https://github.com/yuweihao/MambaOut) so that its released ImageNet
checkpoints, and the timm port of them, load and give the same numbers:

* the feature maps are channels-last ``(B, H, W, C)`` inside the network;
* stem: conv3x3 s2 (``C0 / 2``) -> LN -> GELU -> conv3x3 s2 (``C0``) -> LN;
  every later stage starts with conv3x3 s2 -> LN;
* Gated CNN block: ``x + drop_path(fc2(GELU(g) * cat(i, dwconv7x7(c))))`` where
  ``(g, i, c)`` split ``fc1(LN(x))`` into ``hidden``, ``hidden - C`` and ``C``
  channels, ``hidden = int(8 / 3 * C)``;
* every LayerNorm has ``eps=1e-6``; stochastic depth grows linearly over all
  blocks.

For dense prediction each stage in ``out_indices`` gets its own output
LayerNorm (the author's detection/segmentation recipe) and is returned
channels-first. The official classifier applies its final LayerNorm to the
globally pooled features; ``gap_before_final_norm=True`` reproduces that
(mmpretrain's ConvNeXt convention), and the official ``norm`` weights load into
the output norm of the last stage.

Input sizes: every downsampling is a 3x3 convolution with stride 2 and
padding 1, which maps a side of ``n`` pixels to ``ceil(n / 2)``. Any ``H, W``
is accepted, nothing is cropped or padded, and stage ``i`` has spatial size
``ceil(H / 2 ** (i + 2)) x ceil(W / 2 ** (i + 2))`` (e.g. 97x131 -> 25x33,
13x17, 7x9, 4x5). The border pixels of a side that is not a multiple of 32 are
seen through the zero padding of the convolutions, as in the official code.
"""
import logging
import re
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import build_activation_layer
from mmcv.cnn.bricks import DropPath
from mmengine.logging import print_log
from mmengine.model import BaseModule, ModuleList, Sequential

from mmssm.registry import register_model
from ..layers.backbone_utils import (check_image_input, parse_arch,
                                     parse_out_indices, stage_drop_path_rates,
                                     to_channels_first, to_channels_last)
from .base import BaseBackbone

__all__ = [
    'MambaOut', 'MambaOutStem', 'MambaOutDownsample', 'GatedCNNBlock',
    'convert_mambaout', 'mambaout_checkpoint_layout'
]

LN_EPS = 1e-6


class MambaOutStem(BaseModule):
    """Stem of MambaOut: two stride-2 3x3 convolutions (total stride 4).

    ``conv1 (C/2) -> LN -> act -> conv2 (C) -> LN``; the LayerNorms act on the
    channels-last view.

    Args:
        in_channels (int): Number of input image channels.
        out_channels (int): Number of output channels ``C``.
        act_cfg (dict): Activation config. Defaults to ``dict(type='GELU')``.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 act_cfg: Dict = dict(type='GELU'),
                 init_cfg: Optional[Dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        mid_channels = out_channels // 2
        self.conv1 = nn.Conv2d(
            in_channels, mid_channels, kernel_size=3, stride=2, padding=1)
        self.norm1 = nn.LayerNorm(mid_channels, eps=LN_EPS)
        self.act = build_activation_layer(act_cfg)
        self.conv2 = nn.Conv2d(
            mid_channels, out_channels, kernel_size=3, stride=2, padding=1)
        self.norm2 = nn.LayerNorm(out_channels, eps=LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` -> channels-last ``(B, H/4, W/4, C)``."""
        x = self.norm1(to_channels_last(self.conv1(x)))
        x = self.act(x.permute(0, 3, 1, 2))
        return self.norm2(to_channels_last(self.conv2(x)))


class MambaOutDownsample(BaseModule):
    """Downsampling between two MambaOut stages: conv3x3 s2 -> LN.

    Args:
        in_channels (int): Number of input channels.
        out_channels (int): Number of output channels.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 init_cfg: Optional[Dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size=3, stride=2, padding=1)
        self.norm = nn.LayerNorm(out_channels, eps=LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Channels-last ``(B, H, W, C_in)`` -> ``(B, H/2, W/2, C_out)``."""
        x = self.conv(x.permute(0, 3, 1, 2))
        return self.norm(to_channels_last(x))


class GatedCNNBlock(BaseModule):
    """Gated CNN block of MambaOut (channels-last).

    ``y = x + drop_path(fc2(act(g) * cat(i, dwconv(c))))`` with
    ``(g, i, c) = split(fc1(LN(x)), (hidden, hidden - conv_channels,
    conv_channels))``. The depthwise convolution only sees ``conv_channels``
    channels (partial-channel token mixing, as in InceptionNeXt).

    Args:
        dim (int): Number of input and output channels.
        expansion_ratio (float): ``hidden = int(expansion_ratio * dim)``.
            Defaults to 8/3.
        kernel_size (int): Kernel size of the depthwise convolution.
            Defaults to 7.
        conv_ratio (float): ``conv_channels = int(conv_ratio * dim)``.
            Defaults to 1.0.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        act_cfg (dict): Activation config. Defaults to ``dict(type='GELU')``.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 dim: int,
                 expansion_ratio: float = 8 / 3,
                 kernel_size: int = 7,
                 conv_ratio: float = 1.0,
                 drop_path: float = 0.,
                 act_cfg: Dict = dict(type='GELU'),
                 init_cfg: Optional[Dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        hidden = int(expansion_ratio * dim)
        conv_channels = int(conv_ratio * dim)
        if not 0 < conv_channels <= hidden:
            raise ValueError(
                f'conv_ratio={conv_ratio} gives {conv_channels} conv channels,'
                f' which must be in [1, hidden={hidden}]')
        if kernel_size % 2 != 1:
            raise ValueError(f'kernel_size must be odd, got {kernel_size}')
        self.split_indices = (hidden, hidden - conv_channels, conv_channels)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.fc1 = nn.Linear(dim, 2 * hidden)
        self.act = build_activation_layer(act_cfg)
        self.conv = nn.Conv2d(
            conv_channels,
            conv_channels,
            kernel_size=kernel_size,
            padding=kernel_size // 2,
            groups=conv_channels)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else \
            nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Channels-last ``(B, H, W, dim)`` in and out."""
        shortcut = x
        g, i, c = torch.split(
            self.fc1(self.norm(x)), self.split_indices, dim=-1)
        c = to_channels_last(self.conv(c.permute(0, 3, 1, 2)))
        x = self.fc2(self.act(g) * torch.cat((i, c), dim=-1))
        return shortcut + self.drop_path(x)


@register_model()
class MambaOut(BaseBackbone):
    """MambaOut backbone for classification, detection and segmentation.

    A PyTorch implementation of `MambaOut: Do We Really Need Mamba for
    Vision? <https://arxiv.org/abs/2405.07992>`_, matching the official code
    (see the module docstring). Parameters of the dense backbone (four output
    norms): femto 5.82 M, kobe 7.65 M, tiny 22.91 M, small 44.85 M, base
    79.37 M; with the paper's MLP classifier head
    (:class:`mmssm.cls.mambaout_head.MambaOutHead`, 1000 classes):
    7.31, 9.14, 26.55, 48.49 and 84.81 M (paper: 7.3, -, 26.5, 48.5, 84.8).

    Args:
        arch (str | dict): A preset of :attr:`arch_zoo` (``'femto'``,
            ``'kobe'``, ``'tiny'``, ``'small'``, ``'base'``) or a dict with
            keys ``depths`` and ``dims`` (one entry per stage). Defaults to
            ``'tiny'``.
        in_channels (int): Number of input image channels. Defaults to 3.
        out_indices (int | Sequence[int]): Stages whose outputs are returned;
            negative indices count from the last stage. Defaults to
            ``(0, 1, 2, 3)``.
        frozen_stages (int): Parts kept frozen (eval mode and
            ``requires_grad=False``), the meaning shared by every mmssm
            backbone (:class:`~mmssm.models.backbones.base.BaseBackbone`):
            ``-1`` nothing, ``0`` the stem, ``k`` the stem and the first ``k``
            stages with their downsampling layers and output norms.
            Defaults to -1.
        norm_eval (bool): Must stay False: MambaOut has no BatchNorm (only
            LayerNorms, which keep no statistics), so ``True`` is refused
            with a ``ValueError``. Defaults to False.
        with_cp (bool): Recompute each block in the backward pass
            (``torch.utils.checkpoint``) to save memory, in training mode
            (:func:`~mmssm.models.layers.backbone_utils.maybe_checkpoint`).
            Defaults to False.
        drop_path_rate (float): Stochastic depth rate of the last block; the
            rates grow linearly from 0 over all blocks. Defaults to 0.
        expansion_ratio (float): MLP expansion of the Gated CNN blocks.
            Defaults to 8/3.
        kernel_size (int): Depthwise convolution kernel size. Defaults to 7.
        conv_ratio (float): Fraction of the channels the depthwise convolution
            sees. Defaults to 1.0.
        act_cfg (dict): Activation config. Defaults to ``dict(type='GELU')``.
        gap_before_final_norm (bool): Pool each output globally before its
            output norm and return ``(B, C)`` vectors instead of feature maps
            (the official classifier; use with ``out_indices=(3, )`` and
            :class:`~mmssm.cls.mambaout_head.MambaOutHead`).
            Defaults to False.
        init_cfg (dict | list[dict], optional): Initialization config. The
            default is the official truncated-normal init (std 0.02, zero
            bias) of every convolution and linear layer. A
            ``dict(type='Pretrained', checkpoint=...)`` may point at an
            official, timm or mmssm checkpoint: the keys are converted on
            load (see :func:`convert_mambaout`) and loaded strictly, except
            for the output norms that the official classifier lacks
            (:meth:`convert_checkpoint`); add ``strict=False`` for a partial
            load.

    Example:
        >>> import torch
        >>> from mmssm.models.backbones import MambaOut
        >>> model = MambaOut(arch='femto').eval()
        >>> outs = model(torch.rand(1, 3, 97, 131))
        >>> [tuple(o.shape) for o in outs]
        [(1, 48, 25, 33), (1, 96, 13, 17), (1, 192, 7, 9), (1, 288, 4, 5)]
    """
    arch_zoo = {
        'femto': {'depths': [3, 3, 9, 3], 'dims': [48, 96, 192, 288]},
        'kobe': {'depths': [3, 3, 15, 3], 'dims': [48, 96, 192, 288]},
        'tiny': {'depths': [3, 3, 9, 3], 'dims': [96, 192, 384, 576]},
        'small': {'depths': [3, 4, 27, 3], 'dims': [96, 192, 384, 576]},
        'base': {'depths': [3, 4, 27, 3], 'dims': [128, 256, 512, 768]},
    }  # yapf: disable

    def __init__(self,
                 arch: Union[str, Dict] = 'tiny',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_path_rate: float = 0.,
                 expansion_ratio: float = 8 / 3,
                 kernel_size: int = 7,
                 conv_ratio: float = 1.0,
                 act_cfg: Dict = dict(type='GELU'),
                 gap_before_final_norm: bool = False,
                 init_cfg: Optional[Union[Dict, List[Dict]]] = [
                     dict(
                         type='TruncNormal',
                         layer=['Conv2d', 'Linear'],
                         std=.02,
                         bias=0.),
                     dict(type='Constant', layer='LayerNorm', val=1., bias=0.)
                 ]) -> None:
        super().__init__(init_cfg=init_cfg)
        arch = parse_arch(arch, self.arch_zoo, ('depths', 'dims'), 'MambaOut')
        self.depths = list(arch['depths'])
        self.dims = list(arch['dims'])
        if len(self.depths) != len(self.dims) or not self.depths:
            raise ValueError('MambaOut arch needs as many depths as dims, got '
                             f'depths={self.depths} dims={self.dims}')
        if any(d < 1 for d in self.depths) or any(c < 2 for c in self.dims):
            raise ValueError('MambaOut depths must be >= 1 and dims >= 2, got '
                             f'depths={self.depths} dims={self.dims}')
        self.num_stages = len(self.depths)
        self.in_channels = in_channels
        self.out_indices = parse_out_indices(out_indices, self.num_stages)
        self._init_training_options(self.num_stages, frozen_stages,
                                    norm_eval, with_cp)
        self.gap_before_final_norm = gap_before_final_norm

        self.downsample_layers = ModuleList([
            MambaOutStem(in_channels, self.dims[0], act_cfg=act_cfg)
        ])
        for i in range(1, self.num_stages):
            self.downsample_layers.append(
                MambaOutDownsample(self.dims[i - 1], self.dims[i]))

        dpr = stage_drop_path_rates(drop_path_rate, self.depths)
        self.stages = ModuleList()
        for i, (depth, dim) in enumerate(zip(self.depths, self.dims)):
            self.stages.append(
                Sequential(*[
                    GatedCNNBlock(
                        dim,
                        expansion_ratio=expansion_ratio,
                        kernel_size=kernel_size,
                        conv_ratio=conv_ratio,
                        drop_path=dpr[i][j],
                        act_cfg=act_cfg) for j in range(depth)
                ]))

        for i in self.out_indices:
            self.add_module(f'norm{i}',
                            nn.LayerNorm(self.dims[i], eps=LN_EPS))

        self._finish_init()

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Run the backbone.

        Args:
            x (torch.Tensor): Images of shape ``(B, in_channels, H, W)``.

        Returns:
            tuple[torch.Tensor]: One ``(B, C_i, ceil(H / s_i), ceil(W / s_i))``
            map per stage in ``out_indices`` (strides ``s_i`` 4, 8, 16, 32),
            or ``(B, C_i)`` vectors when ``gap_before_final_norm``.
        """
        check_image_input(x, self.in_channels, 'MambaOut')
        outs = []
        for i in range(self.num_stages):
            x = self.downsample_layers[i](x)
            for block in self.stages[i]:
                x = self.checkpointed(block, x)
            if i in self.out_indices:
                norm = getattr(self, f'norm{i}')
                if self.gap_before_final_norm:
                    outs.append(norm(x.mean(dim=(1, 2))))
                else:
                    outs.append(to_channels_first(norm(x)))
        return tuple(outs)

    def stem_modules(self) -> List[nn.Module]:
        """The stem (``downsample_layers.0``)."""
        return [self.downsample_layers[0]]

    def stage_modules(self, index: int) -> List[nn.Module]:
        """Stage ``index`` with its downsampling layer and output norm."""
        modules = [self.stages[index]]
        if index > 0:
            modules.append(self.downsample_layers[index])
        if index in self.out_indices:
            modules.append(getattr(self, f'norm{index}'))
        return modules

    def convert_checkpoint(self, state_dict: Dict, prefix: str = '') -> list:
        """Accept official and timm checkpoints (also the pre-hook).

        Keys under ``prefix`` in the official or timm layout are renamed to
        the mmssm layout in place (:func:`convert_mambaout`), so that
        ``init_cfg=dict(type='Pretrained')``, ``load_checkpoint``,
        ``load_from`` and ``Module.load_state_dict`` all take the released
        files as they are. Classifier-head keys (``head.*``) are not part of
        the backbone and are dropped, as is the official pooled-feature norm
        when the last stage has no output norm.

        Returns:
            list[str]: For an official or timm source, the output norms of
            stages other than the last (``norm{i}.*``, the author's dense
            recipe), which the classifier checkpoints do not have: they keep
            their initialisation (weight 1, bias 0) when loading strictly.
        """
        keys = [k for k in state_dict if k.startswith(prefix)]
        local_keys = [k[len(prefix):] for k in keys]
        layout = mambaout_checkpoint_layout(local_keys)
        absent = []
        if layout != 'mmssm':
            local = OrderedDict(
                (k[len(prefix):], state_dict.pop(k)) for k in keys)
            # strict: a foreign file detected as timm/official (e.g. another
            # family's ``stem.*``) stops here, naming its first odd key
            converted = convert_mambaout(local, num_stages=self.num_stages)
            for key, value in converted.items():
                state_dict[prefix + key] = value
            absent = [
                f'norm{i}.{p}' for i in self.out_indices
                if i != self.num_stages - 1 for p in ('weight', 'bias')
            ]
            print_log(
                f'MambaOut: converted {len(keys)} keys of the {layout} '
                'checkpoint layout to mmssm keys',
                logger='current',
                level=logging.INFO)
        unused = ('head.', )
        last_norm = f'norm{self.num_stages - 1}'
        if layout != 'mmssm' and not hasattr(self, last_norm):
            unused += (last_norm + '.', )  # the official pooled-feature norm
        self._drop_checkpoint_keys(state_dict, prefix, unused, 'classifier')
        return absent


# ---------------------------------------------------------------------------
# Checkpoint conversion
# ---------------------------------------------------------------------------
# mmssm keys are those of the official code (mmpretrain's ConvNeXt layout)
# except that the official final norm, applied to the pooled features, is the
# output norm of the last stage (``norm{last}``; see
# ``gap_before_final_norm``).
_MMSSM_KEY = re.compile(
    r'^(downsample_layers\.0\.(conv1|norm1|conv2|norm2)'
    r'|downsample_layers\.[1-9]\d*\.(conv|norm)'
    r'|stages\.\d+\.\d+\.(norm|fc1|conv|fc2)'
    r'|norm\d+'
    r'|head\.(fc1|norm|fc2))\.(weight|bias)$')
_TIMM_HINT = re.compile(r'^(stem\.|stages\.\d+\.(blocks|downsample)\.'
                        r'|head\.(pre_logits|fc)\.)')
_OFFICIAL_HINT = re.compile(r'^norm\.')
_STAGE_INDEX = re.compile(r'^(?:downsample_layers|stages)\.(\d+)\.')

# timm -> mmssm renames, applied in order (first match wins).
_TIMM_RULES = (
    (re.compile(r'^stem\.'), 'downsample_layers.0.'),
    (re.compile(r'^stages\.(\d+)\.downsample\.'), r'downsample_layers.\1.'),
    (re.compile(r'^stages\.(\d+)\.blocks\.(\d+)\.'), r'stages.\1.\2.'),
    (re.compile(r'^head\.norm\.'), 'norm{last}.'),
    (re.compile(r'^head\.pre_logits\.fc\.'), 'head.fc1.'),
    (re.compile(r'^head\.pre_logits\.norm\.'), 'head.norm.'),
    (re.compile(r'^head\.fc\.'), 'head.fc2.'),
)


def mambaout_checkpoint_layout(keys: Iterable[str]) -> str:
    """Tell which MambaOut checkpoint layout a set of keys uses.

    Args:
        keys (Iterable[str]): State-dict keys (without any wrapper prefix).

    Returns:
        str: ``'timm'`` (``stem.*``, ``stages.{s}.blocks.{j}.*``,
        ``stages.{s}.downsample.*``, ``head.pre_logits.*``), ``'official'``
        (``downsample_layers.*``, ``stages.{s}.{j}.*`` and the pooled-feature
        ``norm.*``) or ``'mmssm'`` (anything else, including an official
        checkpoint without its final norm, which is identical).
    """
    keys = list(keys)
    timm = [k for k in keys if _TIMM_HINT.match(k)]
    if timm:
        native = [
            k for k in keys
            if k.startswith('downsample_layers.') or _OFFICIAL_HINT.match(k)
        ]
        if native:
            raise ValueError(
                'The checkpoint mixes timm MambaOut keys (e.g. '
                f'{timm[0]!r}) with official/mmssm keys (e.g. {native[0]!r})')
        return 'timm'
    if any(_OFFICIAL_HINT.match(k) for k in keys):
        return 'official'
    return 'mmssm'


def convert_mambaout(state_dict: Dict[str, torch.Tensor],
                     num_stages: Optional[int] = None,
                     strict: bool = True) -> 'OrderedDict[str, torch.Tensor]':
    """Convert an official or timm MambaOut state dict to mmssm keys.

    ========================================  ================================
    official / timm key                       mmssm key
    ========================================  ================================
    ``downsample_layers.0.*`` / ``stem.*``    ``downsample_layers.0.*``
    ``downsample_layers.{s}.*`` /             ``downsample_layers.{s}.*``
    ``stages.{s}.downsample.*``
    ``stages.{s}.{j}.*`` /                    ``stages.{s}.{j}.*``
    ``stages.{s}.blocks.{j}.*``
    ``norm.*`` / ``head.norm.*``              ``norm{last}.*``
    ``head.fc1.*`` / ``head.pre_logits.fc.*`` ``head.fc1.*``
    ``head.norm.*`` /                         ``head.norm.*``
    ``head.pre_logits.norm.*``
    ``head.fc2.*`` / ``head.fc.*``            ``head.fc2.*``
    ========================================  ================================

    ``head.*`` is the MLP classifier
    (:class:`~mmssm.cls.mambaout_head.MambaOutHead`); the backbone
    ignores it when loading. mmssm state dicts
    pass through unchanged.

    Args:
        state_dict (dict): A flat state dict (already unwrapped from
            ``'state_dict'``/``'model'``/``'model_ema'``, no ``module.``
            prefix).
        num_stages (int, optional): Number of stages; inferred from the keys
            when None.
        strict (bool): Raise on keys that are not MambaOut keys. When False
            they pass through unchanged. Defaults to True.

    Returns:
        OrderedDict: The state dict with mmssm keys (same tensors).
    """
    layout = mambaout_checkpoint_layout(state_dict)
    out = OrderedDict()
    renamed = []
    for key, value in state_dict.items():
        new_key = key
        if layout == 'timm':
            for pattern, repl in _TIMM_RULES:
                if pattern.match(key):
                    new_key = pattern.sub(repl, key, count=1)
                    break
        elif layout == 'official' and _OFFICIAL_HINT.match(key):
            new_key = 'norm{last}.' + key[len('norm.'):]
        renamed.append((key, new_key, value))

    if num_stages is None:
        indices = [
            int(m.group(1)) for _, k, _ in renamed
            for m in [_STAGE_INDEX.match(k)] if m
        ]
        if not indices and any('{last}' in k for _, k, _ in renamed):
            raise ValueError('Cannot tell the number of stages of a MambaOut '
                             'checkpoint without stage keys; pass num_stages')
        num_stages = max(indices, default=0) + 1
    for key, new_key, value in renamed:
        new_key = new_key.replace('{last}', str(num_stages - 1))
        if strict and not _MMSSM_KEY.match(new_key):
            raise ValueError(
                f'{key!r} is not a key of an official, timm or mmssm '
                f'MambaOut checkpoint ({layout} layout detected)')
        if new_key in out:
            raise ValueError(f'Two checkpoint keys map to {new_key!r}')
        out[new_key] = value
    return out
