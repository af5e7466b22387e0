"""2D selective scan mixers: VMamba's SS2D and GroupMamba's grouped VSSS.

Both mixers flatten an ``H x W`` feature map into a token sequence and run the
Mamba S6 selective scan over it in one or more of the four raster orders of
the grid (``row``: left-to-right rows, ``col``: top-to-bottom columns, and
their reverses). The orders are handed to the shared op
:func:`mmssm.ops.selective_scan` as ``order=[...]`` with ``grid=(H, W)``: the
op visits the tokens of each contiguous channel chunk in its own order and
returns every output in the row-major token order, so no transposed or flipped
copies of the feature map are made here and all directions run in ONE call.

* :class:`SS2D` is the "SS2D" block of VMamba (Liu et al., 2024, "VMamba:
  Visual State Space Model", ``forward_type='v2'``) with ``K`` directions:
  every channel is scanned ``K`` times, each direction with its own
  ``x_proj`` / ``dt_proj`` / ``A`` / ``D``, and the ``K`` outputs are summed.
  With one direction it is the "VSSS" block of GroupMamba.
* :class:`GroupedSS2D` is the grouped mixer of GroupMamba (Shaker et al.,
  2024, "GroupMamba: Parameter-Efficient and Accurate Group Visual State Space
  Model"): the channels are split in four groups, each scanned in ONE
  direction by its own single-direction :class:`SS2D`.

Parameter names and shapes follow the official code (MzeroMiko/VMamba and
Amshaker/GroupMamba ``ss2d.py``) so that official checkpoints load unchanged:
``in_proj``, ``conv2d``, ``x_proj_weight`` ``(K, R + 2N, d_inner)``,
``dt_projs_weight`` ``(K, d_inner, R)``, ``dt_projs_bias`` ``(K, d_inner)``,
``A_logs`` ``(K * d_inner, N)``, ``Ds`` ``(K * d_inner,)``, ``out_norm``,
``out_proj``.
"""
import math
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmssm.ops import selective_scan
from .ssm_init import a_log_init, dt_proj_init_

__all__ = ['SCAN_DIRECTIONS', 'SS2D', 'GroupedSS2D']

#: The four raster orders of a ``H x W`` grid, in GroupMamba's group order
#: (LR, TB, RL, BT) which is also VMamba's ``CrossScan`` order.
SCAN_DIRECTIONS = ('row', 'col', 'row_reverse', 'col_reverse')


def _check_directions(directions: Sequence[str]) -> Tuple[str, ...]:
    if isinstance(directions, str):
        directions = (directions, )
    directions = tuple(directions)
    if len(directions) == 0:
        raise ValueError('SS2D needs at least one scan direction')
    for d in directions:
        if d not in SCAN_DIRECTIONS:
            raise ValueError(f'unknown scan direction {d!r}; expected one of '
                             f'{SCAN_DIRECTIONS}')
    return directions


class SS2D(BaseModule):
    """2D selective scan block of VMamba (SS2D) with ``K`` scan directions.

    ``in_proj`` (-> x, z) -> depthwise ``d_conv x d_conv`` conv -> SiLU ->
    selective scan of every channel in each of the ``K`` directions (its own
    ``x_proj``, ``dt_proj``, ``A`` and ``D`` per direction) -> sum of the ``K``
    outputs -> ``out_norm`` (LayerNorm) -> ``* SiLU(z)`` -> ``out_proj``.

    This follows the official ``SS2Dv2.forwardv2`` / ``forward_corev2`` of
    VMamba as simplified in GroupMamba, which differs from the generic Mamba
    mixer in these points: the z gate is applied AFTER the output LayerNorm
    (not inside the scan), the depthwise conv is a 2D conv with bias and
    "same" padding, ``dt_rank = ceil(embed_dims / 16)`` (of the block's INPUT
    width), ``D`` is initialised to ones, ``delta_softplus=True`` with the
    ``dt_projs_bias`` as ``delta_bias``, the scan inputs are cast to fp32
    (``force_fp32``), and ``in_proj``/``out_proj`` have no bias.

    Args:
        embed_dims (int): Input and output channels ``C``.
        d_state (int): SSM state size ``N``. Defaults to 1 (GroupMamba).
        ssm_ratio (float): Expansion ``d_inner = int(ssm_ratio * C)``.
            Defaults to 1.0.
        dt_rank (int | str): Rank ``R`` of the step-size projection;
            ``'auto'`` gives ``ceil(C / 16)``. Defaults to 'auto'.
        d_conv (int): Kernel size of the depthwise conv; < 2 disables it.
            Defaults to 3.
        conv_bias (bool): Whether the depthwise conv has a bias.
            Defaults to True.
        bias (bool): Whether ``in_proj`` and ``out_proj`` have a bias.
            Defaults to False.
        directions (Sequence[str]): Scan orders, each one of
            :data:`SCAN_DIRECTIONS`. Defaults to all four (VMamba).
        dt_min (float): Smallest initial step size. Defaults to 1e-3.
        dt_max (float): Largest initial step size. Defaults to 1e-1.
        dt_init_floor (float): Floor of the initial step size.
            Defaults to 1e-4.
        scan_impl (str, optional): ``impl`` passed to
            :func:`mmssm.ops.selective_scan` (None: automatic dispatch,
            ``'ref'``: the plain reference). Defaults to None.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 d_state: int = 1,
                 ssm_ratio: float = 1.0,
                 dt_rank: Union[int, str] = 'auto',
                 d_conv: int = 3,
                 conv_bias: bool = True,
                 bias: bool = False,
                 directions: Sequence[str] = SCAN_DIRECTIONS,
                 dt_min: float = 1e-3,
                 dt_max: float = 1e-1,
                 dt_init_floor: float = 1e-4,
                 scan_impl: Optional[str] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.directions = _check_directions(directions)
        self.embed_dims = embed_dims
        self.d_state = d_state
        self.d_inner = int(ssm_ratio * embed_dims)
        self.dt_rank = (
            math.ceil(embed_dims / 16) if dt_rank == 'auto' else int(dt_rank))
        self.scan_impl = scan_impl
        num_dirs = len(self.directions)
        d_inner, rank = self.d_inner, self.dt_rank

        self.in_proj = nn.Linear(embed_dims, 2 * d_inner, bias=bias)
        self.act = nn.SiLU()
        self.with_conv = d_conv > 1
        if self.with_conv:
            self.conv2d = nn.Conv2d(
                d_inner,
                d_inner,
                kernel_size=d_conv,
                padding=(d_conv - 1) // 2,
                groups=d_inner,
                bias=conv_bias)
        self.x_proj_weight = nn.Parameter(
            torch.empty(num_dirs, rank + 2 * d_state, d_inner))
        self.dt_projs_weight = nn.Parameter(
            torch.empty(num_dirs, d_inner, rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(num_dirs, d_inner))
        self.A_logs = nn.Parameter(a_log_init(num_dirs * d_inner, d_state))
        self.Ds = nn.Parameter(torch.ones(num_dirs * d_inner))
        for name in ('A_logs', 'Ds'):
            getattr(self, name)._no_weight_decay = True
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, embed_dims, bias=bias)
        self._dt_init = dict(
            dt_min=dt_min, dt_max=dt_max, dt_init_floor=dt_init_floor)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """(Re)initialise the S6 parameters as the official ``'v0'`` init.

        ``x_proj_weight`` gets the default ``nn.Linear`` init, ``dt_projs``
        the Mamba step-size init (:func:`dt_proj_init_`), ``A_logs`` the
        S4D-real init (:func:`a_log_init`) and ``Ds`` ones.
        """
        for k in range(len(self.directions)):
            x_proj = nn.Linear(self.d_inner, self.x_proj_weight.shape[1],
                               bias=False)
            self.x_proj_weight[k].copy_(x_proj.weight)
            dt_proj = nn.Linear(self.dt_rank, self.d_inner)
            dt_proj_init_(dt_proj, self.dt_rank, **self._dt_init)
            self.dt_projs_weight[k].copy_(dt_proj.weight)
            self.dt_projs_bias[k].copy_(dt_proj.bias)
        self.A_logs.copy_(
            a_log_init(len(self.directions) * self.d_inner, self.d_state))
        self.Ds.fill_(1.0)

    @property
    def num_directions(self) -> int:
        return len(self.directions)

    def project_in(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Input projection, depthwise conv and activations.

        Args:
            x (Tensor): ``(B, H, W, C)`` channels-last input.

        Returns:
            tuple[Tensor, Tensor]: the scan input ``(B, d_inner, H, W)`` and
            the gate ``SiLU(z)`` ``(B, H, W, d_inner)``.
        """
        if x.dim() != 4 or x.shape[-1] != self.embed_dims:
            raise ValueError(f'{type(self).__name__} expects a (B, H, W, '
                             f'{self.embed_dims}) input, got '
                             f'{tuple(x.shape)}')
        x, z = self.in_proj(x).chunk(2, dim=-1)
        z = self.act(z)
        x = x.permute(0, 3, 1, 2).contiguous()
        if self.with_conv:
            x = self.conv2d(x)
        return self.act(x), z

    def scan_inputs(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Selective-scan arguments of the ``K`` directions, row-major tokens.

        The per-token projections commute with any permutation of the tokens,
        so ``delta``, ``B`` and ``C`` are computed in row-major order and the
        op applies each direction's order to them.

        Args:
            x (Tensor): ``(B, d_inner, H, W)`` output of :meth:`project_in`.

        Returns:
            dict: ``u`` and ``delta`` ``(B, K * d_inner, L)`` (``u`` repeats
            the channels once per direction), ``A`` ``(K * d_inner, N)``,
            ``B`` and ``C`` ``(B, K, N, L)`` (one group per direction), ``D``
            and ``delta_bias`` ``(K * d_inner,)``, all fp32.
        """
        batch, d_inner, height, width = x.shape
        length = height * width
        num_dirs, rank, state = self.num_directions, self.dt_rank, self.d_state
        u = x.flatten(2)
        x_dbl = torch.einsum('bdl,kcd->bkcl', u, self.x_proj_weight)
        dts, Bs, Cs = torch.split(x_dbl, [rank, state, state], dim=2)
        dts = torch.einsum('bkrl,kdr->bkdl', dts, self.dt_projs_weight)
        if num_dirs > 1:
            u = u.unsqueeze(1).expand(batch, num_dirs, d_inner, length)
        return dict(
            u=u.reshape(batch, num_dirs * d_inner, length).float(),
            delta=dts.reshape(batch, num_dirs * d_inner, length).float(),
            A=-torch.exp(self.A_logs.float()),
            B=Bs.float().contiguous(),
            C=Cs.float().contiguous(),
            D=self.Ds.float(),
            delta_bias=self.dt_projs_bias.reshape(-1).float())

    def project_out(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Output LayerNorm, z gate and output projection.

        Args:
            y (Tensor): ``(B, d_inner, L)`` merged scan output, row-major.
            z (Tensor): ``(B, H, W, d_inner)`` gate from :meth:`project_in`.

        Returns:
            Tensor: ``(B, H, W, C)``.
        """
        batch, height, width, d_inner = z.shape
        y = y.transpose(1, 2).reshape(batch, height, width, d_inner)
        y = self.out_norm(y).to(z.dtype)
        return self.out_proj(y * z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forward.

        Args:
            x (Tensor): ``(B, H, W, C)`` channels-last input.

        Returns:
            Tensor: ``(B, H, W, C)``.
        """
        batch, height, width, _ = x.shape
        x, z = self.project_in(x)
        y = selective_scan(
            **self.scan_inputs(x),
            delta_softplus=True,
            order=list(self.directions),
            grid=(height, width),
            impl=self.scan_impl)
        y = y.view(batch, self.num_directions, self.d_inner, -1).sum(dim=1)
        return self.project_out(y, z)


class GroupedSS2D(BaseModule):
    """Grouped single-direction scans of GroupMamba (its four VSSS blocks).

    The ``C`` input channels are split in ``G = len(directions)`` equal
    groups; group ``g`` goes through its own single-direction :class:`SS2D`
    (``branches[g]``, the official ``mamba_g{g+1}``) scanning in
    ``directions[g]``, and the outputs are concatenated. The projections run
    per group, but the four scans are ONE call of the shared op: the groups'
    channels are concatenated and ``order`` lists one direction per channel
    chunk, with ``B``/``C`` grouped ``(B, G, N, L)``.

    Args:
        embed_dims (int): Channels ``C`` (divisible by the number of groups).
        directions (Sequence[str]): One scan order per group. Defaults to
            GroupMamba's LR, TB, RL, BT.
        scan_impl (str, optional): ``impl`` of the scan op. Defaults to None.
        init_cfg (dict, optional): Initialization config. Defaults to None.
        **ss2d_kwargs: Other arguments of each group's :class:`SS2D`
            (``d_state``, ``ssm_ratio``, ``d_conv``, ...).
    """

    def __init__(self,
                 embed_dims: int,
                 directions: Sequence[str] = SCAN_DIRECTIONS,
                 scan_impl: Optional[str] = None,
                 init_cfg: Optional[dict] = None,
                 **ss2d_kwargs):
        super().__init__(init_cfg=init_cfg)
        self.directions = _check_directions(directions)
        num_groups = len(self.directions)
        if embed_dims % num_groups != 0:
            raise ValueError(f'GroupedSS2D: embed_dims={embed_dims} is not '
                             f'divisible by {num_groups} groups')
        self.embed_dims = embed_dims
        self.scan_impl = scan_impl
        self.branches = nn.ModuleList([
            SS2D(embed_dims // num_groups, directions=(d, ), **ss2d_kwargs)
            for d in self.directions
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forward.

        Args:
            x (Tensor): ``(B, H, W, C)`` channels-last input.

        Returns:
            Tensor: ``(B, H, W, C)``, the groups' outputs concatenated.
        """
        if x.dim() != 4 or x.shape[-1] != self.embed_dims:
            raise ValueError(f'GroupedSS2D expects a (B, H, W, '
                             f'{self.embed_dims}) input, got '
                             f'{tuple(x.shape)}')
        height, width = x.shape[1:3]
        gates, args = [], []
        for branch, xg in zip(self.branches, x.chunk(len(self.branches), -1)):
            xg, z = branch.project_in(xg)
            gates.append(z)
            args.append(branch.scan_inputs(xg))
        # Channels of group g are the g-th contiguous chunk: it is scanned
        # in directions[g] and uses B/C group g.
        merged = {
            key: torch.cat([a[key] for a in args],
                           dim=0 if key in ('A', 'D', 'delta_bias') else 1)
            for key in args[0]
        }
        y = selective_scan(
            **merged,
            delta_softplus=True,
            order=list(self.directions),
            grid=(height, width),
            impl=self.scan_impl)
        ys = y.split([b.d_inner for b in self.branches], dim=1)
        return torch.cat(
            [b.project_out(yg, z) for b, yg, z in zip(self.branches, ys, gates)],
            dim=-1)
