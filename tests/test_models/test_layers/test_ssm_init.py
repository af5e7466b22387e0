import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmssm.models.layers.ssm_init import a_log_init, dt_proj_init_


def test_a_log_init_values():
    a_log = a_log_init(3, 4)
    assert a_log.shape == (3, 4)
    assert a_log.dtype == torch.float32
    expected = torch.tensor([0., math.log(2), math.log(3), math.log(4)])
    for row in a_log:
        torch.testing.assert_close(row, expected)
    # A = -exp(A_log) = -(1..N)
    torch.testing.assert_close(-torch.exp(a_log[0]),
                               -torch.arange(1., 5.))
    assert a_log_init(5, 1).abs().max() == 0
    with pytest.raises(ValueError, match='positive'):
        a_log_init(0, 16)


def test_dt_proj_init_range():
    torch.manual_seed(0)
    dt_rank, d_inner = 12, 4096
    proj = nn.Linear(dt_rank, d_inner)
    dt_proj_init_(proj, dt_rank, dt_scale=2.0)
    bound = dt_rank**-0.5 * 2.0
    assert proj.weight.abs().max() <= bound
    assert proj.weight.abs().max() > 0.9 * bound
    dt = F.softplus(proj.bias)
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 1e-1 * (1 + 1e-5)
    # log-uniform: log(dt) is uniform on [log 1e-3, log 1e-1], mean at log 1e-2
    assert abs(dt.log().mean().item() - math.log(1e-2)) < 0.1
    assert getattr(proj.bias, '_no_reinit', False)


def test_dt_proj_init_floor_and_constant():
    proj = nn.Linear(4, 64)
    dt_proj_init_(proj, 4, dt_min=1e-6, dt_max=1e-6, dt_init_floor=1e-4,
                  dt_init='constant')
    torch.testing.assert_close(F.softplus(proj.bias),
                               torch.full((64, ), 1e-4), rtol=1e-4, atol=0)
    torch.testing.assert_close(proj.weight, torch.full((64, 4), 0.5))


def test_dt_proj_init_errors():
    with pytest.raises(ValueError, match='dt_rank'):
        dt_proj_init_(nn.Linear(4, 8), 5)
    with pytest.raises(TypeError, match='bias'):
        dt_proj_init_(nn.Linear(4, 8, bias=False), 4)
    with pytest.raises(ValueError, match='dt_init'):
        dt_proj_init_(nn.Linear(4, 8), 4, dt_init='xavier')
