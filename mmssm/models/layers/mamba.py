"""Mamba (S6) token mixers for plain (non-hierarchical) vision backbones.

* :class:`MambaMixer` is the selective state-space block of Mamba (Gu & Dao,
  2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces"):
  ``in_proj`` (gives ``x`` and the gate ``z``) -> causal depthwise ``conv1d`` +
  SiLU -> ``x_proj`` (input-dependent ``dt``, ``B``, ``C``) -> ``dt_proj`` ->
  selective scan with ``A = -exp(A_log)``, skip ``D`` and gate ``silu(z)`` ->
  ``out_proj``. It scans the tokens in one direction.
* :class:`BiMambaMixer` is the bidirectional mixer of Vim (Zhu et al., 2024,
  "Vision Mamba: Efficient Visual Representation Learning with Bidirectional
  State Space Model"), the "bimamba v2" of the official code: ``in_proj`` and
  ``out_proj`` are shared, the backward direction has its own ``conv1d_b``,
  ``x_proj_b``, ``dt_proj_b``, ``A_b_log`` and ``D_b``, each direction gates
  its own output with ``silu(z)``, and the output is
  ``out_proj((y_fwd + y_bwd) / 2)``.

Both directions go through :func:`mmssm.ops.selective_scan` in ONE call: the
channels of the two directions are concatenated and the op is told to visit
the first half forward and the second half in reverse (``order=['forward',
'reverse']``), returning both in the original token order. The backward
branch of the official code runs the causal conv on the flipped sequence and
flips the result back; here that is computed as the equivalent anti-causal
conv on the original order (zero padding on the right, kernel taps reversed),
so no flipped copy of the sequence is ever made, only of the 4-tap kernel.

On CUDA the mixers take a copy-free layout (:meth:`MambaMixer._forward_fused`):
``in_proj``'s ``(B, L, 2 * d_inner)`` output is split into views, the convs of
all directions + SiLU are ONE fused Triton kernel
(:func:`mmssm.ops.conv1d_triton.causal_conv1d_silu`) that reads the ``x``
view in place and writes every direction's ``u`` into one
``(B, K * d_inner, L)`` tensor, ``x_proj`` and ``dt_proj`` of all directions
are batched matmuls with stacked weights writing ``(B, K, ., L)`` outputs
(``delta`` is ``(B, K * d_inner, L)`` without a concatenation), and the gate
``z`` goes to the scan unrepeated (``(B, d_inner, L)``, shared by the
directions). No ``torch.cat``/``repeat``/``contiguous`` of a full
activation is made; only the small ``B``/``C`` ``(B, K, N, L)`` and the
stacked parameters are copied. The CPU path is unchanged (the fused numba
inference path, or the per-direction path below for training).

Parameter names and shapes follow the official Vim checkpoints
(``mixer.{in_proj,conv1d,conv1d_b,x_proj,x_proj_b,dt_proj,dt_proj_b}``,
``mixer.{out_proj,A_log,A_b_log,D,D_b}``), so they load unchanged.
"""
import math
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmssm.ops import selective_scan
from mmssm.ops.conv1d_triton import causal_conv1d, causal_conv1d_silu
from mmssm.ops.cpu_threads import parallel_linear
from mmssm.ops.mixer_cpu import (fast_path_enabled, mamba_mixer_cpu_inference,
                                  prepare_mixer_weights)
from .ssm_init import a_log_init, dt_proj_init_

__all__ = ['MambaMixer', 'BiMambaMixer', 'causal_conv1d']


class MambaMixer(BaseModule):
    """Single-direction Mamba (S6) mixer for ``(B, L, C)`` token sequences.

    Args:
        embed_dims (int): Token width ``C``.
        d_state (int): SSM state size ``N``. Defaults to 16.
        d_conv (int): Kernel size of the depthwise conv. Defaults to 4.
        expand (float): ``d_inner = int(expand * embed_dims)``. Defaults to 2.
        dt_rank (int | str): Rank ``R`` of the ``dt`` projection; ``'auto'``
            means ``ceil(embed_dims / 16)``. Defaults to ``'auto'``.
        dt_min (float): Smallest initial step size. Defaults to 1e-3.
        dt_max (float): Largest initial step size. Defaults to 1e-1.
        dt_init_floor (float): Floor of the initial step. Defaults to 1e-4.
        dt_scale (float): Scale of the ``dt_proj`` weight init.
            Defaults to 1.0.
        dt_init (str): ``'random'`` or ``'constant'``. Defaults to
            ``'random'``.
        conv_bias (bool): Bias in the depthwise conv. Defaults to True.
        bias (bool): Bias in ``in_proj`` and ``out_proj``. Defaults to False.
        scan_impl (str, optional): ``impl`` passed to
            :func:`mmssm.ops.selective_scan` (``None`` picks the fastest for
            the device). Defaults to None.
        init_cfg (dict, optional): Initialization config. Defaults to None.

    Attributes:
        fused_path (bool | None): Use the copy-free layout of
            :meth:`_forward_fused` (fused conv kernel, batched projections,
            unrepeated gate). ``None`` (default): for CUDA tensors, except
            under ``torch.jit.trace``; ``True``/``False`` force it on/off
            (on CPU tensors it then runs with the torch conv, or the Triton
            one under ``TRITON_INTERPRET=1`` with ``conv_impl='triton'``;
            how the tests compare it with the per-direction path).
        conv_impl (str | None): ``impl`` of
            :func:`mmssm.ops.conv1d_triton.causal_conv1d_silu` on the fused
            path (``None``: Triton for CUDA tensors when triton is installed,
            else torch).
    """

    #: Scan orders of the directions, in channel-chunk order.
    directions: Tuple[str, ...] = ('forward', )
    fused_path: Optional[bool] = None
    conv_impl: Optional[str] = None

    def __init__(self,
                 embed_dims: int,
                 d_state: int = 16,
                 d_conv: int = 4,
                 expand: float = 2,
                 dt_rank: Union[int, str] = 'auto',
                 dt_min: float = 1e-3,
                 dt_max: float = 1e-1,
                 dt_init_floor: float = 1e-4,
                 dt_scale: float = 1.0,
                 dt_init: str = 'random',
                 conv_bias: bool = True,
                 bias: bool = False,
                 scan_impl: Optional[str] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.embed_dims = embed_dims
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = int(expand * embed_dims)
        if dt_rank == 'auto':
            dt_rank = math.ceil(embed_dims / 16)
        if not isinstance(dt_rank, int) or dt_rank < 1:
            raise ValueError(
                f"dt_rank must be a positive int or 'auto', got {dt_rank!r}")
        self.dt_rank = dt_rank
        self.scan_impl = scan_impl
        self._dt_init = dict(
            dt_min=dt_min,
            dt_max=dt_max,
            dt_init_floor=dt_init_floor,
            dt_scale=dt_scale,
            dt_init=dt_init)

        self.in_proj = nn.Linear(embed_dims, 2 * self.d_inner, bias=bias)
        for direction in self.directions:
            self._build_direction(self._suffix(direction), conv_bias)
        self.out_proj = nn.Linear(self.d_inner, embed_dims, bias=bias)

    @staticmethod
    def _suffix(direction: str) -> str:
        return '' if direction == 'forward' else '_b'

    def _build_direction(self, suffix: str, conv_bias: bool) -> None:
        """Create the per-direction parameters named with ``suffix``."""
        conv = nn.Conv1d(
            self.d_inner,
            self.d_inner,
            kernel_size=self.d_conv,
            groups=self.d_inner,
            bias=conv_bias)  # padded by causal_conv1d
        x_proj = nn.Linear(
            self.d_inner, self.dt_rank + 2 * self.d_state, bias=False)
        dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        dt_proj_init_(dt_proj, self.dt_rank, **self._dt_init)
        a_log = nn.Parameter(a_log_init(self.d_inner, self.d_state))
        d_skip = nn.Parameter(torch.ones(self.d_inner))
        a_log._no_weight_decay = True
        d_skip._no_weight_decay = True
        setattr(self, f'conv1d{suffix}', conv)
        setattr(self, f'x_proj{suffix}', x_proj)
        setattr(self, f'dt_proj{suffix}', dt_proj)
        # official names: A_log / A_b_log, D / D_b
        setattr(self, f'A{suffix}_log', a_log)
        setattr(self, f'D{suffix}', d_skip)

    def _scan_inputs(self, x: torch.Tensor, suffix: str, reverse: bool):
        """conv1d -> SiLU -> x_proj -> dt_proj for one direction.

        Args:
            x (torch.Tensor): ``(B, d_inner, L)``, in the original order.
            suffix (str): Parameter suffix of the direction.
            reverse (bool): Whether the direction scans backwards.

        Returns:
            tuple: ``u`` and ``delta`` ``(B, d_inner, L)``, ``B`` and ``C``
            ``(B, N, L)``, all in the original token order.
        """
        conv = getattr(self, f'conv1d{suffix}')
        u = F.silu(causal_conv1d(x, conv.weight, conv.bias, reverse=reverse))
        x_dbl = F.linear(u.transpose(1, 2), getattr(self, f'x_proj{suffix}')
                         .weight)  # (B, L, R + 2N)
        dt, b, c = torch.split(
            x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        # the dt_proj bias is the scan's delta_bias (added in fp32 there)
        delta = F.linear(dt, getattr(self, f'dt_proj{suffix}').weight)
        return (u, delta.transpose(1, 2), b.transpose(1, 2),
                c.transpose(1, 2))

    def _ssm_params(self, suffix: str):
        """``A``, ``D`` and ``delta_bias`` of one direction, in fp32."""
        A = -torch.exp(getattr(self, f'A{suffix}_log').float())
        D = getattr(self, f'D{suffix}').float()
        delta_bias = getattr(self, f'dt_proj{suffix}').bias.float()
        return A, D, delta_bias

    def _combine(self, y: torch.Tensor) -> torch.Tensor:
        """Merge the per-direction outputs ``(B, K * d_inner, L)``."""
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix a token sequence.

        Args:
            x (torch.Tensor): Tokens ``(B, L, embed_dims)``.

        Returns:
            torch.Tensor: ``(B, L, embed_dims)``.
        """
        if x.dim() != 3 or x.shape[-1] != self.embed_dims:
            raise ValueError(
                f'{self.__class__.__name__} expects (B, L, {self.embed_dims})'
                f' tokens, got shape {tuple(x.shape)}')
        if self.directions in (('forward', ), ('forward', 'reverse')) and \
                fast_path_enabled(x, self.scan_impl):
            return self._forward_cpu_inference(x)
        if self._use_fused_path(x):
            return self._forward_fused(x)
        xz = self.in_proj(x).transpose(1, 2)  # (B, 2 * d_inner, L)
        x, z = xz.chunk(2, dim=1)
        us, deltas, bs, cs, As, Ds, biases = [], [], [], [], [], [], []
        for direction in self.directions:
            suffix = self._suffix(direction)
            u, delta, b, c = self._scan_inputs(
                x, suffix, reverse=direction == 'reverse')
            A, D, delta_bias = self._ssm_params(suffix)
            for store, value in zip((us, deltas, bs, cs, As, Ds, biases),
                                    (u, delta, b, c, A, D, delta_bias)):
                store.append(value)
        k = len(self.directions)
        if k == 1:
            y = selective_scan(
                us[0], deltas[0], As[0], bs[0], cs[0], Ds[0], z=z,
                delta_bias=biases[0], delta_softplus=True,
                order=self.directions[0], impl=self.scan_impl)
        else:
            # one call: direction i owns channel chunk i and B/C group i
            y = selective_scan(
                torch.cat(us, dim=1), torch.cat(deltas, dim=1),
                torch.cat(As, dim=0), torch.stack(bs, dim=1),
                torch.stack(cs, dim=1), torch.cat(Ds, dim=0),
                z=z.repeat(1, k, 1), delta_bias=torch.cat(biases, dim=0),
                delta_softplus=True, order=list(self.directions),
                impl=self.scan_impl)
        y = self._combine(y)
        return self.out_proj(y.transpose(1, 2))

    def _use_fused_path(self, x: torch.Tensor) -> bool:
        """Whether :meth:`forward` takes :meth:`_forward_fused` (see
        ``fused_path``)."""
        if self.fused_path is None:
            return x.is_cuda and not torch.jit.is_tracing()
        return bool(self.fused_path)

    def _stacked(self, name: str) -> torch.Tensor:
        """The ``weight`` of module ``name`` of every direction, stacked
        ``(K, out, in)`` (a view for one direction)."""
        weights = [
            getattr(self, f'{name}{self._suffix(d)}').weight
            for d in self.directions
        ]
        return weights[0][None] if len(weights) == 1 else torch.stack(weights)

    def _forward_fused(self, x: torch.Tensor) -> torch.Tensor:
        """The copy-free layout (the CUDA training and inference path).

        Same math as the per-direction path of :meth:`forward`; the
        activations are laid out for the scan as they are produced:

        * ``x`` and ``z`` are ``(B, L, d_inner)`` views of ``in_proj``'s
          output (``z`` goes to the scan transposed, unrepeated: the scan
          shares a ``(B, d_inner, L)`` gate between the directions);
        * one fused conv + SiLU (:func:`causal_conv1d_silu`) reads ``x`` in
          place and writes ``u`` ``(B, K * d_inner, L)``, direction ``k`` in
          channel chunk ``k``;
        * ``x_proj`` and ``dt_proj`` of all directions are batched matmuls
          (stacked weights ``(K, out, in)``, batch ``(B, K)``) giving
          ``(B, K, R + 2N, L)`` and ``delta`` ``(B, K, d_inner, L)``, i.e.
          ``(B, K * d_inner, L)`` as a view; ``B``/``C`` are
          ``(B, K, N, L)`` views (the scan makes these small ones
          contiguous).
        """
        k = len(self.directions)
        batch, length, _ = x.shape
        x_in, z = self.in_proj(x).chunk(2, dim=-1)  # (B, L, d_inner) views
        convs = [getattr(self, f'conv1d{self._suffix(d)}')
                 for d in self.directions]
        u = causal_conv1d_silu(
            x_in.transpose(1, 2), [c.weight for c in convs],
            [c.bias for c in convs],
            [d == 'reverse' for d in self.directions],
            impl=self.conv_impl)  # (B, K * d_inner, L)
        x_dbl = torch.matmul(
            self._stacked('x_proj'), u.view(batch, k, self.d_inner, length))
        dt, b, c = torch.split(
            x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=2)
        # the dt_proj bias is the scan's delta_bias (added in fp32 there)
        delta = torch.matmul(self._stacked('dt_proj'), dt)
        params = [self._ssm_params(self._suffix(d)) for d in self.directions]
        A, D, delta_bias = (p[0] if k == 1 else torch.cat(p, dim=0)
                            for p in zip(*params))
        y = selective_scan(
            u, delta.view(batch, k * self.d_inner, length), A, b, c, D,
            z=z.transpose(1, 2), delta_bias=delta_bias, delta_softplus=True,
            order=self.directions[0] if k == 1 else list(self.directions),
            impl=self.scan_impl)
        y = self._combine(y)
        return self.out_proj(y.transpose(1, 2))

    def _output_scale(self) -> float:
        """Scale of the summed directions (see :meth:`_combine`)."""
        return 1.0

    def _forward_cpu_inference(self, x: torch.Tensor) -> torch.Tensor:
        """The fused CPU inference path (:mod:`mmssm.ops.mixer_cpu`).

        Same result as the training path to float32 round-off, without
        autograd, transposed copies of the activations or a repeated ``z``.
        The kernels' copies of the small parameters are cached and rebuilt
        when a parameter changes (its version counter or storage).
        """
        sfx = [self._suffix(d) for d in self.directions]
        params = [
            p for s in sfx for p in (
                getattr(self, f'conv1d{s}').weight,
                getattr(self, f'conv1d{s}').bias,
                getattr(self, f'dt_proj{s}').weight,
                getattr(self, f'dt_proj{s}').bias,
                getattr(self, f'A{s}_log'), getattr(self, f'D{s}'))
        ]
        key = tuple((p.data_ptr(), p._version) if p is not None else None
                    for p in params)
        cache = getattr(self, '_cpu_weights', None)
        if cache is None or cache[0] != key:
            weights = prepare_mixer_weights(
                params[0::6], params[1::6], params[2::6], params[3::6],
                params[4::6], params[5::6])
            cache = (key, weights)
            self._cpu_weights = cache
        y = mamba_mixer_cpu_inference(
            x, self.in_proj.weight, self.in_proj.bias, cache[1],
            [getattr(self, f'x_proj{s}').weight for s in sfx],
            scale=self._output_scale())
        return parallel_linear(y, self.out_proj.weight, self.out_proj.bias)

    def extra_repr(self) -> str:
        return (f'embed_dims={self.embed_dims}, d_inner={self.d_inner}, '
                f'd_state={self.d_state}, dt_rank={self.dt_rank}, '
                f'directions={self.directions}')


class BiMambaMixer(MambaMixer):
    """Bidirectional Mamba mixer of Vim ("bimamba v2").

    ``out_proj((silu(z) * y_fwd + silu(z) * y_bwd) / 2)`` where ``y_bwd`` is
    the Mamba branch run on the reversed token sequence (its own
    ``conv1d_b``, ``x_proj_b``, ``dt_proj_b``, ``A_b_log``, ``D_b``) and
    returned in the original order. See the module docstring for how the
    reversal is done without copies.

    Note:
        The official Vim code leaves ``dt_proj_b`` at PyTorch's default
        ``nn.Linear`` init and then zeroes its bias; here both directions get
        Mamba's ``dt`` init (:func:`dt_proj_init_`). This changes only the
        random initialization, not the forward math, so official checkpoints
        give the same numbers.

    Args:
        embed_dims (int): Token width ``C``.
        divide_out (bool): Average (``True``, Vim and Mamba-Reg) or sum
            (``False``, VideoMamba) the two directions. Defaults to True.
        **kwargs: The other arguments of :class:`MambaMixer`.
    """

    directions = ('forward', 'reverse')

    def __init__(self, embed_dims: int, divide_out: bool = True,
                 **kwargs) -> None:
        super().__init__(embed_dims, **kwargs)
        self.divide_out = divide_out

    def _output_scale(self) -> float:
        return 0.5 if self.divide_out else 1.0

    def _combine(self, y: torch.Tensor) -> torch.Tensor:
        y_fwd, y_bwd = y.chunk(2, dim=1)
        y = y_fwd + y_bwd
        return y / 2 if self.divide_out else y
