"""ViT-Adapter around a plain mmssm sequence backbone (Vim, Vim-Reg).

Chen et al., 2023, "Vision Transformer Adapter for Dense Predictions"
(czczup/ViT-Adapter), as used for Vim by ShuffleMamba (Huang et al., 2024,
papers/shufflemamba-slws.txt, Tables 3-4: "ShuffleMamba-Reg-Adapter") on top
of Mamba-Reg (Vim with registers).

The adapter wraps the backbone rather than subclassing it, so the backbone's
own checkpoint loading (``init_cfg`` of the inner ``backbone`` dict),
layer-wise lr decay depths and the SLWS hook keep working. It drives the
backbone only through the public plain-backbone interface
(:class:`~mmssm.models.backbones.base.PlainBackboneMixin`), so any plain
backbone implementing it with tokens at stride 16 can be wrapped.

Differences from the reference adapter, stated:

* Vim layers carry a ``(hidden, residual)`` pair; the token state the adapter
  reads is the residual stream ``residual + hidden`` and the injector's output
  is added to it (through ``hidden``). Only patch tokens are queried and
  updated; the class token or the registers stay in the sequence, untouched by
  the adapter, and never reach the spatial maps.
* With ``backbone_features='interactions'`` (default, the ShuffleMamba Vim
  adapter) the tokens after interaction ``i`` are added to ``c_{i+1}``; with
  ``'last'`` the final tokens are added to all four (ViT-Adapter's ViT). The
  last tokens go through the backbone's ``norm_f`` when it has
  ``final_norm=True`` (so the norm's pre-trained weights are used, not left
  dangling).
* Any input size: images are zero padded on the right and bottom to a
  multiple of 32 (so that ``c2..c4`` and the 16-pixel tokens tile exactly) and
  the four outputs are cropped back to ``ceil(H / s) x ceil(W / s)`` for
  strides ``s`` = 4, 8, 16, 32.
"""
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.registry import MODELS

from mmssm.registry import register_model
from ..layers.backbone_utils import (check_image_input, parse_out_indices,
                                     trunc_normal_fan_out_init)
from ..layers.vit_adapter import (AdapterDeformAttention,
                                  InteractionAdapterBlock, SpatialPriorModule,
                                  grid_reference_points)
from .base import BaseBackbone, check_plain_backbone

__all__ = ['PlainAdapter', 'even_interaction_indexes']


def even_interaction_indexes(num_layers: int,
                             num_interactions: int = 4) -> List[List[int]]:
    """Split ``num_layers`` layers into equal contiguous runs.

    24 layers give ``[[0, 5], [6, 11], [12, 17], [18, 23]]`` (ViT-Adapter /
    ShuffleMamba for 24-layer Vim), 32 give ``[[0, 7], ..., [24, 31]]`` and
    48 ``[[0, 11], ..., [36, 47]]``.
    """
    if num_layers % num_interactions:
        raise ValueError(
            f'{num_layers} layers do not split into {num_interactions} equal '
            'interactions; give interaction_indexes explicitly')
    step = num_layers // num_interactions
    return [[i * step, (i + 1) * step - 1] for i in range(num_interactions)]


@register_model()
class PlainAdapter(BaseBackbone):
    """ViT-Adapter for plain mmssm backbones: 4 maps at strides 4/8/16/32.

    A spatial prior module gives ``c1..c4`` (strides 4..32) from the image;
    ``c2..c4`` (plus a level embedding) form one multi-scale sequence ``c``.
    For every interaction ``[start, end]``, the injector lets the backbone's
    patch tokens attend to ``c`` (deformable attention, ``gamma`` starting at
    0), layers ``start..end`` of the backbone run, and the extractor (plus
    two extra ones after the last interaction) lets ``c`` attend to the
    tokens, followed by a ConvFFN. Finally ``c1 += up(c2)``, the backbone
    tokens are resized and added to each map, and each map is normalised.

    The wrapped backbone must implement the plain-backbone interface
    (:class:`~mmssm.models.backbones.base.PlainBackboneMixin`: ``embed_dims``,
    ``in_channels``, ``num_layers``, ``layers``, ``token_stride``,
    ``grid_size``, ``prepare_tokens``, ``token_layout``, ``run_layer``,
    ``final_stream_norm``, ``get_layer_depth``) with tokens at stride 16 that
    tile the image (a ``32k x 32m`` image gives a ``2k x 2m`` grid), e.g.
    :class:`mmssm.models.Vim` with 16x16 patches (with or without class token
    or registers).

    Args:
        backbone (dict | nn.Module): The plain backbone (config or module),
            e.g. ``dict(type='Vim', arch='reg-base', ...)``; its
            ``init_cfg`` loads its pre-trained weights.
        conv_inplane (int): Spatial prior stem width. Defaults to 64.
        num_points (int): Deformable sampling points. Defaults to 4.
        deform_num_heads (int): Deformable attention heads (6 for Ti/S, 12
            for B/M, 16 for L). Defaults to 6.
        deform_ratio (float): Value width ratio of the deformable attention
            (1.0 for Ti/S, 0.5 for B/M/L). Defaults to 1.0.
        init_values (float): Initial injector ``gamma``. Defaults to 0.
        with_cffn (bool): ConvFFN in the extractors. Defaults to True.
        cffn_ratio (float): ConvFFN hidden ratio. Defaults to 0.25.
        interaction_indexes (Sequence[Sequence[int]], optional): ``[start,
            end]`` layer runs (inclusive), contiguous from 0 to the last
            layer. ``None`` splits the layers into 4 equal runs.
            Defaults to None.
        use_extra_extractor (bool): Two extra extractors after the last
            interaction. Defaults to True.
        add_backbone_features (bool): Add the backbone tokens to the maps.
            Defaults to True.
        backbone_features (str): ``'interactions'`` (the tokens after
            interaction ``i`` go to map ``i``; needs 4 interactions) or
            ``'last'``. Defaults to ``'interactions'``.
        drop_path_rate (float): Stochastic depth of the extractors' ConvFFN.
            Defaults to 0.
        norm_cfg (dict): Norm of the spatial prior convs and of the four
            outputs. Defaults to ``dict(type='SyncBN', requires_grad=True)``
            (the reference; ``SyncBN`` runs as BN without a process group).
        out_indices (Sequence[int]): Outputs to return (0..3 = strides 4, 8,
            16, 32). Defaults to ``(0, 1, 2, 3)``.
        norm_eval (bool): Keep the adapter's BatchNorms in eval mode during
            training (refused when ``norm_cfg`` builds no BatchNorm; the
            backbone has its own option). Defaults to False.
        with_cp (bool): Gradient checkpointing of injectors and extractors
            (the backbone has its own ``with_cp``). Defaults to False.
        init_cfg (dict, optional): Initialization config of the whole
            adapter (usually None: load the backbone through its own
            ``init_cfg``). Defaults to None.
    """

    SIZE_DIVISOR = 32
    STRIDES = (4, 8, 16, 32)

    def __init__(self,
                 backbone: Union[dict, nn.Module],
                 conv_inplane: int = 64,
                 num_points: int = 4,
                 deform_num_heads: int = 6,
                 deform_ratio: float = 1.0,
                 init_values: float = 0.,
                 with_cffn: bool = True,
                 cffn_ratio: float = 0.25,
                 interaction_indexes: Optional[Sequence[Sequence[int]]] = None,
                 use_extra_extractor: bool = True,
                 add_backbone_features: bool = True,
                 backbone_features: str = 'interactions',
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = dict(type='SyncBN', requires_grad=True),
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.backbone = (
            backbone
            if isinstance(backbone, nn.Module) else MODELS.build(backbone))
        self._check_backbone(self.backbone)
        dims = self.backbone.embed_dims
        self.embed_dims = dims
        num_layers = self.backbone.num_layers
        if interaction_indexes is None:
            interaction_indexes = even_interaction_indexes(num_layers)
        self.interaction_indexes = self._check_indexes(
            interaction_indexes, num_layers)
        if backbone_features not in ('interactions', 'last'):
            raise ValueError("backbone_features must be 'interactions' or "
                             f"'last', got {backbone_features!r}")
        if (add_backbone_features and backbone_features == 'interactions'
                and len(self.interaction_indexes) != 4):
            raise ValueError(
                "backbone_features='interactions' adds the tokens of "
                'interaction i to map i and needs 4 interactions, got '
                f'{len(self.interaction_indexes)}')
        self.add_backbone_features = add_backbone_features
        self.backbone_features = backbone_features
        self.out_indices = parse_out_indices(list(out_indices), 4)
        self._init_training_options(norm_eval=norm_eval, with_cp=with_cp)

        self.level_embed = nn.Parameter(torch.zeros(3, dims))
        self.level_embed._no_weight_decay = True  # as ViT-Adapter's recipe
        self.spm = SpatialPriorModule(
            self.backbone.in_channels,
            conv_inplane,
            dims,
            norm_cfg=norm_cfg)
        num = len(self.interaction_indexes)
        self.interactions = nn.ModuleList([
            InteractionAdapterBlock(
                dims,
                num_heads=deform_num_heads,
                num_points=num_points,
                value_ratio=deform_ratio,
                init_values=init_values,
                with_cffn=with_cffn,
                cffn_ratio=cffn_ratio,
                drop_path_rate=drop_path_rate,
                extra_extractor=use_extra_extractor and i == num - 1,
                with_cp=with_cp) for i in range(num)
        ])
        self.up = nn.ConvTranspose2d(dims, dims, 2, 2)
        for i in range(1, 5):
            self.add_module(f'norm{i}', build_norm_layer(norm_cfg, dims)[1])
        self._adapter_init()
        self._finish_init()

    # ------------------------------------------------------------- checks
    @staticmethod
    def _check_backbone(backbone: nn.Module) -> None:
        check_plain_backbone(backbone, 'PlainAdapter')
        grid = tuple(backbone.grid_size(64, 96))
        if backbone.token_stride != 16 or grid != (4, 6):
            raise ValueError(
                'PlainAdapter needs 16x16 non-overlapping patches (tokens at '
                f'stride 16 tiling the image), got token_stride='
                f'{backbone.token_stride} and a {grid} grid for a 64x96 image'
                ' (expected (4, 6))')

    @staticmethod
    def _check_indexes(indexes, num_layers: int) -> List[Tuple[int, int]]:
        result, expected = [], 0
        for pair in indexes:
            if len(pair) != 2 or pair[0] != expected or pair[1] < pair[0]:
                raise ValueError(
                    f'interaction_indexes {list(indexes)} must be contiguous '
                    f'[start, end] runs covering layers 0..{num_layers - 1}')
            result.append((int(pair[0]), int(pair[1])))
            expected = pair[1] + 1
        if expected != num_layers:
            raise ValueError(
                f'interaction_indexes {list(indexes)} must end at the last '
                f'layer {num_layers - 1}')
        return result

    # --------------------------------------------------------------- init
    @torch.no_grad()
    def _adapter_init(self) -> None:
        """Random init of the reference adapter: truncated-normal linears,
        fan-out normal convs, unit norms, Deformable-DETR attention init,
        standard-normal level embedding."""
        for module in (self.spm, self.interactions, self.up):
            module.apply(trunc_normal_fan_out_init)
        for m in self.interactions.modules():
            if isinstance(m, AdapterDeformAttention):
                m.reset_parameters()
        nn.init.normal_(self.level_embed)

    # ------------------------------------------------------------ helpers
    @property
    def plain_backbone(self) -> nn.Module:
        """The wrapped plain backbone (where
        :class:`~mmssm.engine.hooks.SLWSHook` shuffles)."""
        return self.backbone

    @staticmethod
    def deform_inputs(h: int, w: int, device=None) -> Tuple[tuple, tuple]:
        """Reference points, spatial shapes and level starts of the injector
        (queries: the ``h x w`` tokens; values: ``c2..c4`` of sizes
        ``2h x 2w``, ``h x w``, ``h/2 x w/2``) and of the extractor (queries:
        ``c2..c4``; value: the tokens).

        The reference points are tensors; the shapes (``(h, w)`` pairs) and
        level starts are Python ints, so that no size is read back from
        tensor data (``torch.compile(fullgraph=True)`` traces the adapter
        without a graph break; the CUDA kernel gets them as tensors).
        """
        c_shapes = ((2 * h, 2 * w), (h, w), (h // 2, w // 2))
        starts = (0, c_shapes[0][0] * c_shapes[0][1],
                  c_shapes[0][0] * c_shapes[0][1] + h * w)
        injector = (grid_reference_points([(h, w)], device), c_shapes, starts)
        extractor = (grid_reference_points(c_shapes, device), ((h, w), ),
                     (0, ))
        return injector, extractor

    def _token_map(self, tokens: torch.Tensor, grid) -> torch.Tensor:
        return tokens.transpose(1, 2).reshape(tokens.shape[0],
                                              self.embed_dims, *grid)

    # ------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Forward images ``(B, C, H, W)`` of any size.

        Returns:
            tuple[torch.Tensor]: For each ``out_indices`` entry ``i``, a map
            ``(B, embed_dims, ceil(H / s_i), ceil(W / s_i))`` with
            ``s = (4, 8, 16, 32)``.
        """
        check_image_input(x, self.backbone.in_channels, 'PlainAdapter')
        height, width = x.shape[-2:]
        div = self.SIZE_DIVISOR
        pad_h, pad_w = (-height) % div, (-width) % div
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        h, w = x.shape[-2] // 16, x.shape[-1] // 16
        c_shapes = [(2 * h, 2 * w), (h, w), (h // 2, w // 2)]

        c1, c2, c3, c4 = self.spm(x)
        c = torch.cat([
            ci.flatten(2).transpose(1, 2) + self.level_embed[i]
            for i, ci in enumerate((c2, c3, c4))
        ], 1)
        hidden, grid, _ = self.backbone.prepare_tokens(x)
        if tuple(grid) != (h, w):
            raise RuntimeError(f'backbone token grid {tuple(grid)} != '
                               f'{(h, w)} of a stride-16 backbone')
        patch_index, _ = self.backbone.token_layout(grid, x.device)
        injector_inputs, extractor_inputs = self.deform_inputs(h, w, x.device)

        residual = None
        feats = []
        last = len(self.interactions) - 1
        for i, (block, (start, end)) in enumerate(
                zip(self.interactions, self.interaction_indexes)):
            stream = hidden if residual is None else residual + hidden
            delta = block.inject(stream[:, patch_index], c, injector_inputs)
            hidden = hidden.index_add(1, patch_index, delta.to(hidden.dtype))
            for index in range(start, end + 1):
                hidden, residual = self.backbone.run_layer(
                    index, hidden, residual)
            stream = residual + hidden
            if i == last:
                stream = self.backbone.final_stream_norm(stream)
            tokens = stream[:, patch_index]
            c = block.extract(c, tokens, extractor_inputs, c_shapes)
            feats.append(tokens)

        batch = x.shape[0]
        c2, c3, c4 = [
            ci.transpose(1, 2).reshape(batch, self.embed_dims, *shape)
            for ci, shape in zip(
                c.split([a * b for a, b in c_shapes], 1), c_shapes)
        ]
        maps = [self.up(c2) + c1, c2, c3, c4]
        if self.add_backbone_features:
            if self.backbone_features == 'last':
                feats = feats[-1:] * 4
            for i, tokens in enumerate(feats):
                tokens = self._token_map(tokens, grid).to(maps[i].dtype)
                if tokens.shape[-2:] != maps[i].shape[-2:]:
                    tokens = F.interpolate(
                        tokens,
                        size=maps[i].shape[-2:],
                        mode='bilinear',
                        align_corners=False)
                maps[i] = maps[i] + tokens
        outs = []
        for i in self.out_indices:
            out = getattr(self, f'norm{i + 1}')(maps[i])
            stride = self.STRIDES[i]
            outs.append(out[..., :math.ceil(height / stride), :math.ceil(
                width / stride)].contiguous())
        return tuple(outs)

    # -------------------------------------------------- training utilities
    def get_layer_depth(self, param_name: str, prefix: str = ''):
        """Layer depth for layer-wise lr decay: the backbone's own depths
        for ``backbone.*`` parameters, the top depth ``num_layers + 1`` of
        the plain-backbone interface (no decay) for the adapter's
        parameters."""
        inner = prefix + 'backbone.'
        if param_name.startswith(inner):
            return self.backbone.get_layer_depth(param_name, inner)
        num_depths = self.backbone.num_layers + 2
        return num_depths - 1, num_depths
