"""The selective scan (Mamba S6) of mmssm: one public op for every backbone.

The recurrence is the one of Mamba (Gu & Dao, "Mamba: Linear-Time Sequence
Modeling with Selective State Spaces", 2023), per batch ``b``, channel ``d`` and
state ``n``::

    delta = softplus(delta + delta_bias)            # when delta_softplus
    h_t[d, n] = exp(delta_t[d] * A[d, n]) * h_{t-1}[d, n]
                + delta_t[d] * B_t[g(d), n] * u_t[d]
    y_t[d] = sum_n C_t[g(d), n] * h_t[d, n] + D[d] * u_t[d]
    y = y * silu(z)                                 # when z is given

where ``g(d) = d // (D // G)`` is the group of channel ``d`` when ``B`` and ``C``
are grouped. The call signature and the semantics are those of
``selective_scan_ref`` of the ``mamba-ssm`` package, so code written for it runs
unchanged; on top of it the op takes the order in which the tokens are visited
(forward, reverse, the column-major orders of a ``H x W`` grid, any permutation,
and one order per contiguous chunk of channels), which is what the vision
backbones (Vim, GroupMamba, VMamba-like) need, without copying the permuted
inputs and with the output always in the original token order.

Three implementations share the argument checks of this module:

* ``'ref'``: :func:`selective_scan_ref`, a plain loop over the sequence with
  autograd; readable, slow, memory ``O(B * D * L * N)``. Tests and benchmarks
  compare against it.
* ``'cpu'``: :mod:`mmssm.ops.scan_cpu`, an ``autograd.Function`` with an
  explicit backward and bounded memory (numba kernels, or a pure-torch
  fallback), used for CPU tensors; it reads the tokens through the order
  index, no permuted copies.
* ``'triton'``: :mod:`mmssm.kernels.selective_scan`, the Triton forward and
  backward kernels (index loads, no permuted copies), used for CUDA tensors.

The checks of non-finite ``A``/``D``/``delta_bias`` and of tensor orders read
values, i.e. synchronise a CUDA stream once per call; named orders are built
and checked once and cached per (orders, L, D, grid, device).
"""
import functools
import os
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    'selective_scan', 'selective_scan_ref', 'resolve_scan_order',
    'run_scan_function', 'SCAN_ORDERS', 'SCAN_IMPLS'
]

#: Names accepted by ``order`` (``'col'`` and ``'col_reverse'`` need ``grid``).
SCAN_ORDERS = ('forward', 'reverse', 'row', 'row_reverse', 'col',
               'col_reverse')
#: Names accepted by ``impl`` (``None`` means ``'auto'``).
SCAN_IMPLS = ('auto', 'ref', 'cpu', 'triton')
#: Environment variable that overrides ``impl='auto'`` (for debugging).
IMPL_ENV = 'MMSSM_SCAN_IMPL'

_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)

OrderType = Union[None, str, Tensor, Sequence[Union[str, Tensor]]]


def _is_scripting() -> bool:
    """Whether the op is being traced or compiled (skip data-dependent checks)."""
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return True
    compiler = getattr(torch, 'compiler', None)
    return bool(compiler is not None and compiler.is_compiling())


def _check_tensor(name: str, x, ndim: Tuple[int, ...]) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f'selective_scan: `{name}` must be a torch.Tensor, '
                        f'got {type(x).__name__}')
    if x.is_complex():
        raise TypeError(f'selective_scan: `{name}` must be real, got '
                        f'{x.dtype} (complex A/B/C are not supported)')
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(f'selective_scan: `{name}` must be a floating tensor '
                        f'(float32, float16, bfloat16 or float64), got '
                        f'{x.dtype}')
    if x.dim() not in ndim:
        want = ' or '.join(f'{n}-D' for n in ndim)
        raise ValueError(f'selective_scan: `{name}` must be {want}, got shape '
                         f'{tuple(x.shape)}')


def _check_inputs(u, delta, A, B, C, D, z, delta_bias) -> int:
    """Check shapes, dtypes and devices; return the number of groups G."""
    _check_tensor('u', u, (3, ))
    batch, dim, length = u.shape
    if length == 0 or dim == 0 or batch == 0:
        raise ValueError('selective_scan: `u` must be non-empty (B, D, L), '
                         f'got shape {tuple(u.shape)}')
    _check_tensor('delta', delta, (3, ))
    if delta.shape != u.shape:
        raise ValueError('selective_scan: `delta` must have the shape of `u` '
                         f'(B, D, L) = {tuple(u.shape)}, got '
                         f'{tuple(delta.shape)}')
    _check_tensor('A', A, (2, ))
    if A.shape[0] != dim:
        raise ValueError(f'selective_scan: `A` must be (D, N) with D={dim}, '
                         f'got {tuple(A.shape)}')
    d_state = A.shape[1]
    if d_state == 0:
        raise ValueError('selective_scan: `A` must have d_state N >= 1, got '
                         f'{tuple(A.shape)}')
    groups = None
    for name, x in (('B', B), ('C', C)):
        if isinstance(x, Tensor) and x.dim() == 2:
            raise ValueError(
                f'selective_scan: `{name}` must be input-dependent, (B, N, L) '
                f'or (B, G, N, L); a constant (D, N) `{name}` is not '
                f'supported, got {tuple(x.shape)}')
        _check_tensor(name, x, (3, 4))
        g = 1 if x.dim() == 3 else x.shape[1]
        want = ((batch, d_state, length) if x.dim() == 3 else
                (batch, g, d_state, length))
        if tuple(x.shape) != want:
            raise ValueError(
                f'selective_scan: `{name}` must be (B, N, L) = '
                f'{(batch, d_state, length)} or (B, G, N, L) with '
                f'B={batch}, N={d_state}, L={length}; got {tuple(x.shape)}')
        if g == 0 or dim % g != 0:
            raise ValueError(f'selective_scan: the number of groups G={g} of '
                             f'`{name}` must divide D={dim} (D % G != 0)')
        if groups is not None and g != groups:
            raise ValueError('selective_scan: `B` and `C` must have the same '
                             f'number of groups, got {groups} and {g}')
        groups = g
    for name, x in (('D', D), ('delta_bias', delta_bias)):
        if x is None:
            continue
        _check_tensor(name, x, (1, ))
        if x.shape[0] != dim:
            raise ValueError(f'selective_scan: `{name}` must be (D,) = '
                             f'({dim},), got {tuple(x.shape)}')
    if z is not None:
        _check_tensor('z', z, (3, ))
        if z.shape != u.shape:
            raise ValueError('selective_scan: `z` must have the shape of `u` '
                             f'(B, D, L) = {tuple(u.shape)}, got '
                             f'{tuple(z.shape)}')
    for name, x in (('delta', delta), ('A', A), ('B', B), ('C', C), ('D', D),
                    ('z', z), ('delta_bias', delta_bias)):
        if x is not None and x.device != u.device:
            raise ValueError(f'selective_scan: `{name}` is on {x.device} but '
                             f'`u` is on {u.device}; all inputs must be on '
                             'one device')
    if not _is_scripting():
        params = [A.detach().reshape(-1).float()]
        params += [
            x.detach().float() for x in (D, delta_bias) if x is not None
        ]
        if not bool(torch.isfinite(torch.cat(params)).all()):
            for name, x in (('A', A), ('D', D), ('delta_bias', delta_bias)):
                if x is not None and not bool(torch.isfinite(x).all()):
                    raise ValueError(f'selective_scan: `{name}` has '
                                     'non-finite values (NaN or inf)')
    return groups


def _named_order(name: str, length: int, grid) -> Tensor:
    """The visiting order of a named scan order, as token indices."""
    if name in ('forward', 'row'):
        return torch.arange(length)
    if name in ('reverse', 'row_reverse'):
        return torch.arange(length - 1, -1, -1)
    if name in ('col', 'col_reverse'):
        if grid is None:
            raise ValueError(f"selective_scan: order '{name}' needs "
                             'grid=(H, W) with H * W == L')
        height, width = grid
        # Visit column by column, top to bottom: the i-th visited token is
        # row i % H, column i // H of the row-major grid.
        col = torch.arange(width * height)
        col = (col % height) * width + col // height
        return col if name == 'col' else col.flip(0)
    raise ValueError(f'selective_scan: unknown order {name!r}; expected one of '
                     f'{SCAN_ORDERS}, a LongTensor permutation of shape (L,), '
                     'a list of those (one per channel chunk) or a (K, L) '
                     'LongTensor')


def _check_grid(grid, length: int):
    if grid is None:
        return None
    if isinstance(grid, (tuple, list)):
        # Under torch.jit tracing, sizes taken from ``x.shape`` are 0-d
        # integer tensors; they are plain sizes, so take their values.
        grid = tuple(
            int(v) if isinstance(v, Tensor) and v.dim() == 0
            and not v.is_floating_point() else v for v in grid)
    if (not isinstance(grid, (tuple, list)) or len(grid) != 2
            or not all(isinstance(v, int) and v > 0 for v in grid)):
        raise ValueError('selective_scan: `grid` must be a pair of positive '
                         f'ints (H, W), got {grid!r}')
    if grid[0] * grid[1] != length:
        raise ValueError(f'selective_scan: grid {tuple(grid)} has '
                         f'{grid[0] * grid[1]} tokens but L={length}; '
                         'H * W must equal L (tokens row-major)')
    return tuple(grid)


def resolve_scan_order(order: OrderType,
                       length: int,
                       dim: int,
                       grid: Optional[Tuple[int, int]] = None,
                       device=None) -> Optional[Tensor]:
    """Turn the ``order`` argument of :func:`selective_scan` into indices.

    Args:
        order: ``None``/``'forward'``, ``'reverse'``, ``'row'``,
            ``'row_reverse'``, ``'col'``, ``'col_reverse'``, a LongTensor
            permutation of shape ``(L,)``, a list/tuple of ``K`` of those, or a
            ``(K, L)`` LongTensor. With ``K`` orders the ``D`` channels are split
            into ``K`` equal contiguous chunks and chunk ``k`` is scanned in
            order ``k``.
        length (int): Sequence length ``L``.
        dim (int): Number of channels ``D`` (must be divisible by ``K``).
        grid (tuple[int, int], optional): ``(H, W)`` of the row-major token
            grid, needed by the column orders.
        device: Device of the returned tensor.

    Returns:
        Tensor | None: ``None`` when every channel is scanned forward, else an
        int64 tensor ``(K, L)`` whose row ``k`` lists the tokens in the order
        chunk ``k`` visits them.
    """
    grid = _check_grid(grid, length)
    if isinstance(order, str) or (isinstance(order, (list, tuple)) and order
                                  and all(isinstance(o, str) for o in order)):
        # Named orders are built, checked and moved to the device once.
        names = (order, ) if isinstance(order, str) else tuple(order)
        device = torch.device('cpu' if device is None else device)
        return _named_orders(names, length, dim, grid, device)
    return _resolve_order(order, length, dim, grid, device)


@functools.lru_cache(maxsize=128)
def _named_orders(names, length, dim, grid, device):
    order = names[0] if len(names) == 1 else list(names)
    return _resolve_order(order, length, dim, grid, device)


def _resolve_order(order, length, dim, grid, device):
    """Uncached body of :func:`resolve_scan_order` (``grid`` checked)."""
    if order is None:
        return None
    if isinstance(order, str):
        if order in ('forward', 'row'):
            return None
        rows = [_named_order(order, length, grid)]
    elif isinstance(order, Tensor):
        if order.dtype not in (torch.int64, torch.int32):
            raise TypeError('selective_scan: a tensor `order` must be an '
                            f'integer (int64) permutation, got {order.dtype}')
        if order.dim() == 1:
            rows = [order]
        elif order.dim() == 2:
            rows = list(order.unbind(0))
        else:
            raise ValueError('selective_scan: a tensor `order` must be (L,) or '
                             f'(K, L), got shape {tuple(order.shape)}')
    elif isinstance(order, (list, tuple)):
        if len(order) == 0:
            raise ValueError('selective_scan: `order` list must not be empty')
        rows = []
        for item in order:
            if isinstance(item, str):
                rows.append(_named_order(item, length, grid))
            elif isinstance(item, Tensor) and item.dim() == 1:
                if item.dtype not in (torch.int64, torch.int32):
                    raise TypeError('selective_scan: permutations in `order` '
                                    f'must be int64 tensors, got {item.dtype}')
                rows.append(item)
            else:
                raise TypeError('selective_scan: each item of an `order` list '
                                'must be an order name or a (L,) LongTensor, '
                                f'got {item!r:.80}')
    else:
        raise TypeError('selective_scan: `order` must be None, a name, a '
                        'LongTensor or a list of those, got '
                        f'{type(order).__name__}')
    num = len(rows)
    if dim % num != 0:
        raise ValueError(f'selective_scan: {num} orders cannot split D={dim} '
                         'channels into equal chunks (D % K != 0)')
    for i, row in enumerate(rows):
        if row.shape != (length, ):
            raise ValueError(f'selective_scan: order {i} has shape '
                             f'{tuple(row.shape)}, expected (L,) = ({length},)')
    perm = torch.stack([r.to(device=device, dtype=torch.long) for r in rows])
    if not _is_scripting():
        ref = torch.arange(length, device=perm.device).expand_as(perm)
        if not bool((perm.sort(dim=-1).values == ref).all()):
            raise ValueError('selective_scan: `order` must be a permutation of '
                             f'range(L={length}) (each token visited exactly '
                             'once)')
        if bool((perm == ref).all()):
            return None
    return perm.contiguous()


def _resolve_impl(impl: Optional[str], u: Tensor) -> str:
    if impl is None or impl == 'auto':
        impl = os.environ.get(IMPL_ENV, '') or 'auto'
        if impl not in SCAN_IMPLS:
            raise ValueError(f'{IMPL_ENV}={impl!r} is not one of {SCAN_IMPLS}')
        if impl == 'auto':
            return 'triton' if u.is_cuda else 'cpu'
        return impl
    if impl not in SCAN_IMPLS:
        raise ValueError(f'selective_scan: `impl` must be one of {SCAN_IMPLS} '
                         f'or None, got {impl!r}')
    return impl


def _channel_index(perm: Tensor, dim: int) -> Tensor:
    """Expand ``(K, L)`` chunk orders to one order per channel ``(D, L)``."""
    return perm.repeat_interleave(dim // perm.shape[0], dim=0)


def _scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
              return_last_state, perm):
    """Body of :func:`selective_scan_ref` once the inputs are checked."""
    dtype_in = u.dtype
    batch, dim, length = u.shape
    # float32 accumulation; float64 inputs are computed in float64.
    cdt = torch.float64 if dtype_in == torch.float64 else torch.float32
    u_f = u.to(cdt)
    delta = delta.to(cdt)
    if delta_bias is not None:
        delta = delta + delta_bias[..., None].to(cdt)
    if delta_softplus:
        delta = F.softplus(delta)
    A = A.to(cdt)
    # One (B, D, N, L) copy of B and C per channel: readable, not frugal.
    Bd, Cd = (x.to(cdt) if x.dim() == 4 else x.to(cdt)[:, None]
              for x in (B, C))
    Bd = Bd.repeat_interleave(dim // Bd.shape[1], dim=1)
    Cd = Cd.repeat_interleave(dim // Cd.shape[1], dim=1)
    u_v = u_f
    if perm is not None:
        # Gather every channel's inputs in the order that channel visits them.
        index = _channel_index(perm, dim).expand(batch, dim, length)
        u_v = u_f.gather(-1, index)
        delta = delta.gather(-1, index)
        index4 = index[:, :, None].expand(batch, dim, Bd.shape[2], length)
        Bd = Bd.gather(-1, index4)
        Cd = Cd.gather(-1, index4)
    delta_a = torch.exp(delta[:, :, None, :] * A[None, :, :, None])
    delta_b_u = (delta * u_v)[:, :, None, :] * Bd
    h = u_f.new_zeros(batch, dim, A.shape[1])
    ys = []
    # unbind, not indexing: the backward of L index ops would build L
    # (B, D, N, L) zero tensors, the backward of unbind stacks once.
    for a_t, bu_t, c_t in zip(delta_a.unbind(-1), delta_b_u.unbind(-1),
                              Cd.unbind(-1)):
        h = a_t * h + bu_t
        ys.append((h * c_t).sum(-1))
    y = torch.stack(ys, dim=-1)
    if perm is not None:
        # Back to the original token order: y[..., index[i]] = y_v[..., i].
        y = torch.zeros_like(y).scatter(-1, index, y)
    if D is not None:
        y = y + u_f * D[:, None].to(cdt)
    if z is not None:
        y = y * F.silu(z.to(cdt))
    y = y.to(dtype_in)
    return (y, h) if return_last_state else y


def run_scan_function(function, extra, u, delta, A, B, C, D, z, delta_bias,
                      delta_softplus, return_last_state, perm):
    """Run a scan ``autograd.Function`` with the elementwise parts around it.

    The fast paths (CPU and Triton) implement only ``y, last = scan(u, dt, A,
    B, C, perm)`` as an ``autograd.Function`` with an explicit backward;
    ``delta_bias``, softplus, the ``D`` skip and the ``z`` gate are elementwise
    on ``(B, D, L)`` and are left to autograd here. The compute dtype is
    float32 (float64 for float64 inputs).

    Args:
        function: ``autograd.Function`` taking ``(u, dt, A, B4, C4, perm,
            *extra)`` with ``B4``, ``C4`` ``(B, G, N, L)`` and ``perm``
            ``(K, L)`` int64, returning ``(y, last_state)``.
        extra (tuple): Extra non-tensor arguments of ``function``.
        Others: as in :func:`selective_scan` (``perm`` from
            :func:`resolve_scan_order`).
    """
    dtype_in = u.dtype
    cdt = torch.float64 if dtype_in == torch.float64 else torch.float32
    if perm is None:
        perm = torch.arange(u.shape[-1], device=u.device)[None]
    u_c = u.to(cdt)
    dt = delta.to(cdt)
    if delta_bias is not None:
        dt = dt + delta_bias.to(cdt)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    B4 = (B if B.dim() == 4 else B[:, None]).to(cdt)
    C4 = (C if C.dim() == 4 else C[:, None]).to(cdt)
    y, last = function.apply(u_c, dt, A.to(cdt), B4, C4, perm, *extra)
    if D is not None:
        y = y + u_c * D.to(cdt)[:, None]
    if z is not None:
        y = y * F.silu(z.to(cdt))
    y = y.to(dtype_in)
    return (y, last) if return_last_state else y


def selective_scan_ref(u: Tensor,
                       delta: Tensor,
                       A: Tensor,
                       B: Tensor,
                       C: Tensor,
                       D: Optional[Tensor] = None,
                       z: Optional[Tensor] = None,
                       delta_bias: Optional[Tensor] = None,
                       delta_softplus: bool = False,
                       return_last_state: bool = False,
                       *,
                       order: OrderType = None,
                       grid: Optional[Tuple[int, int]] = None):
    """Plain reference of the selective scan: a loop over ``L`` with autograd.

    Same arguments and results as :func:`selective_scan` (without ``impl``).
    It gathers the inputs once into the visiting order of every channel, keeps
    every state for autograd (memory ``O(B * D * L * N)``) and is meant for
    tests, benchmarks and debugging, not for training.
    """
    groups = _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    del groups
    perm = resolve_scan_order(order, u.shape[-1], u.shape[1], grid, u.device)
    return _scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                     return_last_state, perm)


def selective_scan(u: Tensor,
                   delta: Tensor,
                   A: Tensor,
                   B: Tensor,
                   C: Tensor,
                   D: Optional[Tensor] = None,
                   z: Optional[Tensor] = None,
                   delta_bias: Optional[Tensor] = None,
                   delta_softplus: bool = False,
                   return_last_state: bool = False,
                   *,
                   order: OrderType = None,
                   grid: Optional[Tuple[int, int]] = None,
                   impl: Optional[str] = None,
                   split_l: Optional[int] = None):
    """Selective scan (Mamba S6) with scan orders, on CPU or GPU.

    Semantics and positional signature of ``selective_scan_ref`` of
    ``mamba-ssm``; every accumulation is in float32 whatever the input dtype,
    the output has ``u``'s dtype, and the op is differentiable in every tensor
    input.

    Args:
        u (Tensor): Input ``(B, D, L)``.
        delta (Tensor): Time steps ``(B, D, L)`` (before ``delta_bias`` and
            softplus).
        A (Tensor): State matrix ``(D, N)``, real (``-exp(A_log)``).
        B (Tensor): Input projection ``(B, N, L)`` or grouped ``(B, G, N, L)``;
            channel ``d`` uses group ``d // (D // G)``.
        C (Tensor): Output projection, shaped like ``B``.
        D (Tensor, optional): Skip ``(D,)``: adds ``D * u``.
        z (Tensor, optional): Gate ``(B, D, L)``: the output is multiplied by
            ``silu(z)``.
        delta_bias (Tensor, optional): ``(D,)`` added to ``delta``.
        delta_softplus (bool): Apply softplus to ``delta + delta_bias``.
        return_last_state (bool): Also return the float32 state ``(B, D, N)``
            after the last *visited* token.
        order: Order in which the tokens are visited (keyword only). ``None`` or
            ``'forward'``/``'row'`` (left to right), ``'reverse'``/
            ``'row_reverse'``, and for a ``grid`` also ``'col'`` (column-major,
            top to bottom) and ``'col_reverse'`` (column-major reversed, bottom
            to top); a LongTensor permutation ``(L,)`` (``order[i]`` is the
            i-th visited token); or a list/tuple of ``K`` such orders or a
            ``(K, L)`` LongTensor, splitting the ``D`` channels into ``K`` equal
            contiguous chunks, chunk ``k`` scanned in order ``k`` (e.g.
            GroupMamba's ``['row', 'col', 'row_reverse', 'col_reverse']``).
            The output is always in the original token order.
        grid (tuple[int, int], optional): ``(H, W)`` of the row-major token grid
            (``H * W == L``); needed by the column orders.
        impl (str, optional): ``None``/``'auto'`` (Triton for CUDA tensors, the
            CPU path for CPU tensors; the environment variable
            ``MMSSM_SCAN_IMPL`` overrides it), ``'triton'``, ``'cpu'`` or
            ``'ref'`` (:func:`selective_scan_ref`).
        split_l (int, optional): Triton only (ignored by the other
            implementations, which give the same result): cut each sequence
            into this many splits, scanned by separate programs and combined
            by a second pass (split-L mode, for small batches of long
            sequences). None chooses from the batch size, the channels and the
            GPU's multiprocessor count; 1 disables it.

    Returns:
        Tensor | tuple[Tensor, Tensor]: ``y`` ``(B, D, L)`` in ``u``'s dtype,
        and ``last_state`` ``(B, D, N)`` float32 when ``return_last_state``.
    """
    _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    if split_l is not None and (isinstance(split_l, bool)
                                or not isinstance(split_l, int)
                                or split_l < 1):
        raise ValueError('selective_scan: split_l must be None or an int >= '
                         f'1, got {split_l!r}')
    perm = resolve_scan_order(order, u.shape[-1], u.shape[1], grid, u.device)
    impl = _resolve_impl(impl, u)
    args = (u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus),
            bool(return_last_state), perm)
    if impl == 'ref':
        return _scan_ref(*args)
    if impl == 'cpu':
        if u.device.type != 'cpu':
            raise ValueError("selective_scan: impl='cpu' needs CPU tensors, "
                             f'got tensors on {u.device}')
        from .scan_cpu import selective_scan_cpu
        return selective_scan_cpu(*args)
    # impl == 'triton'
    if u.device.type != 'cuda' and os.environ.get('TRITON_INTERPRET') != '1':
        raise ValueError("selective_scan: impl='triton' needs CUDA tensors "
                         '(or TRITON_INTERPRET=1 for the Triton interpreter '
                         f'on CPU tensors), got tensors on {u.device}')
    from mmssm.kernels.selective_scan import selective_scan_triton
    return selective_scan_triton(*args, split_l=split_l)
