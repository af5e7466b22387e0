"""Tests of the MambaOut backbone, its checkpoint conversion and its head.

The references here are written independently of the implementation: a
functional forward pass from an official-layout state dict, a naive Gated CNN
block, a parameter-count formula, and hand-written key maps from the mmssm
layout to the official and timm layouts (the inverse of the converter).
"""
import copy
import itertools
import math
import re
import runpy
import sys
from collections import OrderedDict
from unittest import mock

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS as ROOT_MODELS

from mmssm.models.layers import backbone_utils
from mmssm.models.backbones.mambaout import (GatedCNNBlock, MambaOut,
                                             convert_mambaout,
                                             mambaout_checkpoint_layout)
from mmssm.registry import MODELS as MMSSM_MODELS
from tiny_demo_configs import randomize_params  # noqa: I

TINY = dict(depths=[1, 1, 2, 1], dims=[8, 16, 24, 32])
CONVERTER = 'tools/model_converters/mambaout2mmssm.py'


def _randomize(module, seed=0):
    """Give every parameter random values (LN weights away from 1)."""
    return randomize_params(module, seed)


def _tiny(seed=0, **kwargs):
    return _randomize(MambaOut(arch=TINY, **kwargs), seed)


def _image(h, w, batch=2, seed=1):
    return torch.randn(
        batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------
# Independent references
# ---------------------------------------------------------------------------
def _naive_gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def _naive_layer_norm(x, weight, bias, eps=1e-6):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean)**2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def _naive_depthwise_conv(x, weight, bias):
    """Channels-last depthwise conv, zero padding k // 2, explicit shifts."""
    b, h, w, c = x.shape
    k = weight.shape[-1]
    pad = k // 2
    padded = x.new_zeros(b, h + 2 * pad, w + 2 * pad, c)
    padded[:, pad:pad + h, pad:pad + w] = x
    out = x.new_zeros(b, h, w, c) + bias
    for dy in range(k):
        for dx in range(k):
            out += padded[:, dy:dy + h, dx:dx + w] * weight[:, 0, dy, dx]
    return out


def _naive_gated_block(x, p, conv_channels):
    """The Gated CNN block of the paper's Algorithm 1, written out."""
    y = _naive_layer_norm(x, p['norm.weight'], p['norm.bias'])
    y = y @ p['fc1.weight'].T + p['fc1.bias']
    hidden = p['fc2.weight'].shape[1]
    g = y[..., :hidden]
    i = y[..., hidden:2 * hidden - conv_channels]
    c = y[..., 2 * hidden - conv_channels:]
    c = _naive_depthwise_conv(c, p['conv.weight'], p['conv.bias'])
    y = (_naive_gelu(g) * torch.cat([i, c], -1)) @ p['fc2.weight'].T
    return x + y + p['fc2.bias']


def _reference_forward(sd, x, depths, pooled=False):
    """Functional MambaOut forward from an OFFICIAL-layout state dict.

    Returns the last-stage map (channels-last) before any output norm, or the
    official classifier features ``norm(mean(x))`` when ``pooled``.
    """

    def ln(t, key):
        return F.layer_norm(t, t.shape[-1:], sd[key + '.weight'],
                            sd[key + '.bias'], 1e-6)

    def conv_s2(t, key):  # channels-first in, channels-last out
        return F.conv2d(
            t, sd[key + '.weight'], sd[key + '.bias'], stride=2,
            padding=1).permute(0, 2, 3, 1)

    stem = 'downsample_layers.0'
    x = ln(conv_s2(x, f'{stem}.conv1'), f'{stem}.norm1')
    x = F.gelu(x).permute(0, 3, 1, 2)
    x = ln(conv_s2(x, f'{stem}.conv2'), f'{stem}.norm2')
    for s, depth in enumerate(depths):
        if s > 0:
            x = conv_s2(x.permute(0, 3, 1, 2), f'downsample_layers.{s}.conv')
            x = ln(x, f'downsample_layers.{s}.norm')
        for j in range(depth):
            p = {
                k[len(f'stages.{s}.{j}.'):]: v
                for k, v in sd.items() if k.startswith(f'stages.{s}.{j}.')
            }
            x = _naive_gated_block(x, p, x.shape[-1])
    if pooled:
        return ln(x.mean((1, 2)), 'norm')
    return x


def _expected_param_count(depths, dims, in_channels=3, num_out_norms=4):
    """MambaOut parameter count from the architecture description."""
    c0 = dims[0]
    n = (in_channels * (c0 // 2) * 9 + c0 // 2) + 2 * (c0 // 2)  # conv1, LN
    n += (c0 // 2) * c0 * 9 + c0 + 2 * c0  # conv2, LN
    for s in range(1, len(dims)):
        n += dims[s - 1] * dims[s] * 9 + dims[s] + 2 * dims[s]
    for depth, c in zip(depths, dims):
        h = int(8 / 3 * c)
        block = 2 * c + (c * 2 * h + 2 * h) + (c * 49 + c) + (h * c + c)
        n += depth * block
    n += sum(2 * c for c in dims[len(dims) - num_out_norms:])
    return n


def _head_param_count(c, num_classes=1000):
    h = 4 * c
    return (c * h + h) + 2 * h + (h * num_classes + num_classes)


# Hand-written inverse maps: mmssm layout -> official / timm layouts.
def _mmssm_to_official(key, last=3):
    if key.startswith(f'norm{last}.'):
        return 'norm.' + key.split('.', 1)[1]
    return key


def _mmssm_to_timm(key, last=3):
    m = re.match(r'downsample_layers\.0\.(.*)', key)
    if m:
        return 'stem.' + m.group(1)
    m = re.match(r'downsample_layers\.(\d+)\.(.*)', key)
    if m:
        return f'stages.{m.group(1)}.downsample.{m.group(2)}'
    m = re.match(r'stages\.(\d+)\.(\d+)\.(.*)', key)
    if m:
        return f'stages.{m.group(1)}.blocks.{m.group(2)}.{m.group(3)}'
    table = {
        f'norm{last}.': 'head.norm.',
        'head.fc1.': 'head.pre_logits.fc.',
        'head.norm.': 'head.pre_logits.norm.',
        'head.fc2.': 'head.fc.',
    }
    for src, dst in table.items():
        if key.startswith(src):
            return dst + key[len(src):]
    raise AssertionError(f'unmapped key {key}')


def _classifier(seed=0):
    """A tiny MambaOut classifier: backbone + MambaOutHead, random weights."""
    from mmssm.cls.mambaout_head import MambaOutHead
    backbone = _tiny(seed, out_indices=(3, ), gap_before_final_norm=True)
    head = _randomize(MambaOutHead(num_classes=5, in_channels=32), seed + 1)
    state = OrderedDict(backbone.state_dict())
    state.update(('head.' + k, v) for k, v in head.state_dict().items())
    return backbone, head, state


# ---------------------------------------------------------------------------
# Architecture
# ---------------------------------------------------------------------------
def test_arch_zoo_presets():
    expected = {
        'femto': ([3, 3, 9, 3], [48, 96, 192, 288]),
        'kobe': ([3, 3, 15, 3], [48, 96, 192, 288]),
        'tiny': ([3, 3, 9, 3], [96, 192, 384, 576]),
        'small': ([3, 4, 27, 3], [96, 192, 384, 576]),
        'base': ([3, 4, 27, 3], [128, 256, 512, 768]),
    }
    assert set(MambaOut.arch_zoo) == set(expected)
    for name, (depths, dims) in expected.items():
        assert MambaOut.arch_zoo[name] == dict(depths=depths, dims=dims)
    model = MambaOut(arch='FEMTO')
    assert [len(s) for s in model.stages] == [3, 3, 9, 3]


@pytest.mark.parametrize('arch,exc,match', [
    ('huge', ValueError, 'Unknown MambaOut arch'),
    (dict(depths=[1, 1]), ValueError, r"missing \['dims'\]"),
    (dict(depths=[1, 1], dims=[8]), ValueError, 'as many depths as dims'),
    (dict(depths=[1, 0], dims=[8, 16]), ValueError, 'depths must be >= 1'),
    ([1, 2], TypeError, 'must be a str or a dict'),
])
def test_bad_arch(arch, exc, match):
    with pytest.raises(exc, match=match):
        MambaOut(arch=arch)


def test_structure_matches_paper():
    model = MambaOut(arch='tiny')
    block = model.stages[2][0]
    assert block.fc1.weight.shape == (2 * 1024, 384)  # int(8/3*384) = 1024
    assert block.split_indices == (1024, 1024 - 384, 384)
    assert block.conv.weight.shape == (384, 1, 7, 7)
    assert block.conv.groups == 384
    assert block.fc2.weight.shape == (384, 1024)
    stem = model.downsample_layers[0]
    assert stem.conv1.weight.shape == (48, 3, 3, 3)
    assert stem.conv1.stride == (2, 2) and stem.conv2.stride == (2, 2)
    assert stem.conv2.weight.shape == (96, 48, 3, 3)
    assert isinstance(stem.act, nn.GELU) and stem.act.approximate == 'none'
    down = model.downsample_layers[3]
    assert down.conv.weight.shape == (576, 384, 3, 3)
    assert down.conv.stride == (2, 2) and down.conv.padding == (1, 1)
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert norms and all(m.eps == 1e-6 for m in norms)


def test_drop_path_schedule():
    model = MambaOut(arch=TINY, drop_path_rate=0.4)
    blocks = [b for stage in model.stages for b in stage]
    assert isinstance(blocks[0].drop_path, nn.Identity)
    rates = [b.drop_path.drop_prob for b in blocks[1:]]
    assert rates == pytest.approx([0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match='drop_path_rate'):
        MambaOut(arch=TINY, drop_path_rate=1.0)


def test_gated_cnn_block_matches_naive_computation():
    torch.manual_seed(0)
    for conv_ratio in (1.0, 0.5):
        block = _randomize(
            GatedCNNBlock(12, conv_ratio=conv_ratio), seed=3).double()
        conv_channels = int(conv_ratio * 12)
        assert block.split_indices == (32, 32 - conv_channels,
                                       conv_channels)
        x = torch.randn(2, 5, 9, 12, dtype=torch.float64)
        params = dict(block.named_parameters())
        expected = _naive_gated_block(x, params, conv_channels)
        torch.testing.assert_close(
            block(x), expected, rtol=1e-10, atol=1e-10)


def test_forward_matches_functional_reference():
    model = _tiny().double().eval()
    x = _image(37, 50).double()
    official = {
        _mmssm_to_official(k): v
        for k, v in model.state_dict().items()
    }
    ref = _reference_forward(official, x, TINY['depths'])
    expected = F.layer_norm(ref, (32, ), official['norm.weight'],
                            official['norm.bias'], 1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(model(x)[3], expected, rtol=1e-9, atol=1e-9)

    pooled = _tiny(out_indices=(3, ), gap_before_final_norm=True)
    pooled = pooled.double().eval()
    pooled.load_state_dict(model.state_dict(), strict=False)
    (out, ) = pooled(x)
    assert out.shape == (2, 32)
    torch.testing.assert_close(
        out,
        _reference_forward(official, x, TINY['depths'], pooled=True),
        rtol=1e-9,
        atol=1e-9)


# ---------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------
def test_output_shapes_224_femto():
    model = MambaOut(arch='femto').eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 224, 224))
    assert [tuple(o.shape) for o in outs] == [(1, 48, 56, 56),
                                             (1, 96, 28, 28),
                                             (1, 192, 14, 14),
                                             (1, 288, 7, 7)]
    assert all(o.is_contiguous() for o in outs)


@pytest.mark.parametrize('hw', [(97, 131), (33, 64), (1, 5), (224, 223)])
def test_output_shapes_not_divisible_by_32(hw):
    h, w = hw
    model = _tiny().eval()
    with torch.no_grad():
        outs = model(_image(h, w, batch=1))
    expected = [(1, c, math.ceil(h / s), math.ceil(w / s))
                for c, s in zip(TINY['dims'], (4, 8, 16, 32))]
    assert [tuple(o.shape) for o in outs] == expected
    assert all(torch.isfinite(o).all() for o in outs)


def test_every_out_indices_combination():
    full = _tiny().eval()
    x = _image(40, 56, batch=1)
    with torch.no_grad():
        ref = full(x)
    combos = [
        c for r in range(1, 5) for c in itertools.combinations(range(4), r)
    ]
    assert len(combos) == 15
    for combo in combos:
        model = MambaOut(arch=TINY, out_indices=combo).eval()
        result = model.load_state_dict(full.state_dict(), strict=False)
        assert result.missing_keys == []
        assert sorted({k.split('.')[0] for k in result.unexpected_keys}) == [
            f'norm{i}' for i in range(4) if i not in combo
        ]
        with torch.no_grad():
            outs = model(x)
        assert len(outs) == len(combo)
        for out, i in zip(outs, combo):
            torch.testing.assert_close(out, ref[i], rtol=0, atol=0)
        assert {n for n, _ in model.named_children()
                if n.startswith('norm')} == {f'norm{i}' for i in combo}
    # negative and unsorted indices normalise to sorted stage indices
    assert MambaOut(arch=TINY, out_indices=(-1, 0)).out_indices == (0, 3)
    assert MambaOut(arch=TINY, out_indices=2).out_indices == (2, )


@pytest.mark.parametrize('out_indices,exc,match', [
    ((0, 4), ValueError, 'out of range'),
    ((1, -3), ValueError, 'twice'),
    ((), TypeError, 'non-empty'),
    ((0.5, ), TypeError, 'must hold ints'),
])
def test_bad_out_indices(out_indices, exc, match):
    with pytest.raises(exc, match=match):
        MambaOut(arch=TINY, out_indices=out_indices)


# ---------------------------------------------------------------------------
# Parameter counts (build only, no forward)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('arch,paper_millions', [('femto', 7.3),
                                                 ('tiny', 26.5),
                                                 ('small', 48.5),
                                                 ('base', 84.8)])
def test_parameter_counts_match_paper(arch, paper_millions):
    from mmssm.cls.mambaout_head import MambaOutHead
    depths, dims = MambaOut.arch_zoo[arch]['depths'], MambaOut.arch_zoo[
        arch]['dims']
    backbone = MambaOut(arch=arch, out_indices=(3, ),
                        gap_before_final_norm=True)
    head = MambaOutHead(num_classes=1000, in_channels=dims[-1])
    n_backbone = sum(p.numel() for p in backbone.parameters())
    n_head = sum(p.numel() for p in head.parameters())
    assert n_backbone == _expected_param_count(depths, dims, num_out_norms=1)
    assert n_head == _head_param_count(dims[-1])
    total = (n_backbone + n_head) / 1e6
    assert abs(total - paper_millions) / paper_millions < 0.01, total
    # the dense backbone adds three output norms and drops nothing else
    dense = MambaOut(arch=arch)
    assert sum(p.numel() for p in dense.parameters()) == n_backbone + sum(
        2 * c for c in dims[:3])


# ---------------------------------------------------------------------------
# Training options
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('frozen_stages', [-1, 0, 1, 2, 4])
def test_frozen_stages(frozen_stages):
    """-1: nothing; 0: the stem; k: the stem and stages 0..k-1 with their
    downsampling layers and output norms (mmdet Swin's meaning)."""
    model = MambaOut(arch=TINY, frozen_stages=frozen_stages)
    model.train()
    n_frozen = max(frozen_stages, 0)
    stem_frozen = frozen_stages >= 0
    for i in range(4):
        frozen = i < n_frozen
        for module, is_frozen in ((model.downsample_layers[i],
                                   frozen or (i == 0 and stem_frozen)),
                                  (model.stages[i], frozen),
                                  (getattr(model, f'norm{i}'), frozen)):
            assert all(p.requires_grad is not is_frozen
                       for p in module.parameters())
            assert all(m.training is not is_frozen for m in module.modules())
    # gradients stop at the frozen part
    if 0 < n_frozen < 4:
        outs = model(_image(32, 32, batch=1))
        sum(o.sum() for o in outs).backward()
        assert model.stages[n_frozen - 1][0].fc1.weight.grad is None
        assert model.stages[n_frozen][0].fc1.weight.grad is not None


@pytest.mark.parametrize('frozen_stages', [-2, 5])
def test_bad_frozen_stages(frozen_stages):
    with pytest.raises(ValueError, match='frozen_stages'):
        MambaOut(arch=TINY, frozen_stages=frozen_stages)


def test_norm_eval_refused_without_batch_norm():
    """MambaOut has LayerNorms only: norm_eval would do nothing."""
    with pytest.raises(ValueError, match='MambaOut has no BatchNorm.*'
                       'norm_eval=True'):
        _tiny(norm_eval=True)


def test_with_cp_identical_outputs_and_grads():
    x = _image(36, 44)
    results = []
    for with_cp in (False, True):
        model = _tiny(with_cp=with_cp, drop_path_rate=0.3).train()
        with mock.patch.object(
                backbone_utils.cp,
                'checkpoint',
                wraps=backbone_utils.cp.checkpoint) as spy:
            torch.manual_seed(123)
            outs = model(x)
            loss = sum((o * o).mean() for o in outs)
            loss.backward()
        assert spy.call_count == (5 if with_cp else 0)
        for call in spy.call_args_list:
            assert call.kwargs == dict(use_reentrant=False)
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        results.append(([o.detach() for o in outs], grads))
    (outs_a, grads_a), (outs_b, grads_b) = results
    for a, b in zip(outs_a, outs_b):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(
            grads_a[name], grads_b[name], rtol=1e-6, atol=1e-7, msg=name)


def test_default_init_is_official():
    torch.manual_seed(0)
    model = MambaOut(arch='femto')
    model.init_weights()
    fc1 = model.stages[2][0].fc1
    # timm's trunc_normal_(std=.02) truncates at +-2 (absolute), as mmengine's
    # TruncNormalInit does: in effect a normal init with std 0.02
    assert fc1.weight.std().item() == pytest.approx(0.02, rel=0.03)
    assert fc1.weight.mean().abs().item() < 1e-3
    assert torch.all(fc1.bias == 0)
    assert torch.all(model.stages[0][0].conv.bias == 0)
    assert torch.all(model.norm0.weight == 1) and torch.all(
        model.norm0.bias == 0)


# ---------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('x,exc,match', [
    (torch.randn(3, 32, 32), ValueError, r'4D \(B, C, H, W\)'),
    (torch.randn(1, 1, 3, 32, 32), ValueError, '4D'),
    (torch.randn(1, 4, 32, 32), ValueError, 'built for 3 input channels'),
    (torch.randn(1, 32, 32, 3), ValueError, 'got 32'),
    (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), TypeError,
     'floating point'),
    (torch.zeros(1, 3, 0, 32), ValueError, 'empty input'),
    ([[0.0]], TypeError, 'torch.Tensor'),
])
def test_bad_inputs(x, exc, match):
    model = MambaOut(arch=TINY)
    with pytest.raises(exc, match=match):
        model(x)


def test_other_in_channels():
    model = MambaOut(arch=TINY, in_channels=1).eval()
    outs = model(torch.randn(1, 1, 32, 32))
    assert outs[0].shape == (1, 8, 8, 8)


# ---------------------------------------------------------------------------
# Checkpoint conversion and loading
# ---------------------------------------------------------------------------
def test_convert_official_layout_round_trip():
    backbone, head, state = _classifier()
    official = OrderedDict(
        (_mmssm_to_official(k), v) for k, v in state.items())
    assert 'norm.weight' in official and 'norm3.weight' not in official
    assert mambaout_checkpoint_layout(official) == 'official'
    converted = convert_mambaout(official)
    assert list(converted) == list(state)
    assert all(converted[k] is state[k] for k in state)

    # the converted dict and the raw official one load strictly
    x = _image(40, 48)
    backbone.eval()
    expected = head(backbone(x))
    for source in (converted, official):
        new = MambaOut(arch=TINY, out_indices=(3, ),
                       gap_before_final_norm=True).eval()
        result = new.load_state_dict(source, strict=True)
        assert result.missing_keys == [] and result.unexpected_keys == []
        new_head = type(head)(num_classes=5, in_channels=32)
        new_head.load_state_dict({
            k[5:]: v
            for k, v in convert_mambaout(source).items()
            if k.startswith('head.')
        })
        torch.testing.assert_close(
            new_head(new(x)), expected, rtol=0, atol=0)


def test_convert_timm_layout_round_trip():
    backbone, head, state = _classifier(seed=5)
    timm = OrderedDict((_mmssm_to_timm(k), v) for k, v in state.items())
    assert 'stem.conv1.weight' in timm
    assert 'stages.2.blocks.1.fc1.weight' in timm
    assert 'stages.1.downsample.conv.weight' in timm
    assert 'head.pre_logits.fc.weight' in timm and 'head.fc.bias' in timm
    assert mambaout_checkpoint_layout(timm) == 'timm'
    converted = convert_mambaout(timm)
    assert set(converted) == set(state)
    assert all(converted[k] is state[k] for k in state)

    x = _image(40, 48)
    backbone.eval()
    expected = backbone(x)
    new = MambaOut(arch=TINY, out_indices=(3, ),
                   gap_before_final_norm=True).eval()
    result = new.load_state_dict(timm, strict=True)  # pre-hook converts
    assert result.missing_keys == [] and result.unexpected_keys == []
    torch.testing.assert_close(new(x), expected, rtol=0, atol=0)


def test_load_official_into_dense_backbone_under_prefix():
    """In a detector the backbone sits under ``backbone.``; only the stage-3
    norm comes from the classifier's pooled-feature norm."""
    _, _, state = _classifier(seed=2)
    official = {
        'backbone.' + _mmssm_to_official(k): v
        for k, v in state.items()
    }
    official['neck.some.weight'] = torch.zeros(1)
    wrapper = nn.Module()
    wrapper.backbone = MambaOut(arch=TINY)
    wrapper.neck = nn.Module()
    result = wrapper.load_state_dict(official, strict=False)
    assert sorted(result.missing_keys) == sorted(
        f'backbone.norm{i}.{p}' for i in range(3) for p in ('weight', 'bias'))
    assert result.unexpected_keys == ['neck.some.weight']
    torch.testing.assert_close(wrapper.backbone.norm3.weight,
                               state['norm3.weight'])
    # without a stage-3 output the pooled norm is dropped, not unexpected
    wrapper.backbone = MambaOut(arch=TINY, out_indices=(0, 1))
    result = wrapper.load_state_dict(official, strict=False)
    assert result.unexpected_keys == ['neck.some.weight']


def test_deepcopy_keeps_key_conversion():
    """EMA hooks deep-copy the model: the copy converts on load too."""
    _, _, state = _classifier(seed=3)
    official = {_mmssm_to_official(k): v for k, v in state.items()}
    model = MambaOut(arch=TINY, out_indices=(3, ), gap_before_final_norm=True)
    clone = copy.deepcopy(model)
    result = clone.load_state_dict(official, strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    torch.testing.assert_close(clone.norm3.weight, state['norm3.weight'])
    assert not torch.equal(model.norm3.weight, state['norm3.weight'])


def test_convert_mmssm_layout_is_identity():
    model = _tiny()
    state = model.state_dict()
    assert mambaout_checkpoint_layout(state) == 'mmssm'
    converted = convert_mambaout(state)
    assert list(converted) == list(state)


def test_convert_rejects_foreign_and_mixed_checkpoints():
    _, _, state = _classifier()
    official = {_mmssm_to_official(k): v for k, v in state.items()}
    with pytest.raises(ValueError, match="'layer1.0.conv1.weight' is not"):
        convert_mambaout(dict(official, **{'layer1.0.conv1.weight': 0}))
    mixed = dict(official, **{'stem.conv1.weight': 0})
    with pytest.raises(ValueError, match='mixes timm MambaOut keys'):
        convert_mambaout(mixed)
    with pytest.raises(ValueError, match='pass num_stages'):
        convert_mambaout({'norm.weight': torch.ones(2)})
    assert list(convert_mambaout({'norm.weight': torch.ones(2)},
                                 num_stages=4)) == ['norm3.weight']


@pytest.mark.parametrize('layout', ['official', 'timm'])
def test_pretrained_init_cfg_loads_checkpoint_file(tmp_path, layout):
    backbone, _, state = _classifier(seed=7)
    mapping = _mmssm_to_official if layout == 'official' else _mmssm_to_timm
    source = OrderedDict((mapping(k), v.clone()) for k, v in state.items())
    path = tmp_path / f'mambaout_{layout}.pth'
    # official releases are flat; wrap the timm one like a training file
    torch.save(source if layout == 'official' else dict(state_dict=source),
               path)
    model = MambaOut(
        arch=TINY,
        out_indices=(3, ),
        gap_before_final_norm=True,
        init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    for key, value in backbone.state_dict().items():
        torch.testing.assert_close(
            model.state_dict()[key], value, rtol=0, atol=0, msg=key)
    x = _image(33, 47)
    torch.testing.assert_close(
        model.eval()(x), backbone.eval()(x), rtol=0, atol=0)


def test_converter_tool(tmp_path, monkeypatch):
    backbone, _, state = _classifier(seed=9)
    timm = OrderedDict(
        ('module.' + _mmssm_to_timm(k), v) for k, v in state.items())
    src = tmp_path / 'timm.pth'
    torch.save(dict(model=timm, epoch=3), src)
    for extra, prefix, with_head in ((['--mmpretrain'], 'backbone.', True),
                                     (['--no-head'], '', False)):
        dst = tmp_path / 'out.pth'
        monkeypatch.setattr(sys, 'argv',
                            [CONVERTER, str(src), str(dst)] + extra)
        runpy.run_path(CONVERTER, run_name='__main__')
        saved = torch.load(dst, map_location='cpu')
        assert saved['meta']['source_layout'] == 'timm'
        out = saved['state_dict']
        expected = {prefix + k for k in backbone.state_dict()}
        if with_head:
            expected |= {k for k in state if k.startswith('head.')}
        assert set(out) == expected
        for key, value in out.items():
            plain = key[len(prefix):] if key.startswith(prefix) else key
            torch.testing.assert_close(value, state[plain], rtol=0, atol=0)
    # --ema without model_ema is an error, not a silent fallback
    monkeypatch.setattr(sys, 'argv',
                        [CONVERTER, str(src), str(dst), '--ema'])
    with pytest.raises(SystemExit, match='model_ema'):
        runpy.run_path(CONVERTER, run_name='__main__')
    # --ema picks the EMA weights of an official training checkpoint
    official = {_mmssm_to_official(k): v for k, v in state.items()}
    ema = {k: v + 1 for k, v in official.items()}
    torch.save(dict(model=official, model_ema=ema), src)
    runpy.run_path(CONVERTER, run_name='__main__')
    out = torch.load(dst, map_location='cpu')['state_dict']
    torch.testing.assert_close(out['norm3.weight'], ema['norm.weight'])
    torch.testing.assert_close(out['head.fc2.bias'], ema['head.fc2.bias'])


# ---------------------------------------------------------------------------
# Registry and head
# ---------------------------------------------------------------------------
def test_registered_in_mmssm_scope_and_root():
    for registry, type_name in ((MMSSM_MODELS, 'MambaOut'),
                                (ROOT_MODELS, 'MambaOut'),
                                (ROOT_MODELS, 'mmssm.MambaOut')):
        model = registry.build(dict(type=type_name, arch=TINY))
        assert isinstance(model, MambaOut)


def test_mambaout_head():
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS

    from mmssm.cls.mambaout_head import MambaOutHead
    head = PRETRAIN_MODELS.build(
        dict(type='MambaOutHead', num_classes=7, in_channels=16))
    assert isinstance(head, MambaOutHead)
    _randomize(head, seed=4).eval()
    x = torch.randn(3, 16)
    p = dict(head.named_parameters())
    hidden = _naive_layer_norm(
        _naive_gelu(x @ p['fc1.weight'].T + p['fc1.bias']), p['norm.weight'],
        p['norm.bias'])
    expected = hidden @ p['fc2.weight'].T + p['fc2.bias']
    torch.testing.assert_close(head((x, )), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match='gap_before_final_norm=True'):
        head((torch.randn(1, 16, 2, 2), ))


def test_mmpretrain_image_classifier_with_converted_checkpoint(tmp_path):
    """The official classifier, rebuilt as an mmpretrain ImageClassifier,
    loads a converted official file strictly and gives the official loss."""
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    from mmpretrain.structures import DataSample

    import mmssm.cls.mambaout_head  # noqa: F401
    _, _, state = _classifier(seed=11)
    official = {_mmssm_to_official(k): v for k, v in state.items()}
    src, dst = tmp_path / 'official.pth', tmp_path / 'mmpretrain.pth'
    torch.save(official, src)
    with mock.patch.object(
            sys, 'argv', [CONVERTER, str(src),
                          str(dst), '--mmpretrain']):
        runpy.run_path(CONVERTER, run_name='__main__')
    model = PRETRAIN_MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(
                type='MambaOut',
                arch=TINY,
                out_indices=(3, ),
                gap_before_final_norm=True),
            head=dict(type='MambaOutHead', num_classes=5, in_channels=32)))
    result = model.load_state_dict(
        torch.load(dst, map_location='cpu')['state_dict'], strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    model.eval()
    x = _image(40, 40, batch=3).double()
    model.double()
    labels = torch.tensor([0, 3, 4])
    samples = [DataSample().set_gt_label(int(i)) for i in labels]
    losses = model(x, samples, mode='loss')
    ref = {k: v.double() for k, v in official.items()}
    feats = _reference_forward(ref, x, TINY['depths'], pooled=True)
    p = {k[5:]: v for k, v in ref.items() if k.startswith('head.')}
    hidden = _naive_layer_norm(
        _naive_gelu(feats @ p['fc1.weight'].T + p['fc1.bias']),
        p['norm.weight'], p['norm.bias'])
    logits = hidden @ p['fc2.weight'].T + p['fc2.bias']
    torch.testing.assert_close(
        losses['loss'], F.cross_entropy(logits, labels), rtol=1e-8,
        atol=1e-8)
