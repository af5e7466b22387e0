"""Building blocks of the ViT-Adapter for plain sequence backbones.

Chen et al., 2023, "Vision Transformer Adapter for Dense Predictions" (ICLR;
czczup/ViT-Adapter). The module structure and the parameter names follow the
reference code (``adapter_modules.py``, ``ms_deform_attn.py``) so that its
adapter weights map one to one; the blocks themselves work on any input grid
(the reference splits the multi-scale token sequence with ``N // 21``, which
only holds for feature maps of exactly 4:1:1/4 sizes; here every split uses
the stored spatial shapes).

* :class:`AdapterDeformAttention`: multi-scale deformable attention with the
  reference's ``value_ratio`` (value width ``ratio * C``) and **no residual**
  (mmcv's ``MultiScaleDeformableAttention`` module adds the query back and
  has no ratio); the sampling itself is mmcv 2.1.0's
  ``MultiScaleDeformableAttnFunction`` on CUDA and
  ``multi_scale_deformable_attn_pytorch`` elsewhere, imported when the
  first one is built (their module loads mmcv's compiled ``mmcv._ext``).
* :class:`SpatialPriorModule`: conv stem -> ``c1..c4`` at strides 4/8/16/32,
  1x1 projections to the backbone width.
* :class:`Injector` (tokens attend to ``c2..c4``, zero-initialised
  ``gamma``), :class:`Extractor` (``c`` attends to the tokens, then
  :class:`ConvFFN`), :class:`InteractionAdapterBlock` (their pairing around a
  run of backbone layers; the last one has two extra extractors).
"""
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule

from .backbone_utils import maybe_checkpoint

__all__ = [
    'AdapterDeformAttention', 'SpatialPriorModule', 'ConvFFN', 'Injector',
    'Extractor', 'InteractionAdapterBlock', 'grid_reference_points',
    'level_start_index'
]


def grid_reference_points(shapes: Sequence[Tuple[int, int]],
                          device=None) -> torch.Tensor:
    """Normalised centres of the cells of one or more grids.

    Args:
        shapes (Sequence[tuple[int, int]]): Grids ``(h, w)``, concatenated
            in this order (row-major inside each grid).
        device (torch.device, optional): Device of the result.

    Returns:
        torch.Tensor: ``(1, sum h * w, 2)`` points ``(x, y)`` in ``[0, 1]``
        (``((j + 0.5) / w, (i + 0.5) / h)`` for cell ``(i, j)``).
    """
    points = []
    for h, w in shapes:
        ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
        y, x = torch.meshgrid(ys, xs, indexing='ij')
        points.append(torch.stack([x.reshape(-1), y.reshape(-1)], -1))
    return torch.cat(points, 0)[None]


def _deform_attn_ops():
    """mmcv's ``(MultiScaleDeformableAttnFunction,
    multi_scale_deformable_attn_pytorch)``, imported on first use.

    Their module loads mmcv's compiled ops (``mmcv._ext``) when imported, so
    the import waits until an :class:`AdapterDeformAttention` is built:
    ``import mmssm`` and the backbones without an adapter never load them.
    """
    from mmcv.ops.multi_scale_deform_attn import (
        MultiScaleDeformableAttnFunction as function,
        multi_scale_deformable_attn_pytorch as pytorch)
    return function, pytorch


def level_start_index(spatial_shapes: torch.Tensor) -> torch.Tensor:
    """Start of every level in a flattened multi-level sequence."""
    sizes = spatial_shapes.prod(1)
    return torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])


#: Level sizes ``(h, w)``: a ``(num_levels, 2)`` LongTensor or Python ints.
ShapesType = Union[torch.Tensor, Sequence[Tuple[int, int]]]
#: Level starts: a ``(num_levels,)`` LongTensor or Python ints.
StartsType = Union[torch.Tensor, Sequence[int]]


def _shape_list(spatial_shapes: ShapesType) -> List[Tuple[int, int]]:
    """``[(h, w), ...]`` as Python ints (a tensor is read once, eagerly)."""
    if isinstance(spatial_shapes, torch.Tensor):
        spatial_shapes = spatial_shapes.tolist()
    return [(h, w) for h, w in spatial_shapes]


class AdapterDeformAttention(BaseModule):
    """Multi-scale deformable attention without a residual (ViT-Adapter).

    Every query predicts, per head, level and point, an offset (in cells of
    that level, added to its reference point) and a weight (softmax over the
    ``num_levels * num_points`` samples of a head); the output is the weighted
    sum of the bilinearly sampled values (zero outside the maps,
    ``align_corners=False``), projected back to ``embed_dims``. Init as in
    Deformable DETR: offsets zero-weighted with biases pointing at ``1..P``
    cells along ``num_heads`` directions, uniform attention weights.

    Args:
        embed_dims (int): Query and input width ``C``.
        num_heads (int): Heads. Defaults to 6.
        num_levels (int): Levels of the input. Defaults to 1.
        num_points (int): Sampling points per head and level. Defaults to 4.
        value_ratio (float): Value width ``int(C * value_ratio)``, split over
            the heads (``deform_ratio`` of ViT-Adapter). Defaults to 1.0.
        im2col_step (int): Batch chunk of the CUDA kernel. Defaults to 64.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int = 6,
                 num_levels: int = 1,
                 num_points: int = 4,
                 value_ratio: float = 1.0,
                 im2col_step: int = 64,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        value_dims = int(embed_dims * value_ratio)
        if value_dims % num_heads:
            raise ValueError(
                f'AdapterDeformAttention: value width {value_dims} '
                f'(embed_dims {embed_dims} x value_ratio {value_ratio}) is '
                f'not divisible by num_heads {num_heads}')
        _deform_attn_ops()  # fail at build time when mmcv has no compiled ops
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points = num_points
        self.value_dims = value_dims
        self.im2col_step = im2col_step
        self.sampling_offsets = nn.Linear(
            embed_dims, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dims,
                                           num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dims, value_dims)
        self.output_proj = nn.Linear(value_dims, embed_dims)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Deformable-DETR init (kept by :meth:`init_weights`)."""
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.num_heads, dtype=torch.float32) * (
            2.0 * math.pi / self.num_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.num_heads, 1, 1, 2).repeat(
            1, self.num_levels, self.num_points, 1)
        grid *= torch.arange(1, self.num_points + 1,
                             dtype=torch.float32).view(1, 1, -1, 1)
        self.sampling_offsets.bias.copy_(grid.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, query: torch.Tensor, reference_points: torch.Tensor,
                feat: torch.Tensor, spatial_shapes: ShapesType,
                start_index: Optional[StartsType] = None) -> torch.Tensor:
        """Attend from ``query`` to the multi-level ``feat``.

        Args:
            query (torch.Tensor): ``(B, Lq, C)``.
            reference_points (torch.Tensor): ``(B or 1, Lq, 2)``, ``(x, y)``
                in ``[0, 1]`` of the whole map (the same point on every
                level).
            feat (torch.Tensor): ``(B, sum_l h_l * w_l, C)``, the levels
                flattened row-major and concatenated.
            spatial_shapes (torch.Tensor | Sequence[tuple[int, int]]):
                ``(h_l, w_l)`` per level, a ``(num_levels, 2)`` LongTensor or
                Python ints. Python ints keep the sizes out of tensor data, so
                ``torch.compile(fullgraph=True)`` traces the CPU path without a
                graph break (:meth:`PlainAdapter.deform_inputs` gives them).
            start_index (torch.Tensor | Sequence[int], optional):
                ``(num_levels,)`` level starts, used by the CUDA kernel only
                (computed from the shapes when None).

        Returns:
            torch.Tensor: ``(B, Lq, C)``, the attention output alone (no
            residual).
        """
        batch, num_query, _ = query.shape
        shapes = _shape_list(spatial_shapes)
        if len(shapes) != self.num_levels:
            raise ValueError(f'AdapterDeformAttention expects '
                             f'{self.num_levels} levels, got {len(shapes)}')
        num_value = sum(h * w for h, w in shapes)
        if feat.shape[1] != num_value:
            raise ValueError(f'feat has {feat.shape[1]} tokens but the '
                             f'spatial shapes {[list(s) for s in shapes]} '
                             f'give {num_value}')
        heads, levels, points = (self.num_heads, self.num_levels,
                                 self.num_points)
        value = self.value_proj(feat).view(batch, num_value, heads, -1)
        offsets = self.sampling_offsets(query).view(batch, num_query, heads,
                                                    levels, points, 2)
        weights = self.attention_weights(query).view(
            batch, num_query, heads, levels * points).softmax(-1).view(
                batch, num_query, heads, levels, points)
        # offsets are in cells of each level: normalise by (w_l, h_l)
        normalizer = torch.tensor([[w, h] for h, w in shapes],
                                  dtype=offsets.dtype,
                                  device=offsets.device)
        locations = (reference_points[:, :, None, None, None, :] +
                     offsets / normalizer[None, None, None, :, None, :])
        msda_function, msda_pytorch = _deform_attn_ops()
        if value.is_cuda:
            shape_tensor = torch.as_tensor(
                shapes, dtype=torch.long, device=value.device)
            if start_index is None:
                start_index = level_start_index(shape_tensor)
            start_index = torch.as_tensor(
                start_index, dtype=torch.long, device=value.device)
            out = msda_function.apply(
                value.float(), shape_tensor, start_index, locations.float(),
                weights.float(), self.im2col_step).to(value.dtype)
        else:
            # mmcv's PyTorch path only iterates over the (h, w) pairs
            out = msda_pytorch(value, shapes, locations, weights)
        return self.output_proj(out)


class SpatialPriorModule(BaseModule):
    """Convolutional spatial prior of ViT-Adapter: ``c1..c4``.

    A ResNet-like stem (conv3x3 s2, two conv3x3, each with norm and ReLU,
    then max-pool s2) gives ``c1`` at stride 4 (``inplanes`` channels); three
    conv3x3 s2 blocks give ``c2`` (``2 * inplanes``), ``c3`` and ``c4``
    (``4 * inplanes``) at strides 8/16/32; 1x1 convs (``fc1..fc4``) project
    each to ``embed_dims``. Output sizes are ``ceil(H / s)`` (exact strides
    for sides that are multiples of 32).

    Args:
        in_channels (int): Image channels. Defaults to 3.
        inplanes (int): Stem width (``conv_inplane``). Defaults to 64.
        embed_dims (int): Output width. Defaults to 384.
        norm_cfg (dict): Norm of the convs. Defaults to ``dict(type='BN')``
            (the reference uses SyncBN; the configs set it).
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int = 3,
                 inplanes: int = 64,
                 embed_dims: int = 384,
                 norm_cfg: dict = dict(type='BN'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)

        def conv_bn_relu(cin, cout, stride):
            return [
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                build_norm_layer(norm_cfg, cout)[1],
                nn.ReLU(inplace=True)
            ]

        self.stem = nn.Sequential(
            *conv_bn_relu(in_channels, inplanes, 2),
            *conv_bn_relu(inplanes, inplanes, 1),
            *conv_bn_relu(inplanes, inplanes, 1),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.conv2 = nn.Sequential(*conv_bn_relu(inplanes, 2 * inplanes, 2))
        self.conv3 = nn.Sequential(
            *conv_bn_relu(2 * inplanes, 4 * inplanes, 2))
        self.conv4 = nn.Sequential(
            *conv_bn_relu(4 * inplanes, 4 * inplanes, 2))
        self.fc1 = nn.Conv2d(inplanes, embed_dims, 1)
        self.fc2 = nn.Conv2d(2 * inplanes, embed_dims, 1)
        self.fc3 = nn.Conv2d(4 * inplanes, embed_dims, 1)
        self.fc4 = nn.Conv2d(4 * inplanes, embed_dims, 1)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Return ``[c1, c2, c3, c4]``, each ``(B, embed_dims, h_i, w_i)``."""
        c1 = self.stem(x)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        return [self.fc1(c1), self.fc2(c2), self.fc3(c3), self.fc4(c4)]


class ConvFFN(BaseModule):
    """FFN with a depthwise 3x3 conv on every level of a multi-level sequence.

    ``fc1 -> dwconv3x3 (per level, shared weights) -> GELU -> drop -> fc2 ->
    drop``.

    Args:
        in_features (int): Input and output width.
        hidden_features (int): Hidden width.
        drop (float): Dropout. Defaults to 0.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 in_features: int,
                 hidden_features: int,
                 drop: float = 0.,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.dwconv = nn.Conv2d(
            hidden_features,
            hidden_features,
            3,
            1,
            1,
            groups=hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor,
                shapes: Sequence[Tuple[int, int]]) -> torch.Tensor:
        """``x``: ``(B, sum h * w, C)`` with levels of sizes ``shapes``."""
        x = self.fc1(x)
        batch, _, channels = x.shape
        levels = []
        for level, (h, w) in zip(x.split([h * w for h, w in shapes], 1),
                                 shapes):
            level = level.transpose(1, 2).reshape(batch, channels, h, w)
            levels.append(self.dwconv(level).flatten(2).transpose(1, 2))
        x = self.drop(self.act(torch.cat(levels, 1)))
        return self.drop(self.fc2(x))


class _NormedDeformAttention(BaseModule):
    """What the injector and the extractor share: ``attn(LN(query),
    LN(feat))`` (modules ``query_norm``, ``feat_norm``, ``attn``) and the
    ``with_cp`` rule of mmssm
    (:func:`~mmssm.models.layers.backbone_utils.maybe_checkpoint`) around
    the subclass's ``_forward``."""

    def __init__(self, embed_dims: int, num_heads: int, num_points: int,
                 num_levels: int, value_ratio: float, norm_cfg: dict,
                 with_cp: bool, init_cfg: Optional[dict]) -> None:
        super().__init__(init_cfg=init_cfg)
        self.with_cp = with_cp
        self.query_norm = build_norm_layer(norm_cfg, embed_dims)[1]
        self.feat_norm = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = AdapterDeformAttention(embed_dims, num_heads, num_levels,
                                           num_points, value_ratio)

    def _attend(self, query, feat, reference_points, spatial_shapes,
                start_index) -> torch.Tensor:
        return self.attn(
            self.query_norm(query), reference_points, self.feat_norm(feat),
            spatial_shapes, start_index)

    def _checkpointed(self, *args) -> torch.Tensor:
        return maybe_checkpoint(self.with_cp, self.training, self._forward,
                                *args)


class Injector(_NormedDeformAttention):
    """ViT-Adapter injector: backbone tokens attend to the spatial prior.

    ``delta = gamma * attn(LN(tokens), LN(c))``, with ``gamma`` (per
    channel) initialised to ``init_values`` (0: the adapter starts as the
    identity on the backbone). Returns ``delta`` only; the caller adds it to
    the token stream.

    Args:
        embed_dims (int): Width.
        num_heads (int): Deformable attention heads. Defaults to 6.
        num_points (int): Sampling points. Defaults to 4.
        num_levels (int): Levels of ``c`` (``c2..c4``). Defaults to 3.
        value_ratio (float): ``deform_ratio``. Defaults to 1.0.
        init_values (float): Initial ``gamma``. Defaults to 0.
        norm_cfg (dict): Norm of query and features.
            Defaults to ``dict(type='LN', eps=1e-6)``.
        with_cp (bool): Gradient checkpointing. Defaults to False.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int = 6,
                 num_points: int = 4,
                 num_levels: int = 3,
                 value_ratio: float = 1.0,
                 init_values: float = 0.,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(embed_dims, num_heads, num_points, num_levels,
                         value_ratio, norm_cfg, with_cp, init_cfg)
        self.gamma = nn.Parameter(init_values * torch.ones(embed_dims))

    def _forward(self, query, feat, reference_points, spatial_shapes,
                 start_index):
        return self.gamma * self._attend(query, feat, reference_points,
                                         spatial_shapes, start_index)

    def forward(self, query: torch.Tensor, reference_points: torch.Tensor,
                feat: torch.Tensor, spatial_shapes: ShapesType,
                start_index: StartsType) -> torch.Tensor:
        """Return ``gamma * attn`` ``(B, Lq, C)`` (no residual)."""
        return self._checkpointed(query, feat, reference_points,
                                  spatial_shapes, start_index)


class Extractor(_NormedDeformAttention):
    """ViT-Adapter extractor: the spatial prior attends to the tokens.

    ``c = c + attn(LN(c), LN(tokens))``; then, with ``with_cffn``,
    ``c = c + drop_path(ConvFFN(LN(c)))`` with hidden width
    ``int(C * cffn_ratio)``.

    Args:
        embed_dims (int): Width.
        num_heads (int): Deformable attention heads. Defaults to 6.
        num_points (int): Sampling points. Defaults to 4.
        num_levels (int): Levels of the tokens (1). Defaults to 1.
        value_ratio (float): ``deform_ratio``. Defaults to 1.0.
        with_cffn (bool): Add the ConvFFN. Defaults to True.
        cffn_ratio (float): ConvFFN hidden ratio. Defaults to 0.25.
        drop (float): ConvFFN dropout. Defaults to 0.
        drop_path_rate (float): Stochastic depth of the ConvFFN.
            Defaults to 0.
        norm_cfg (dict): Norms. Defaults to ``dict(type='LN', eps=1e-6)``.
        with_cp (bool): Gradient checkpointing. Defaults to False.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int = 6,
                 num_points: int = 4,
                 num_levels: int = 1,
                 value_ratio: float = 1.0,
                 with_cffn: bool = True,
                 cffn_ratio: float = 0.25,
                 drop: float = 0.,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(embed_dims, num_heads, num_points, num_levels,
                         value_ratio, norm_cfg, with_cp, init_cfg)
        self.with_cffn = with_cffn
        if with_cffn:
            self.ffn = ConvFFN(embed_dims, int(embed_dims * cffn_ratio), drop)
            self.ffn_norm = build_norm_layer(norm_cfg, embed_dims)[1]
            self.drop_path = (
                DropPath(drop_path_rate)
                if drop_path_rate > 0 else nn.Identity())

    def _forward(self, query, feat, reference_points, spatial_shapes,
                 start_index, query_shapes):
        query = query + self._attend(query, feat, reference_points,
                                     spatial_shapes, start_index)
        if self.with_cffn:
            query = query + self.drop_path(
                self.ffn(self.ffn_norm(query), query_shapes))
        return query

    def forward(self, query: torch.Tensor, reference_points: torch.Tensor,
                feat: torch.Tensor, spatial_shapes: ShapesType,
                start_index: StartsType,
                query_shapes: Sequence[Tuple[int, int]]) -> torch.Tensor:
        """Update the multi-level ``query`` ``(B, sum h * w, C)`` whose
        levels have sizes ``query_shapes``."""
        return self._checkpointed(query, feat, reference_points,
                                  spatial_shapes, start_index, query_shapes)


class InteractionAdapterBlock(BaseModule):
    """One injector and one extractor (plus, for the last interaction of
    ViT-Adapter, two extra extractors) around a run of backbone layers.

    The backbone layers themselves run in the adapter backbone between
    :meth:`inject` and :meth:`extract`.

    Args:
        embed_dims (int): Width.
        init_values (float): Initial injector ``gamma``. Defaults to 0.
        extra_extractor (bool): Add two extra extractors. Defaults to False.
        init_cfg (dict, optional): Initialization config. Defaults to None.
        **kwargs: Arguments of :class:`Extractor` (``num_heads``,
            ``num_points``, ``value_ratio``, ``with_cffn``, ``cffn_ratio``,
            ``drop``, ``drop_path_rate``, ``norm_cfg``, ``with_cp``); the
            injector takes those it shares with it (``num_heads``,
            ``num_points``, ``value_ratio``, ``norm_cfg``, ``with_cp``).
    """

    #: Arguments the injector shares with the extractors.
    INJECTOR_KEYS = ('num_heads', 'num_points', 'value_ratio', 'norm_cfg',
                     'with_cp')

    def __init__(self,
                 embed_dims: int,
                 init_values: float = 0.,
                 extra_extractor: bool = False,
                 init_cfg: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(init_cfg=init_cfg)
        self.injector = Injector(
            embed_dims,
            num_levels=3,
            init_values=init_values,
            **{k: v
               for k, v in kwargs.items() if k in self.INJECTOR_KEYS})

        def extractor():
            return Extractor(embed_dims, num_levels=1, **kwargs)

        self.extractor = extractor()
        self.extra_extractors = (
            nn.Sequential(extractor(), extractor())
            if extra_extractor else None)

    def inject(self, tokens: torch.Tensor, c: torch.Tensor,
               deform_inputs: tuple) -> torch.Tensor:
        """``gamma * attn(tokens -> c2..c4)``; ``deform_inputs`` from
        :meth:`PlainAdapter.deform_inputs`."""
        reference_points, spatial_shapes, start_index = deform_inputs
        return self.injector(tokens, reference_points, c, spatial_shapes,
                             start_index)

    def extract(self, c: torch.Tensor, tokens: torch.Tensor,
                deform_inputs: tuple,
                c_shapes: Sequence[Tuple[int, int]]) -> torch.Tensor:
        """Update ``c`` from the tokens (extractor, then the extra ones)."""
        c = self.extractor(c, deform_inputs[0], tokens, *deform_inputs[1:],
                           c_shapes)
        if self.extra_extractors is not None:
            for extractor in self.extra_extractors:
                c = extractor(c, deform_inputs[0], tokens,
                              *deform_inputs[1:], c_shapes)
        return c
