"""GroupMamba: a hierarchical vision state-space backbone.

Shaker et al., 2024, "GroupMamba: Parameter-Efficient and Accurate Group
Visual State Space Model" (papers/groupmamba.txt). The module structure, the
initialisation and every number here follow the official code
(Amshaker/GroupMamba, ``classification/models/groupmamba.py``) that the
released checkpoints were trained with; official (EMA) state dicts are mapped
onto this layout by :func:`convert_groupmamba`
(``tools/model_converters/groupmamba2mmssm.py``), also when given as
``init_cfg=dict(type='Pretrained', checkpoint=...)``.
"""
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmcv.cnn.bricks import DropPath
from mmengine.logging import MMLogger
from mmengine.model import BaseModule

from mmssm.registry import register_model
from ..layers.backbone_utils import (check_image_input, maybe_checkpoint,
                                     parse_arch, parse_out_indices,
                                     stage_drop_path_rates,
                                     trunc_normal_fan_out_init)
from ..layers.ss2d import SCAN_DIRECTIONS, SS2D, GroupedSS2D
from .base import BaseBackbone

__all__ = ['GroupMamba', 'convert_groupmamba']

#: Official GroupMamba releases are EMA weights: prefer them.
EMA_FIRST = ('state_dict', 'model_ema', 'model')


class GroupMambaStem(BaseModule):
    """Stride-4 convolutional stem of GroupMamba.

    conv7x7 s2 -> norm -> ReLU -> (conv3x3 -> norm -> ReLU) x 2 ->
    conv3x3 s2 (with bias) -> LayerNorm over channels.

    Args:
        in_channels (int): Image channels.
        stem_channels (int): Hidden width (32 for T, 64 for S/B).
        embed_dims (int): Output channels.
        norm_cfg (dict): Norm of the three hidden convs. Defaults to BN.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 in_channels: int,
                 stem_channels: int,
                 embed_dims: int,
                 norm_cfg: dict = dict(type='BN'),
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.convs = nn.Sequential(*[
            ConvModule(
                in_channels if i == 0 else stem_channels,
                stem_channels,
                kernel_size=7 if i == 0 else 3,
                stride=2 if i == 0 else 1,
                padding=3 if i == 0 else 1,
                bias=False,
                norm_cfg=norm_cfg,
                act_cfg=dict(type='ReLU', inplace=True)) for i in range(3)
        ])
        self.proj = nn.Conv2d(
            stem_channels, embed_dims, kernel_size=3, stride=2, padding=1)
        self.norm = nn.LayerNorm(embed_dims)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, tuple]:
        x = self.proj(self.convs(x))
        hw_shape = x.shape[2:]
        return self.norm(x.flatten(2).transpose(1, 2)), tuple(hw_shape)


class GroupMambaDownsample(BaseModule):
    """Downsampling between stages: conv3x3 s2 (padding 1) + LayerNorm.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.proj = nn.Conv2d(
            in_channels, out_channels, kernel_size=3, stride=2, padding=1)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x: torch.Tensor,
                hw_shape: tuple) -> Tuple[torch.Tensor, tuple]:
        batch, _, channels = x.shape
        x = x.transpose(1, 2).reshape(batch, channels, *hw_shape)
        x = self.proj(x)
        hw_shape = x.shape[2:]
        return self.norm(x.flatten(2).transpose(1, 2)), tuple(hw_shape)


class ChannelAffinityModulation(BaseModule):
    """Channel affinity modulation (CAM) of GroupMamba.

    ``w = sigmoid(fc2(relu(fc1(mean over tokens of x))))``: one weight per
    channel, used to rescale the mixer output.

    Args:
        embed_dims (int): Channels.
        reduction (int): Bottleneck reduction. Defaults to 16.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 embed_dims: int,
                 reduction: int = 16,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.fc1 = nn.Linear(embed_dims, embed_dims // reduction)
        self.fc2 = nn.Linear(embed_dims // reduction, embed_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, C) -> (B, 1, C) channel weights."""
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(
            x.mean(dim=1))))).unsqueeze(1)


class ModulatedGroupMamba(BaseModule):
    """Modulated Group Mamba layer (the token mixer of GroupMamba).

    ``x = LN(x)``; ``w = CAM(x)``; ``y = SSM(x)`` (four groups of ``C/4``
    channels scanned LR, TB, RL, BT by single-direction VSSS blocks, or, with
    ``mixer='ss2d4'``, every channel scanned in all four directions);
    ``y = y * skip_scale * x`` (multiplicative skip with a learnable scalar);
    ``y = y * w``; ``out = proj(LN(y))`` with the SAME LayerNorm module as at
    the input (as in the official code).

    Args:
        embed_dims (int): Channels ``C``.
        mixer (str): ``'group'`` (GroupMamba) or ``'ss2d4'`` (VMamba-like
            4-direction SS2D on all channels, summed; the paper's "4-D
            scanning" ablation). Defaults to 'group'.
        d_state (int): SSM state size. Defaults to 1.
        ssm_ratio (float): SSM expansion. Defaults to 1.0.
        d_conv (int): Depthwise conv kernel of the SSM. Defaults to 3.
        reduction (int): CAM reduction. Defaults to 16.
        scan_impl (str, optional): ``impl`` of the scan op.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 embed_dims: int,
                 mixer: str = 'group',
                 d_state: int = 1,
                 ssm_ratio: float = 1.0,
                 d_conv: int = 3,
                 reduction: int = 16,
                 scan_impl: Optional[str] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.norm = nn.LayerNorm(embed_dims)
        self.cam = ChannelAffinityModulation(embed_dims, reduction)
        ssm_kwargs = dict(
            d_state=d_state,
            ssm_ratio=ssm_ratio,
            d_conv=d_conv,
            directions=SCAN_DIRECTIONS,
            scan_impl=scan_impl)
        if mixer == 'group':
            self.ssm = GroupedSS2D(embed_dims, **ssm_kwargs)
        elif mixer == 'ss2d4':
            self.ssm = SS2D(embed_dims, **ssm_kwargs)
        else:
            raise ValueError(
                f"mixer must be 'group' or 'ss2d4', got {mixer!r}")
        self.skip_scale = nn.Parameter(torch.ones(1))
        self.skip_scale._no_weight_decay = True  # as the official recipe
        self.proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, x: torch.Tensor, hw_shape: tuple) -> torch.Tensor:
        """(B, L, C) tokens of an ``hw_shape`` grid -> (B, L, C)."""
        if x.dtype == torch.float16:
            # as the official layer: the SSM branch never runs in fp16
            x = x.float()
        batch, length, channels = x.shape
        x = self.norm(x)
        w = self.cam(x)
        y = self.ssm(x.view(batch, *hw_shape, channels))
        y = y.reshape(batch, length, channels) * self.skip_scale * x
        return self.proj(self.norm(y * w))


class GroupMambaFFN(BaseModule):
    """FFN with a depthwise 3x3 conv: fc1 -> dwconv -> GELU -> fc2.

    (Not the ViT-Adapter's multi-level ``ConvFFN`` of
    :mod:`mmssm.models.layers.vit_adapter`, which puts GELU after a
    per-level depthwise conv of ``c2..c4``.)

    Args:
        embed_dims (int): Channels.
        hidden_dims (int): Hidden channels (``mlp_ratio * embed_dims``).
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 embed_dims: int,
                 hidden_dims: int,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.fc1 = nn.Linear(embed_dims, hidden_dims)
        self.dwconv = nn.Conv2d(
            hidden_dims, hidden_dims, 3, padding=1, groups=hidden_dims)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dims, embed_dims)

    def forward(self, x: torch.Tensor, hw_shape: tuple) -> torch.Tensor:
        batch, _, _ = x.shape
        x = self.fc1(x)
        # (B, L, C) tokens seen as a channels-last (B, C, H, W) map (a view);
        # with the kernel in channels-last strides too (a (C, 1, 3, 3)
        # depthwise kernel is the same memory either way, only the stride
        # of its size-1 dimension differs, which `.contiguous()` would keep
        # and `.to(memory_format=...)` changes), the convolution
        # runs channels-last and returns a map whose (B, L, C) view is
        # contiguous: no layout copies before or after it (6x faster than
        # the NCHW kernel on a channels-last input, which reorders both).
        x = x.transpose(1, 2).reshape(batch, -1, *hw_shape)
        weight = self.dwconv.weight.to(memory_format=torch.channels_last)
        x = F.conv2d(x, weight, self.dwconv.bias, padding=1,
                     groups=self.dwconv.groups)
        x = x.flatten(2).transpose(1, 2)
        return self.fc2(self.act(x))


class GroupMambaBlock(BaseModule):
    """One GroupMamba block.

    ``x = x + drop_path(mixer(x))`` (the mixer normalises its input itself);
    ``x = x + drop_path(ffn(norm(x)))``.

    Args:
        embed_dims (int): Channels.
        mlp_ratio (float): FFN expansion.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        with_cp (bool): Use gradient checkpointing (in training mode,
            :func:`~mmssm.models.layers.backbone_utils.maybe_checkpoint`).
            Defaults to False.
        init_cfg (dict, optional): Initialization config.
        **mixer_kwargs: Arguments of :class:`ModulatedGroupMamba`.
    """

    def __init__(self,
                 embed_dims: int,
                 mlp_ratio: float,
                 drop_path: float = 0.,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None,
                 **mixer_kwargs):
        super().__init__(init_cfg=init_cfg)
        self.with_cp = with_cp
        self.mixer = ModulatedGroupMamba(embed_dims, **mixer_kwargs)
        self.norm = nn.LayerNorm(embed_dims, eps=1e-6)
        self.ffn = GroupMambaFFN(embed_dims, int(embed_dims * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def _forward(self, x: torch.Tensor, hw_shape: tuple) -> torch.Tensor:
        x = x + self.drop_path(self.mixer(x, hw_shape))
        return x + self.drop_path(self.ffn(self.norm(x), hw_shape))

    def forward(self, x: torch.Tensor, hw_shape: tuple) -> torch.Tensor:
        return maybe_checkpoint(self.with_cp, self.training, self._forward,
                                x, hw_shape)


class GroupMambaClassBlock(BaseModule):
    """Class block of the official classifier (its ``post_network``).

    The mean of the last stage's tokens goes through a Modulated Group Mamba
    layer (on a 1 x 1 grid) and a plain FFN, each with a post-norm residual:
    ``t = t + norm1(mixer(t))``; ``t = t + ffn(norm2(t))``.

    Args:
        embed_dims (int): Channels.
        mlp_ratio (float): FFN expansion.
        init_cfg (dict, optional): Initialization config.
        **mixer_kwargs: Arguments of :class:`ModulatedGroupMamba`.
    """

    def __init__(self,
                 embed_dims: int,
                 mlp_ratio: float,
                 init_cfg: Optional[dict] = None,
                 **mixer_kwargs):
        super().__init__(init_cfg=init_cfg)
        self.norm1 = nn.LayerNorm(embed_dims, eps=1e-6)
        self.norm2 = nn.LayerNorm(embed_dims, eps=1e-6)
        self.mixer = ModulatedGroupMamba(embed_dims, **mixer_kwargs)
        hidden = int(embed_dims * mlp_ratio)
        self.ffn = nn.Sequential(
            OrderedDict(
                fc1=nn.Linear(embed_dims, hidden),
                act=nn.GELU(),
                fc2=nn.Linear(hidden, embed_dims)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, C) tokens -> (B, C) class feature (before the final norm)."""
        t = x.mean(dim=1, keepdim=True)
        t = t + self.norm1(self.mixer(t, (1, 1)))
        t = t + self.ffn(self.norm2(t))
        return t[:, 0]


@register_model()
class GroupMamba(BaseBackbone):
    """GroupMamba backbone (and its VMamba-like 4-direction variant).

    A paper of 2024: "GroupMamba: Parameter-Efficient and Accurate Group
    Visual State Space Model" (Shaker et al.). Four stages at strides 4, 8,
    16, 32 of GroupMamba blocks (Modulated Group Mamba layer + FFN with a
    depthwise conv); every stage output goes through its own LayerNorm
    (eps 1e-6; for stages 1-3 this norm also feeds the next stage, as in the
    official code, whose ``norm4`` is the norm of the classification feature).

    Any input size works: the stem and the downsampling convs have "same"
    padding, so an ``H x W`` image gives maps of ``ceil(H / 2^k)`` rows
    (e.g. 225 -> 57, 29, 15, 8); no padding or cropping is done here.

    ``mixer='ss2d4'`` swaps the four grouped single-direction scans for a
    VMamba SS2D that scans all channels in the four directions (its own
    ``x_proj``/``dt_proj``/``A``/``D`` per direction) and sums them, keeping
    the rest of the architecture; both designs make one scan call per layer.

    Args:
        arch (str | dict): ``'tiny'``, ``'small'``, ``'base'`` or a dict with
            ``embed_dims``, ``depths``, ``mlp_ratios``, ``stem_channels``.
            Defaults to 'tiny'.
        in_channels (int): Image channels. Defaults to 3.
        mixer (str): ``'group'`` or ``'ss2d4'``. Defaults to 'group'.
        d_state (int): SSM state size. Defaults to 1.
        ssm_ratio (float): SSM expansion. Defaults to 1.0.
        reduction (int): Channel affinity reduction. Defaults to 16.
        out_indices (Sequence[int]): Stages whose outputs are returned.
            Defaults to (0, 1, 2, 3).
        out_type (str): ``'featmap'`` (dense prediction: normed
            ``(B, C, H, W)`` maps) or ``'cls_token'`` (classification: the
            last stage's output is the official class block's ``(B, C)``
            feature after ``norm4``; builds ``cls_block``).
            Defaults to 'featmap'.
        frozen_stages (int): The meaning shared by every mmssm backbone
            (:class:`~mmssm.models.backbones.base.BaseBackbone`): ``-1``
            nothing frozen, ``0`` the stem, ``k`` the stem and stages
            ``0 .. k-1`` (with their downsampling and norms).
            Defaults to -1.
        norm_eval (bool): Keep the stem's BatchNorms in eval mode while
            training (refused when ``stem_norm_cfg`` builds no BatchNorm).
            Defaults to False.
        with_cp (bool): Gradient checkpointing of every block.
            Defaults to False.
        drop_path_rate (float): Stochastic depth, linear from 0 over all
            blocks. Defaults to 0.
        stem_norm_cfg (dict): Norm of the stem convs. Defaults to BN.
        scan_impl (str, optional): ``impl`` of :func:`mmssm.ops.selective_scan`.
        init_cfg (dict, optional): ``dict(type='Pretrained',
            checkpoint=...)`` loads an mmssm checkpoint or an official one
            (flat, ``model``, ``model_ema`` or ``state_dict``, EMA weights
            first), converting official keys in :meth:`convert_checkpoint`;
            loaded strictly (any missing, unexpected or mis-shaped key
            stops), ``strict=False`` for a partial load. Defaults to None.
    """

    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'], {
            'embed_dims': [64, 128, 348, 448],
            'depths': [3, 4, 9, 3],
            'mlp_ratios': [8, 8, 4, 4],
            'stem_channels': 32,
        }),
        **dict.fromkeys(['s', 'small'], {
            'embed_dims': [64, 128, 348, 512],
            'depths': [3, 4, 16, 3],
            'mlp_ratios': [8, 8, 4, 4],
            'stem_channels': 64,
        }),
        **dict.fromkeys(['b', 'base'], {
            'embed_dims': [96, 192, 424, 512],
            'depths': [3, 6, 21, 3],
            'mlp_ratios': [8, 8, 4, 4],
            'stem_channels': 64,
        }),
    }
    _arch_keys = ('embed_dims', 'depths', 'mlp_ratios', 'stem_channels')
    checkpoint_keys = EMA_FIRST

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 mixer: str = 'group',
                 d_state: int = 1,
                 ssm_ratio: float = 1.0,
                 reduction: int = 16,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 out_type: str = 'featmap',
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_path_rate: float = 0.,
                 stem_norm_cfg: dict = dict(type='BN'),
                 scan_impl: Optional[str] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = self._parse_arch(arch)
        embed_dims = self.arch_settings['embed_dims']
        depths = self.arch_settings['depths']
        mlp_ratios = self.arch_settings['mlp_ratios']
        self.embed_dims = embed_dims
        self.num_stages = len(depths)
        self.mixer_type = mixer
        self.in_channels = in_channels

        self.out_indices = parse_out_indices(out_indices, self.num_stages)
        if out_type not in ('featmap', 'cls_token'):
            raise ValueError("out_type must be 'featmap' or 'cls_token', "
                             f'got {out_type!r}')
        self.out_type = out_type
        self._init_training_options(self.num_stages, frozen_stages,
                                    norm_eval, with_cp)

        mixer_kwargs = dict(
            mixer=mixer,
            d_state=d_state,
            ssm_ratio=ssm_ratio,
            reduction=reduction,
            scan_impl=scan_impl)
        self.stem = GroupMambaStem(in_channels,
                                   self.arch_settings['stem_channels'],
                                   embed_dims[0], stem_norm_cfg)
        self.downsamples = nn.ModuleList([
            GroupMambaDownsample(embed_dims[i - 1], embed_dims[i])
            for i in range(1, self.num_stages)
        ])
        dpr = stage_drop_path_rates(drop_path_rate, depths)
        self.stages = nn.ModuleList()
        for i, depth in enumerate(depths):
            self.stages.append(
                nn.ModuleList([
                    GroupMambaBlock(
                        embed_dims[i],
                        mlp_ratios[i],
                        drop_path=dpr[i][j],
                        with_cp=with_cp,
                        **mixer_kwargs) for j in range(depth)
                ]))
        self.norms = nn.ModuleList(
            [nn.LayerNorm(d, eps=1e-6) for d in embed_dims])
        if out_type == 'cls_token':
            self.cls_block = GroupMambaClassBlock(embed_dims[-1],
                                                  mlp_ratios[-1],
                                                  **mixer_kwargs)
        self._finish_init()

    def _parse_arch(self, arch: Union[str, dict]) -> dict:
        arch = parse_arch(arch, self.arch_zoo, self._arch_keys, 'GroupMamba')
        arch = {k: (list(v) if isinstance(v, (list, tuple)) else v)
                for k, v in arch.items()}
        lengths = {len(arch[k]) for k in ('embed_dims', 'depths', 'mlp_ratios')}
        if len(lengths) != 1:
            raise ValueError('embed_dims, depths and mlp_ratios must have the '
                             f'same length, got {arch}')
        for d in arch['embed_dims']:
            if d % 4 != 0:
                raise ValueError(f'embed_dims must be multiples of 4 (four '
                                 f'scan groups), got {arch["embed_dims"]}')
        return arch

    # ------------------------------------------------------------------
    # initialisation and checkpoints
    # ------------------------------------------------------------------
    def init_random_weights(self) -> None:
        """Init of the official code
        (:func:`~mmssm.models.layers.backbone_utils.trunc_normal_fan_out_init`
        and the SS2D parameters' own init)."""
        self.apply(trunc_normal_fan_out_init)
        for m in self.modules():
            if isinstance(m, SS2D):
                m.reset_ssm_parameters()
        self._is_init = True

    def convert_checkpoint(self, state_dict: Dict[str, torch.Tensor],
                           prefix: str = '') -> list:
        """Convert an official GroupMamba layout under ``prefix`` in place
        (:func:`convert_groupmamba`; also the ``load_state_dict``
        pre-hook). The classifier's class block (``cls_block.*``, official
        ``post_network``) and heads are dropped, and logged, when this
        backbone has no class block (``out_type='featmap'``)."""
        keys = [k for k in state_dict if k.startswith(prefix)]
        local = OrderedDict((k[len(prefix):], state_dict[k]) for k in keys)
        with_cls_block = self.out_type == 'cls_token'
        if is_official_groupmamba(local):
            for key in keys:
                del state_dict[key]
            for key, value in convert_groupmamba(
                    local, with_cls_block=with_cls_block).items():
                state_dict[prefix + key] = value
            MMLogger.get_current_instance().info(
                f'GroupMamba: converted {len(keys)} keys of the official '
                'checkpoint layout')
        elif not with_cls_block:
            self._drop_checkpoint_keys(state_dict, prefix, ('cls_block.', ),
                                       "class-block (out_type='featmap')")
        return []

    def stem_modules(self) -> List[nn.Module]:
        return [self.stem]

    def stage_modules(self, index: int) -> List[nn.Module]:
        modules = [self.stages[index], self.norms[index]]
        if index > 0:
            modules.append(self.downsamples[index - 1])
        return modules

    # ------------------------------------------------------------------
    # forward and training mode
    # ------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Forward.

        Args:
            x (Tensor): ``(B, in_channels, H, W)`` images.

        Returns:
            tuple[Tensor]: for each index in ``out_indices``, the normed
            ``(B, C_i, ceil(H / 2^(i+2)), ceil(W / 2^(i+2)))`` map, or for
            the last stage with ``out_type='cls_token'`` the ``(B, C)``
            class feature.
        """
        check_image_input(x, self.in_channels, 'GroupMamba')
        outs = []
        x, hw_shape = self.stem(x)
        for i, blocks in enumerate(self.stages):
            if i > 0:
                x, hw_shape = self.downsamples[i - 1](x, hw_shape)
            for block in blocks:
                x = block(x, hw_shape)
            if self.out_type == 'cls_token' and i == self.num_stages - 1:
                if i in self.out_indices:
                    outs.append(self.norms[i](self.cls_block(x)))
                continue
            x = self.norms[i](x)
            if i in self.out_indices:
                outs.append(
                    x.transpose(1, 2).reshape(x.shape[0], -1,
                                              *hw_shape).contiguous())
        return tuple(outs)


# ----------------------------------------------------------------------
# official checkpoints
# ----------------------------------------------------------------------
def is_official_groupmamba(state_dict: Dict[str, torch.Tensor]) -> bool:
    """Whether ``state_dict`` uses the official GroupMamba key layout."""
    return any(k.startswith('patch_embed1.') for k in state_dict)


#: official stem ``patch_embed1.conv`` Sequential index -> mmssm name
_STEM_MAP = {
    '0': 'convs.0.conv', '1': 'convs.0.bn',
    '3': 'convs.1.conv', '4': 'convs.1.bn',
    '6': 'convs.2.conv', '7': 'convs.2.bn',
}


def _convert_mixer(rest: str) -> str:
    """Official ``GroupMambaLayer`` key (after ``attn.``) -> mmssm."""
    if rest.startswith('mamba_g'):
        group, tail = rest[len('mamba_g'):].split('.', 1)
        return f'ssm.branches.{int(group) - 1}.{tail}'
    if rest.startswith(('fc1.', 'fc2.')):
        return 'cam.' + rest
    return rest  # norm, proj, skip_scale, and 'ssm.' of the ss2d4 variant


def convert_groupmamba(state_dict: Dict[str, torch.Tensor],
                       with_cls_block: bool = False,
                       with_heads: bool = False) -> 'OrderedDict':
    """Convert an official GroupMamba state dict to the mmssm layout.

    Official (Amshaker/GroupMamba) -> mmssm :class:`GroupMamba`:

    * ``patch_embed1.conv.{0,1,3,4,6,7}`` -> ``stem.convs.{0,1,2}.{conv,bn}``,
      ``patch_embed1.{proj,norm}`` -> ``stem.{proj,norm}``;
    * ``patch_embed{i}.{proj,norm}`` (i = 2..4) -> ``downsamples.{i-2}``;
    * ``block{i}.{j}.attn.{norm,proj,skip_scale}`` ->
      ``stages.{i-1}.{j}.mixer.*``, ``attn.fc{1,2}`` -> ``mixer.cam.fc{1,2}``,
      ``attn.mamba_g{g}.*`` -> ``mixer.ssm.branches.{g-1}.*`` (same SS2D
      parameter names), ``norm2`` -> ``norm``, ``mlp.fc{1,2}`` ->
      ``ffn.fc{1,2}``, ``mlp.dwconv.dwconv`` -> ``ffn.dwconv``;
    * ``norm{i}`` -> ``norms.{i-1}``;
    * ``post_network.0.{norm1,norm2,attn,mlp}`` -> ``cls_block.*`` (kept only
      with ``with_cls_block``), ``head``/``dist_head`` (kept only with
      ``with_heads``, as ``head.fc``/``head.dist_fc`` of
      :class:`mmssm.cls.GroupMambaDistHead`; the backbone keys then get the
      ``backbone.`` prefix of an mmpretrain classifier).

    Args:
        state_dict (dict): Official flat state dict.
        with_cls_block (bool): Keep the classifier's class block.
        with_heads (bool): Keep the classification and distillation heads
            (implies ``with_cls_block``) and return a full classifier state
            dict.

    Returns:
        OrderedDict: the converted state dict.

    Raises:
        KeyError: on a key that is not part of the official layout.
    """
    with_cls_block = with_cls_block or with_heads
    out = OrderedDict()
    for key, value in state_dict.items():
        new = None
        if key.startswith('module.'):
            key = key[len('module.'):]
        head, _, rest = key.partition('.')
        if head == 'patch_embed1':
            if rest.startswith('conv.'):
                idx, tail = rest[len('conv.'):].split('.', 1)
                new = f'stem.{_STEM_MAP[idx]}.{tail}'
            else:
                new = f'stem.{rest}'
        elif head.startswith('patch_embed'):
            new = f'downsamples.{int(head[len("patch_embed"):]) - 2}.{rest}'
        elif head.startswith('block'):
            stage = int(head[len('block'):]) - 1
            idx, sub, tail = rest.split('.', 2)
            prefix = f'stages.{stage}.{idx}'
            if sub == 'attn':
                new = f'{prefix}.mixer.{_convert_mixer(tail)}'
            elif sub == 'norm2':
                new = f'{prefix}.norm.{tail}'
            elif sub == 'mlp':
                new = f'{prefix}.ffn.' + tail.replace('dwconv.dwconv.',
                                                      'dwconv.')
        elif head.startswith('norm') and head[4:].isdigit():
            new = f'norms.{int(head[4:]) - 1}.{rest}'
        elif head == 'post_network':
            if not with_cls_block:
                continue
            idx, sub, tail = rest.split('.', 2)
            if idx != '0':
                raise KeyError(f'unexpected official key {key!r}')
            if sub == 'attn':
                new = f'cls_block.mixer.{_convert_mixer(tail)}'
            elif sub == 'mlp':
                new = f'cls_block.ffn.{tail}'
            elif sub in ('norm1', 'norm2'):
                new = f'cls_block.{sub}.{tail}'
        elif head in ('head', 'dist_head'):
            if not with_heads:
                continue
            name = 'fc' if head == 'head' else 'dist_fc'
            out[f'head.{name}.{rest}'] = value
            continue
        if new is None:
            raise KeyError(f'unexpected official GroupMamba key {key!r}')
        out[('backbone.' if with_heads else '') + new] = value
    return out
