"""The readable reference of the selective scan (``impl='ref'``).

:func:`scan_ref` is the body of :func:`mmssm.ops.selective_scan_ref` once the
inputs are checked and the order resolved: it gathers every channel's inputs
into its visiting order once, runs a plain loop over the sequence with
autograd, keeps every state (memory ``O(B * D * L * N)``) and scatters the
output back to the original token order. Tests and benchmarks compare the
fast paths against it, so it deliberately shares no code with them (its
prologue and epilogue are written out here, not taken from
:mod:`mmssm.ops.scan_common`). This module imports torch only.
"""
import torch
import torch.nn.functional as F

from .scan_common import compute_dtype
from .scan_order import channel_index  # the order index only

__all__ = ['scan_ref']


def scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
             return_last_state, perm):
    """Body of :func:`selective_scan_ref` once the inputs are checked.

    Arguments as :func:`mmssm.ops.selective_scan`; ``perm`` is ``None``
    (forward) or the ``(K, L)`` orders from
    :func:`~mmssm.ops.resolve_scan_order`.
    """
    dtype_in = u.dtype
    batch, dim, length = u.shape
    # float32 accumulation; float64 inputs are computed in float64.
    cdt = compute_dtype(dtype_in)
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
        index = channel_index(perm, dim).expand(batch, dim, length)
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
