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

The module layout, one job per module, imports flowing one way (each module
imports only modules listed below it; :mod:`mmssm.kernels` imports nothing of
mmssm)::

    selective_scan.py   public API, argument checks, dispatch (this module)
    scan_ref.py         impl='ref': the readable loop with autograd
    scan_chunked.py     impl='chunked': portable associative scan, plain torch
    scan_cpu.py         impl='cpu': autograd.Function, numba or torch engine
    scan_triton.py      impl='triton': autograd.Function around the kernels
    scan_custom_op.py   the core as torch custom ops (torch.compile, export)
    scan_order.py       order resolution: names, grids, permutations, cache
    scan_common.py      shared prologue/epilogue (bias, softplus, D, z),
                        compute dtype, when the value checks run
    mmssm.kernels.selective_scan   Triton kernels and their launch helpers

Four implementations share the argument checks of this module:

* ``'ref'``: :func:`selective_scan_ref` (:mod:`mmssm.ops.scan_ref`), a plain
  loop over the sequence with autograd; readable, slow, memory
  ``O(B * D * L * N)``. Tests and benchmarks compare against it.
* ``'cpu'``: :mod:`mmssm.ops.scan_cpu`, an ``autograd.Function`` with an
  explicit backward and bounded memory (numba kernels, or a pure-torch
  fallback), used for CPU tensors; it reads the tokens through the order
  index, no permuted copies.
* ``'chunked'``: :mod:`mmssm.ops.scan_chunked`, an associative scan in
  chunks made of plain torch operators (autograd for the backward): any
  device, exportable; memory and time ``O(B * D * N * L * log2(64))``.
* ``'triton'``: :mod:`mmssm.ops.scan_triton`, the ``autograd.Function``
  around the fused Triton forward and backward kernels of
  :mod:`mmssm.kernels.selective_scan` (bias, softplus, ``D`` and the gate
  inside the kernels; inputs read through their strides and in their dtype;
  index loads, no permuted copies), used for CUDA tensors.

The backends are imported on first use, so ``import mmssm.ops`` needs torch
only (numba and triton are optional).

The checks that read values (non-finite ``A``/``D``/``delta_bias``, tensor
orders that are not permutations) run for CPU tensors; for CUDA tensors they
would synchronise the device on every call, so they run only when the
environment variable ``MMSSM_SCAN_DEBUG=1`` is set. Named orders are built and
checked once on the CPU and cached per (orders, L, D, grid, device).
"""
import contextlib
import os
import warnings
from typing import Optional, Tuple

import torch
from torch import Tensor

from .scan_common import (DEBUG_ENV, debug_enabled, is_scripting,
                          run_scan_function, value_checks_enabled)
from .scan_order import SCAN_ORDERS, OrderType, resolve_scan_order
from .scan_chunked import scan_chunked
from .scan_ref import scan_ref
from . import scan_custom_op  # noqa: F401  (torch.compile / export path)

__all__ = [
    'selective_scan', 'selective_scan_ref', 'resolve_scan_order',
    'run_scan_function', 'SCAN_ORDERS', 'SCAN_IMPLS'
]

#: Names accepted by ``impl`` (``None`` means ``'auto'``).
SCAN_IMPLS = ('auto', 'ref', 'cpu', 'triton', 'chunked')
#: Environment variable that overrides ``impl='auto'`` (for debugging).
IMPL_ENV = 'MMSSM_SCAN_IMPL'

_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


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
        if (z.shape[0] != batch or z.shape[2] != length or z.shape[1] == 0
                or dim % z.shape[1] != 0):
            raise ValueError('selective_scan: `z` must have the shape of `u` '
                             f'(B, D, L) = {tuple(u.shape)}, or (B, D // R, '
                             'L) for an R dividing D (shared by the R '
                             'chunks of channels), got '
                             f'{tuple(z.shape)}')
    for name, x in (('delta', delta), ('A', A), ('B', B), ('C', C), ('D', D),
                    ('z', z), ('delta_bias', delta_bias)):
        if x is not None and x.device != u.device:
            raise ValueError(f'selective_scan: `{name}` is on {x.device} but '
                             f'`u` is on {u.device}; all inputs must be on '
                             'one device')
    if value_checks_enabled(u.device):
        params = [A.detach().reshape(-1).float()]
        params += [
            x.detach().float() for x in (D, delta_bias) if x is not None
        ]
        if not bool(torch.isfinite(torch.cat(params)).all()):
            for name, x in (('A', A), ('D', D), ('delta_bias', delta_bias)):
                if x is not None and not bool(torch.isfinite(x).all()):
                    raise ValueError(f'selective_scan: `{name}` has '
                                     'non-finite values (NaN or inf)')
    if debug_enabled() and not is_scripting():
        _check_finite_activations(u=u, delta=delta, B=B, C=C, z=z)
    return groups


_ACTIVATION_DIMS = {
    'u': '(batch, channel, token)',
    'delta': '(batch, channel, token)',
    'z': '(batch, channel, token)',
    'B': '(batch, [group,] state, token)',
    'C': '(batch, [group,] state, token)',
}


def _check_finite_activations(**tensors) -> None:
    """With ``MMSSM_SCAN_DEBUG=1``: stop at the first non-finite input.

    A NaN or inf in ``delta``, ``u``, ``B`` or ``C`` spreads through the
    recurrence to every later token of its channel (and an inf in ``delta``
    makes ``exp(delta * A)`` 0 and ``delta * B * u`` inf), so the op names
    the tensor and the index of its first non-finite element instead.
    """
    for name, x in tensors.items():
        if x is None:
            continue
        bad = ~torch.isfinite(x.detach())
        if bool(bad.any()):
            first = tuple(int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f'selective_scan: `{name}` has {int(bad.sum())} non-finite '
                f'value(s) (NaN or inf); the first at index {first} '
                f'{_ACTIVATION_DIMS[name]} is {float(x[first])} '
                f'({DEBUG_ENV}=1 check)')


def _tracer_warnings_off():
    """Under ``torch.jit.trace`` (mmengine's FLOP counter) the checks and the
    order resolution read sizes and values as Python numbers, which torch
    reports as TracerWarnings: the trace is meant for these shapes
    only, so they are silenced there (and only there)."""
    if not torch.jit.is_tracing():
        return contextlib.nullcontext()
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter('ignore', torch.jit.TracerWarning)
    return _Exit(ctx)


class _Exit:
    """A context manager that leaves an entered ``catch_warnings``."""

    def __init__(self, ctx):
        self.ctx = ctx

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.ctx.__exit__(*exc)


def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _resolve_impl(impl: Optional[str], u: Tensor) -> str:
    if impl is None or impl == 'auto':
        impl = os.environ.get(IMPL_ENV, '') or 'auto'
        if impl not in SCAN_IMPLS:
            raise ValueError(f'{IMPL_ENV}={impl!r} is not one of {SCAN_IMPLS}')
        if impl == 'auto':
            if u.device.type == 'cpu':
                return 'cpu'
            if u.is_cuda and _triton_available():
                return 'triton'
            return 'chunked'  # MPS, XPU, CUDA without Triton, ...
        return impl
    if impl not in SCAN_IMPLS:
        raise ValueError(f'selective_scan: `impl` must be one of {SCAN_IMPLS} '
                         f'or None, got {impl!r}')
    return impl


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
    with _tracer_warnings_off():
        _check_inputs(u, delta, A, B, C, D, z, delta_bias)
        perm = resolve_scan_order(order, u.shape[-1], u.shape[1], grid,
                                  u.device)
    return scan_ref(u, delta, A, B, C, D, _full_gate(z, u.shape[1]),
                    delta_bias, delta_softplus, return_last_state, perm)


def _full_gate(z: Optional[Tensor], dim: int) -> Optional[Tensor]:
    """A shared gate ``(B, D // R, L)`` repeated to ``(B, D, L)`` for the
    implementations that take only the full gate (the Triton kernels read
    the shared one directly)."""
    if z is None or z.shape[1] == dim:
        return z
    return z.repeat(1, dim // z.shape[1], 1)


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
            ``silu(z)``. It may also be ``(B, D // R, L)`` for an ``R``
            dividing ``D``: channel ``d`` is then gated by
            ``z[:, d % (D // R)]``, as if ``z.repeat(1, R, 1)`` were passed
            (how a bidirectional mixer shares one gate between its
            directions without copying it).
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
        impl (str, optional): ``None``/``'auto'`` (Triton for CUDA tensors
            when triton is installed, the CPU path for CPU tensors, the
            portable ``'chunked'`` path on any other device; the environment
            variable ``MMSSM_SCAN_IMPL`` overrides it), ``'triton'``,
            ``'cpu'``, ``'chunked'`` (:mod:`mmssm.ops.scan_chunked`: plain
            torch operators, any device, exportable as standard operators)
            or ``'ref'`` (:func:`selective_scan_ref`).
        split_l (int, optional): Triton only (ignored by the other
            implementations, which give the same result): cut each sequence
            into this many splits, scanned by separate programs and combined
            by a second pass (split-L mode, for small batches of long
            sequences). None chooses from the batch size, the channels and the
            GPU's multiprocessor count; 1 disables it.

    Returns:
        Tensor | tuple[Tensor, Tensor]: ``y`` ``(B, D, L)`` in ``u``'s dtype,
        and ``last_state`` ``(B, D, N)`` float32 when ``return_last_state``.

    Raises:
        TypeError, ValueError: On a bad argument, naming it and what it
            accepts. Non-finite ``A``/``D``/``delta_bias`` and tensor orders
            that are not permutations are caught for CPU tensors; for CUDA
            tensors only with ``MMSSM_SCAN_DEBUG=1`` (the check reads values,
            i.e. synchronises the device).
    """
    if split_l is not None and (isinstance(split_l, bool)
                                or not isinstance(split_l, int)
                                or split_l < 1):
        raise ValueError('selective_scan: split_l must be None or an int >= '
                         f'1, got {split_l!r}')
    with _tracer_warnings_off():
        _check_inputs(u, delta, A, B, C, D, z, delta_bias)
        perm = resolve_scan_order(order, u.shape[-1], u.shape[1], grid,
                                  u.device)
    impl = _resolve_impl(impl, u)
    if impl != 'triton':
        z = _full_gate(z, u.shape[1])
    args = (u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus),
            bool(return_last_state), perm)
    if impl == 'ref':
        return scan_ref(*args)
    if impl == 'chunked':
        return scan_chunked(*args)
    if impl == 'cpu':
        if u.device.type != 'cpu':
            raise ValueError("selective_scan: impl='cpu' needs CPU tensors, "
                             f'got tensors on {u.device}')
        from . import scan_cpu  # numba (optional) is imported on first use
        return scan_cpu.selective_scan_cpu(*args)
    # impl == 'triton'
    if u.device.type != 'cuda' and os.environ.get('TRITON_INTERPRET') != '1':
        raise ValueError("selective_scan: impl='triton' needs CUDA tensors "
                         '(or TRITON_INTERPRET=1 for the Triton interpreter '
                         f'on CPU tensors), got tensors on {u.device}')
    from . import scan_triton  # needs triton: imported on first use
    return scan_triton.selective_scan_triton(*args, split_l=split_l)
