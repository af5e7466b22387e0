"""Parameter initialisations shared by every Mamba (S6) mixer in mmssm.

The selective state-space layer of Mamba (Gu & Dao, 2023, "Mamba: Linear-Time
Sequence Modeling with Selective State Spaces") has three parameters with a
dedicated initialisation: the state matrix ``A`` (stored as ``A_log``, with
``A = -exp(A_log)``), and the weight and bias of the low-rank projection
``dt_proj`` that produces the step size ``delta``. Vim, GroupMamba and the
other SSM backbones all use the same recipe (the "S4D-real" init of ``A`` and
a log-uniform init of ``delta``); it lives here once.
"""
import math

import torch
import torch.nn as nn

__all__ = ['a_log_init', 'dt_proj_init_']


def a_log_init(d_inner: int, d_state: int) -> torch.Tensor:
    """Build the S4D-real initial value of ``A_log``.

    Every channel gets ``A_log[d, n] = log(n + 1)`` for ``n = 0 .. d_state-1``,
    so that ``A = -exp(A_log) = -(1, 2, ..., d_state)``.

    Args:
        d_inner (int): Number of channels (rows of ``A``).
        d_state (int): State size ``N`` (columns of ``A``).

    Returns:
        torch.Tensor: A float32 tensor of shape ``(d_inner, d_state)``, ready
        to be wrapped in an ``nn.Parameter``.
    """
    if d_inner < 1 or d_state < 1:
        raise ValueError('a_log_init expects positive sizes, got '
                         f'd_inner={d_inner}, d_state={d_state}')
    a = torch.arange(1, d_state + 1, dtype=torch.float32)
    return torch.log(a).repeat(d_inner, 1).contiguous()


@torch.no_grad()
def dt_proj_init_(dt_proj: nn.Linear,
                  dt_rank: int,
                  dt_min: float = 1e-3,
                  dt_max: float = 1e-1,
                  dt_init_floor: float = 1e-4,
                  dt_scale: float = 1.0,
                  dt_init: str = 'random') -> nn.Linear:
    """Initialise the ``delta`` projection of a Mamba mixer in place.

    * weight: ``U(-s, s)`` with ``s = dt_rank ** -0.5 * dt_scale``
      (``dt_init='random'``) or the constant ``s`` (``dt_init='constant'``);
    * bias: ``softplus^-1(dt)`` with ``dt = exp(U(log dt_min, log dt_max))``
      clamped to at least ``dt_init_floor``, so that
      ``softplus(bias)`` is log-uniform in ``[dt_min, dt_max]`` at init.

    The bias is flagged with ``_no_reinit = True`` (the Mamba convention) so
    a generic ``init_weights`` that zeroes linear biases can skip it.

    Args:
        dt_proj (nn.Linear): The ``dt_rank -> d_inner`` projection, with bias.
        dt_rank (int): Rank ``R`` of the projection (its ``in_features``).
        dt_min (float): Smallest initial step size. Defaults to 1e-3.
        dt_max (float): Largest initial step size. Defaults to 1e-1.
        dt_init_floor (float): Lower clamp of the initial step size.
            Defaults to 1e-4.
        dt_scale (float): Scale of the weight init. Defaults to 1.0.
        dt_init (str): ``'random'`` (uniform) or ``'constant'`` weight init.
            Defaults to ``'random'``.

    Returns:
        nn.Linear: ``dt_proj`` itself.
    """
    if not isinstance(dt_proj, nn.Linear) or dt_proj.bias is None:
        raise TypeError('dt_proj_init_ expects an nn.Linear with a bias, got '
                        f'{dt_proj!r}')
    if dt_proj.in_features != dt_rank:
        raise ValueError(f'dt_proj has in_features={dt_proj.in_features} '
                         f'but dt_rank={dt_rank}')
    if not 0 < dt_min <= dt_max:
        raise ValueError(f'need 0 < dt_min <= dt_max, got {dt_min}, {dt_max}')
    std = dt_rank**-0.5 * dt_scale
    if dt_init == 'random':
        nn.init.uniform_(dt_proj.weight, -std, std)
    elif dt_init == 'constant':
        nn.init.constant_(dt_proj.weight, std)
    else:
        raise ValueError(
            f"dt_init must be 'random' or 'constant', got {dt_init!r}")
    d_inner = dt_proj.out_features
    dt = torch.exp(
        torch.rand(d_inner, dtype=torch.float32) *
        (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    dt = dt.clamp(min=dt_init_floor)
    # inverse of softplus: x = y + log(1 - exp(-y)) = y + log(-expm1(-y))
    inv_dt = dt + torch.log(-torch.expm1(-dt))
    dt_proj.bias.copy_(inv_dt.to(dt_proj.bias.dtype))
    dt_proj.bias._no_reinit = True
    return dt_proj
