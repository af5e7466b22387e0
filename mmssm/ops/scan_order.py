"""Scan orders of the selective scan: the ``order``/``grid`` arguments of
:func:`mmssm.ops.selective_scan` turned into token indices.

:func:`resolve_scan_order` returns ``None`` (every channel scanned forward)
or an int64 ``(K, L)`` tensor whose row ``k`` lists the tokens in the order
the ``k``-th contiguous chunk of channels visits them; every backend reads
the tokens through it (:func:`channel_index` expands it to one row per
channel). Named orders (:data:`SCAN_ORDERS`) are built and checked on the CPU
once and cached per (orders, L, D, grid, device), so a call with a named order
costs no allocation and no synchronisation. Tensor orders are checked to be
permutations only where that is free (CPU tensors) or when
``MMSSM_SCAN_DEBUG=1`` (see :mod:`mmssm.ops.scan_common`). This module imports
torch only.
"""
import functools
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .scan_common import channel_index, is_scripting, value_checks_enabled

__all__ = ['SCAN_ORDERS', 'OrderType', 'resolve_scan_order', 'channel_index']

#: Names accepted by ``order`` (``'col'`` and ``'col_reverse'`` need ``grid``).
SCAN_ORDERS = ('forward', 'reverse', 'row', 'row_reverse', 'col',
               'col_reverse')

OrderType = Union[None, str, Tensor, Sequence[Union[str, Tensor]]]

_CPU = torch.device('cpu')


def _named_order(name: str, length: int, grid) -> Tensor:
    """The visiting order of a named scan order, as token indices (CPU)."""
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
        # Named orders are built and checked on the CPU, moved to the device
        # once and cached.
        names = (order, ) if isinstance(order, str) else tuple(order)
        device = _CPU if device is None else torch.device(device)
        if is_scripting():
            # traced, compiled or exported: the tensors made now may be fake
            # (torch.export) and must not stay in the cache
            return _resolve_order(names[0] if len(names) == 1 else
                                  list(names), length, dim, grid, device)
        return _named_orders(names, length, dim, grid, device)
    return _resolve_order(order, length, dim, grid, device)


@functools.lru_cache(maxsize=128)
def _named_orders(names, length, dim, grid, device):
    # Cached tensors outlive the call: never make them inference tensors
    # (a first call under torch.inference_mode() would otherwise poison
    # every later training call with the same order).
    with torch.inference_mode(False):
        return _named_orders_uncached(names, length, dim, grid, device)


def _named_orders_uncached(names, length, dim, grid, device):
    if device.type != 'cpu':
        perm = _named_orders(names, length, dim, grid, _CPU)
        return None if perm is None else perm.to(device)
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
    # Orders given on the CPU are checked there, before they are moved.
    on_cpu = all(row.device.type == 'cpu' for row in rows)
    perm = torch.stack([
        row.to(device=_CPU if on_cpu else device, dtype=torch.long)
        for row in rows
    ])
    if value_checks_enabled(perm.device):
        ref = torch.arange(length, device=perm.device).expand_as(perm)
        if not bool((perm.sort(dim=-1).values == ref).all()):
            raise ValueError('selective_scan: `order` must be a permutation of '
                             f'range(L={length}) (each token visited exactly '
                             'once)')
        if bool((perm == ref).all()):
            return None
    if device is not None:
        perm = perm.to(device)
    return perm.contiguous()
