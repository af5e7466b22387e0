"""What the selective-scan modules share: the elementwise prologue and
epilogue around a core scan ``autograd.Function``, the compute dtype, and
when the value checks run.

The CPU backend (:mod:`mmssm.ops.scan_cpu`) implements the core
``y, last = scan(u, dt, A, B, C, perm)`` as an ``autograd.Function`` with an
explicit backward, and :func:`run_scan_function` does the rest
(``delta_bias``, softplus, the ``D`` skip, the ``z`` gate and the dtype
casts) with autograd; so does the Triton core while a model is compiled or
exported (the eager Triton path computes the elementwise parts inside its
kernels, :mod:`mmssm.ops.scan_triton`). :func:`prepare_scan_inputs` /
:func:`fill_grad_outputs` are the shared first lines of the core Functions'
forward and backward.

Value checks (non-finite ``A``/``D``/``delta_bias``, tensor orders that are
not permutations) read tensor values, which for a CUDA tensor means a
device-to-host synchronisation on every call. :func:`value_checks_enabled`
runs them for CPU tensors always and for other devices only when the
environment variable ``MMSSM_SCAN_DEBUG=1`` is set; never while tracing or
compiling. This module imports torch only.
"""
import os

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    'DEBUG_ENV', 'debug_enabled', 'is_scripting', 'value_checks_enabled',
    'compute_dtype', 'run_scan_function', 'prepare_scan_inputs',
    'fill_grad_outputs', 'set_compile_core', 'scan_prologue',
    'scan_epilogue', 'visiting_order_inputs', 'channel_index'
]

#: Environment variable that turns on the value checks of non-CPU tensors
#: (``'1'``; ``'0'`` or unset: off).
DEBUG_ENV = 'MMSSM_SCAN_DEBUG'


def debug_enabled() -> bool:
    """Whether ``MMSSM_SCAN_DEBUG=1`` is set."""
    value = os.environ.get(DEBUG_ENV, '')
    if value not in ('', '0', '1'):
        raise ValueError(f"{DEBUG_ENV} must be '0' or '1' (or unset), got "
                         f'{value!r}')
    return value == '1'


def is_scripting() -> bool:
    """Whether the op is being traced or compiled (no data-dependent checks).
    """
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return True
    compiler = getattr(torch, 'compiler', None)
    return bool(compiler is not None and compiler.is_compiling())


def value_checks_enabled(device: torch.device) -> bool:
    """Whether to run the checks that read tensor values on ``device``.

    Yes for CPU tensors (reading them costs no synchronisation); for CUDA and
    other devices only when :data:`DEBUG_ENV` is ``'1'``; never while tracing
    or compiling.
    """
    if is_scripting():
        return False
    return torch.device(device).type == 'cpu' or debug_enabled()


#: Environment variable: ``0`` turns the CPU inference fast paths off (the
#: fused forward of the scan op and the fused mixers of mmssm.ops.mixer_cpu).
FAST_PATH_ENV = 'MMSSM_CPU_FAST_PATH'


def cpu_fast_path_allowed() -> bool:
    """Whether ``MMSSM_CPU_FAST_PATH`` leaves the CPU fast paths on (any
    value but ``0``) and nothing is being traced or compiled."""
    return os.environ.get(FAST_PATH_ENV, '1') != '0' and not is_scripting()


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 accumulation; float64 inputs are computed in float64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def scan_prologue(u, delta, B, C, delta_bias, delta_softplus):
    """The elementwise start every implementation shares: the compute dtype
    (float32; float64 for float64 inputs), ``u`` and ``dt = softplus(delta +
    delta_bias)`` in it, and ``B``/``C`` as ``(B, G, N, L)`` in it.

    Returns:
        tuple: ``(cdt, u_c, dt, B4, C4)``.
    """
    cdt = compute_dtype(u.dtype)
    u_c = u.to(cdt)
    dt = delta.to(cdt)
    if delta_bias is not None:
        dt = dt + delta_bias.to(cdt)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    B4 = (B if B.dim() == 4 else B[:, None]).to(cdt)
    C4 = (C if C.dim() == 4 else C[:, None]).to(cdt)
    return cdt, u_c, dt, B4, C4


def channel_index(perm: Tensor, dim: int) -> Tensor:
    """Expand ``(K, L)`` chunk orders to one order per channel ``(D, L)``."""
    return perm.repeat_interleave(dim // perm.shape[0], dim=0)


def visiting_order_inputs(u_c, dt, B4, C4, perm):
    """For the torch implementations (reference, chunked): ``B``/``C`` per
    channel ``(B, D, N, L)`` and ``u``, ``dt``, ``B``, ``C`` gathered into the
    order each channel visits the tokens.

    Returns:
        tuple: ``(u_v, dt_v, Bd, Cd, index)``; ``index`` ``(B, D, L)`` (None
        without ``perm``) puts a visiting-order output back in token order
        with ``y.scatter(-1, index, y_v)``.
    """
    batch, dim, length = u_c.shape
    Bd = B4.repeat_interleave(dim // B4.shape[1], dim=1)
    Cd = C4.repeat_interleave(dim // C4.shape[1], dim=1)
    if perm is None:
        return u_c, dt, Bd, Cd, None
    index = channel_index(perm.to(u_c.device), dim).expand(
        batch, dim, length)
    index4 = index[:, :, None].expand(batch, dim, Bd.shape[2], length)
    return (u_c.gather(-1, index), dt.gather(-1, index), Bd.gather(-1, index4),
            Cd.gather(-1, index4), index)


def scan_epilogue(y, u_c, D, z, dtype):
    """The elementwise end every implementation shares: ``+ D * u``,
    ``* silu(z)``, back to the input dtype."""
    cdt = u_c.dtype
    if D is not None:
        y = y + u_c * D.to(cdt)[:, None]
    if z is not None:
        y = y * F.silu(z.to(cdt))
    return y.to(dtype)


_COMPILE_CORE = []


def set_compile_core(core) -> None:
    """Set what :func:`run_scan_function` calls instead of the Function while
    a model is compiled or exported (:mod:`mmssm.ops.scan_custom_op`)."""
    _COMPILE_CORE[:] = [core]


def run_scan_function(function,
                      extra,
                      u,
                      delta,
                      A,
                      B,
                      C,
                      D,
                      z,
                      delta_bias,
                      delta_softplus,
                      return_last_state,
                      perm,
                      backend=None):
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
        Others: as in :func:`mmssm.ops.selective_scan` (``perm`` from
            :func:`mmssm.ops.resolve_scan_order`).
        backend (str, optional): ``'cpu'`` or ``'triton'``: the name under
            which :mod:`mmssm.ops.scan_custom_op` calls ``function`` while
            compiling or exporting (None: always the Function itself).
    """
    if perm is None:
        perm = torch.arange(u.shape[-1], device=u.device)[None]
    cdt, u_c, dt, B4, C4 = scan_prologue(u, delta, B, C, delta_bias,
                                         delta_softplus)
    if backend and _COMPILE_CORE and torch.compiler.is_compiling():
        # torch.compile / torch.export: one opaque custom op per scan
        y, last = _COMPILE_CORE[0](backend, extra, u_c, dt, A.to(cdt), B4,
                                   C4, perm)
    else:
        y, last = function.apply(u_c, dt, A.to(cdt), B4, C4, perm, *extra)
    y = scan_epilogue(y, u_c, D, z, u.dtype)
    return (y, last) if return_last_state else y


def prepare_scan_inputs(u: Tensor, dt: Tensor, A: Tensor, B: Tensor,
                        C: Tensor, perm: Tensor):
    """First lines of a core Function's forward: contiguous inputs and the
    orders as contiguous int64 on ``u``'s device (no copy when they are
    already)."""
    u, dt, A, B, C = (x.contiguous() for x in (u, dt, A, B, C))
    perm = perm.to(device=u.device, dtype=torch.int64).contiguous()
    return u, dt, A, B, C, perm


def fill_grad_outputs(u: Tensor, nstate: int, gy, glast):
    """First lines of a core Function's backward: the gradients of ``y``
    ``(Bt, D, L)`` and of the last state ``(Bt, D, N)`` in ``u``'s dtype,
    zeros for the one autograd passes as None (an unused output)."""
    if gy is None:
        gy = torch.zeros_like(u)
    if glast is None:
        glast = u.new_zeros(u.shape[0], u.shape[1], nstate)
    return gy.to(u.dtype), glast.to(u.dtype)
