"""The scan's core as torch custom ops, for ``torch.compile`` and ``torch.export``.

The fast paths compute ``y, last = scan(u, dt, A, B, C, perm)`` in an
``autograd.Function`` (:mod:`mmssm.ops.scan_cpu`, :mod:`mmssm.ops.scan_triton`)
whose forward calls numba or Triton kernels: dynamo cannot trace through it
(it stops at the kernels' thread and numpy plumbing). While a model is being
compiled or exported, :func:`mmssm.ops.scan_common.run_scan_function` calls
the same Function through two opaque operators instead:

* ``mmssm::scan_core(u, dt, A, B, C, perm, backend, extra) -> (y, last)``:
  the forward, with a fake (meta) implementation that gives the output
  shapes and dtypes, so the graph holds one node per scan (the elementwise
  prologue and epilogue, ``delta_bias``, softplus, ``D`` and the ``z`` gate,
  stay ordinary torch operators around it);
* ``mmssm::scan_core_backward(u, dt, A, B, C, perm, gy, glast, backend,
  extra) -> (du, ddt, dA, dB, dC)``: registered as the forward's autograd
  formula. It recomputes the forward with the Function and runs its explicit
  backward (a compiled training step therefore runs the scan's forward
  twice; eager training keeps the Function and its saved checkpoints).

``backend`` names the Function (``'cpu'`` or ``'triton'``) and ``extra``
encodes its extra arguments (the CPU engine, Triton's block sizes). The
results are the Function's, bit for bit. Eager calls never go through here.
"""
from typing import List, Tuple

import torch
from torch import Tensor

from .scan_common import set_compile_core

__all__ = ['scan_core', 'scan_core_backward']

#: backend name -> the core ``autograd.Function`` (imported on first use)
_FUNCTIONS = {}


def _function(backend: str, extra: str):
    if backend not in _FUNCTIONS:
        # a graph loaded in a fresh process: import the backend by name
        if backend == 'cpu':
            from .scan_cpu import SelectiveScanCPUFunction as function
        elif backend == 'triton':
            from .scan_triton import SelectiveScanTritonFunction as function
        else:
            raise ValueError(f'mmssm::scan_core: unknown backend '
                             f"{backend!r}; expected 'cpu' or 'triton'")
        _FUNCTIONS[backend] = function
    return _FUNCTIONS[backend], _decode(extra)


@torch.library.custom_op('mmssm::scan_core', mutates_args=())
def scan_core(u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor,
              perm: Tensor, backend: str,
              extra: str) -> Tuple[Tensor, Tensor]:
    function, args = _function(backend, extra)
    with torch.no_grad():
        y, last = function.apply(u, dt, A, B, C, perm, *args)
    return y, last


@scan_core.register_fake
def _scan_core_fake(u, dt, A, B, C, perm, backend, extra):
    nbatch, dim, _ = u.shape
    return torch.empty_like(u), u.new_empty(nbatch, dim, A.shape[1])


@torch.library.custom_op('mmssm::scan_core_backward', mutates_args=())
def scan_core_backward(u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor,
                       perm: Tensor, gy: Tensor, glast: Tensor, backend: str,
                       extra: str) -> List[Tensor]:
    function, args = _function(backend, extra)
    inputs = [x.detach().requires_grad_() for x in (u, dt, A, B, C)]
    with torch.enable_grad():
        y, last = function.apply(*inputs, perm, *args)
        grads = torch.autograd.grad((y, last), inputs, (gy, glast),
                                    allow_unused=True)
    return [
        torch.zeros_like(x) if g is None else g
        for x, g in zip(inputs, grads)
    ]


@scan_core_backward.register_fake
def _scan_core_backward_fake(u, dt, A, B, C, perm, gy, glast, backend,
                             extra):
    return [torch.empty_like(x) for x in (u, dt, A, B, C)]


def _setup_context(ctx, inputs, output):
    u, dt, A, B, C, perm, backend, extra = inputs
    ctx.save_for_backward(u, dt, A, B, C, perm)
    ctx.backend, ctx.extra = backend, extra


def _backward(ctx, gy, glast):
    u, dt, A, B, C, perm = ctx.saved_tensors
    if gy is None:
        gy = torch.zeros_like(u)
    if glast is None:
        glast = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    grads = scan_core_backward(u, dt, A, B, C, perm, gy, glast, ctx.backend,
                               ctx.extra)
    return (*grads, None, None, None)


scan_core.register_autograd(_backward, setup_context=_setup_context)


def _compile_core(backend, extra, u, dt, A, B, C, perm):
    """What :func:`mmssm.ops.scan_common.run_scan_function` calls instead of
    the backend's ``Function.apply`` while compiling or exporting."""
    return scan_core(u, dt, A, B, C, perm, backend, _encode(extra))


def _encode(extra) -> str:
    """The Function's extra arguments (str, int, bool or None) as one string
    (the op's schema takes no lists of mixed types; json is not traceable)."""
    parts = []
    for value in extra:
        if value is None:
            parts.append('n:')
        elif isinstance(value, bool):
            parts.append('b:' + ('1' if value else '0'))
        elif isinstance(value, int):
            parts.append('i:' + str(value))
        else:
            parts.append('s:' + str(value))
    return ';'.join(parts)


def _decode(extra: str):
    values = []
    for part in extra.split(';') if extra else []:
        kind, text = part[:2], part[2:]
        values.append(None if kind == 'n:' else text == '1' if kind == 'b:'
                      else int(text) if kind == 'i:' else text)
    return tuple(values)


set_compile_core(_compile_core)
