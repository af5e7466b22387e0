"""Tests of the shared backbone helpers (arch, out_indices, drop path, the
with_cp rule, the official fan-out init) and LayerNorm2d of mmssm layers."""
from unittest import mock

import pytest
import torch
import torch.nn as nn

from mmssm.models.layers import (LayerNorm2d, build_layer_norm, parse_arch,
                                 parse_out_indices, stage_drop_path_rates,
                                 to_channels_first, to_channels_last)
from mmssm.models.layers import backbone_utils
from mmssm.models.layers.backbone_utils import (maybe_checkpoint,
                                                trunc_normal_fan_out_init)


def test_layer_norm_2d_equals_layer_norm_on_channels_last_view():
    torch.manual_seed(0)
    ln2d = LayerNorm2d(6, eps=1e-6)
    ln = nn.LayerNorm(6, eps=1e-6)
    with torch.no_grad():
        ln2d.weight.normal_()
        ln2d.bias.normal_()
    ln.load_state_dict(ln2d.state_dict())  # interchangeable weights
    x = torch.randn(2, 6, 5, 7) * 3 + 1
    expected = ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(ln2d(x), expected)
    # hand computation for one pixel
    pixel = x[1, :, 2, 3]
    ref = (pixel - pixel.mean()) / torch.sqrt(pixel.var(unbiased=False) +
                                              1e-6) * ln2d.weight + ln2d.bias
    torch.testing.assert_close(ln2d(x)[1, :, 2, 3], ref)
    with pytest.raises(ValueError, match=r'expects a \(B, 6, H, W\)'):
        ln2d(torch.randn(2, 5, 6, 6))


def test_build_layer_norm():
    assert type(build_layer_norm(4)) is nn.LayerNorm
    norm = build_layer_norm(4, eps=1e-5, data_format='channels_first')
    assert isinstance(norm, LayerNorm2d) and norm.eps == 1e-5
    with pytest.raises(ValueError, match='data_format'):
        build_layer_norm(4, data_format='NCHW')


def test_parse_arch_and_out_indices():
    zoo = {'t': {'depths': [1], 'dims': [8]}}
    settings = parse_arch('T', zoo, ('depths', 'dims'))
    assert settings == zoo['t'] and settings is not zoo['t']
    with pytest.raises(ValueError, match="Unknown net arch 'x'"):
        parse_arch('x', zoo, ('depths', ), name='net')
    assert parse_out_indices((-1, 1), 4) == (1, 3)
    assert parse_out_indices(0, 4) == (0, )
    with pytest.raises(ValueError, match='out of range'):
        parse_out_indices((-5, ), 4)


def test_stage_drop_path_rates_and_permutes():
    rates = stage_drop_path_rates(0.5, [2, 1, 3])
    assert [len(r) for r in rates] == [2, 1, 3]
    flat = [r for stage in rates for r in stage]
    assert flat == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert stage_drop_path_rates(0.0, [2]) == [[0.0, 0.0]]
    x = torch.arange(24.).reshape(1, 2, 3, 4)
    last = to_channels_last(x)
    assert last.shape == (1, 3, 4, 2) and last[0, 1, 2, 1] == x[0, 1, 1, 2]
    first = to_channels_first(last)
    assert first.is_contiguous() and torch.equal(first, x)


def test_with_cp_rule():
    """Checkpoint in training mode while autograd records; never in eval or
    under no_grad, whatever the input's requires_grad."""
    layer = nn.Linear(3, 3)
    x = torch.randn(2, 3)  # requires no grad: still checkpointed
    with mock.patch.object(backbone_utils.cp, 'checkpoint',
                           wraps=backbone_utils.cp.checkpoint) as spy:
        out = maybe_checkpoint(True, True, layer, x)
        assert spy.call_count == 1
        assert spy.call_args.kwargs == dict(use_reentrant=False)
        out.sum().backward()
        assert layer.weight.grad is not None
        maybe_checkpoint(True, False, layer, x)
        maybe_checkpoint(False, True, layer, x)
        with torch.no_grad():
            maybe_checkpoint(True, True, layer, x)
        assert spy.call_count == 1


def test_trunc_normal_fan_out_init():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 64, 3, groups=2)
    lin = nn.Linear(256, 512)
    norm = nn.LayerNorm(4)
    with torch.no_grad():
        norm.weight.fill_(3)
        norm.bias.fill_(2)
    for m in (conv, lin, norm):
        trunc_normal_fan_out_init(m)
    fan_out = 3 * 3 * 64 // 2
    assert conv.weight.std().item() == pytest.approx((2 / fan_out)**0.5,
                                                     rel=0.05)
    assert lin.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert lin.weight.abs().max() <= 2  # mmengine's truncation bounds
    assert not conv.bias.any() and not lin.bias.any()
    assert torch.equal(norm.weight, torch.ones(4))
    assert not norm.bias.any()
