"""Tests of the MambaVision backbone and its checkpoint conversion.

The reference here is written independently of the implementation, from the
description of the official code (NVlabs/MambaVision): a functional forward
pass that reads a state dict in the official key layout, with plain loops
(windows cut by slicing, the 'same' depthwise conv1d as a sum of shifted
copies, attention as an explicit softmax, the scan by
:func:`mmssm.ops.selective_scan_ref`, norms and GELUs written out).
"""
import math
import runpy
import sys
from collections import OrderedDict

import pytest
import torch
from mmengine.registry import MODELS as ROOT_MODELS

from mmssm.models.backbones.mambavision import (MambaVision,
                                                convert_mambavision,
                                                mambavision_checkpoint_layout,
                                                window_partition,
                                                window_reverse)
from mmssm.ops import selective_scan_ref
from mmssm.registry import MODELS as MMSSM_MODELS
from mmssm.utils.checkpoint import CheckpointError

CONVERTER = 'tools/model_converters/mambavision2mmssm.py'
#: a reduced arch with every kind of block, layer scale and odd depths
MINI = dict(
    dim=16, in_dim=8, depths=[1, 2, 3, 2], num_heads=[1, 2, 2, 4],
    layer_scale=0.5)
MINI_WINDOWS = (8, 8, 4, 3)


# ---------------------------------------------------------------------------
# Independent reference of the official forward
# ---------------------------------------------------------------------------
def _bn(x, sd, name, eps):
    shape = (1, -1, 1, 1)
    return ((x - sd[f'{name}.running_mean'].view(shape)) /
            torch.sqrt(sd[f'{name}.running_var'].view(shape) + eps) *
            sd[f'{name}.weight'].view(shape) + sd[f'{name}.bias'].view(shape))


def _ln(x, w, b, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean)**2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def _gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(
        math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def _gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def _silu(x):
    return x / (1 + torch.exp(-x))


def _conv(x, sd, name, stride=1):
    return torch.nn.functional.conv2d(
        x, sd[f'{name}.weight'], sd.get(f'{name}.bias'), stride=stride,
        padding=1)


def _dwconv1d_same(x, weight):
    """Depthwise conv1d, kernel 3, zero 'same' padding, no bias: (B, C, L)."""
    length = x.shape[-1]
    xp = torch.nn.functional.pad(x, (1, 1))
    return sum(weight[:, 0, k, None] * xp[..., k:k + length]
               for k in range(3))


def _mixer(x, sd, p, dim):
    half = dim // 2
    d_state = 8
    rank = math.ceil(dim / 16)
    xz = (x @ sd[p + 'in_proj.weight'].T).transpose(1, 2)
    xs, z = xz[:, :half], xz[:, half:]
    xs = _silu(_dwconv1d_same(xs, sd[p + 'conv1d_x.weight']))
    z = _silu(_dwconv1d_same(z, sd[p + 'conv1d_z.weight']))
    dbl = xs.transpose(1, 2) @ sd[p + 'x_proj.weight'].T
    dt = dbl[..., :rank] @ sd[p + 'dt_proj.weight'].T
    b = dbl[..., rank:rank + d_state].transpose(1, 2)
    c = dbl[..., rank + d_state:].transpose(1, 2)
    y = selective_scan_ref(
        xs, dt.transpose(1, 2), -torch.exp(sd[p + 'A_log']), b, c,
        sd[p + 'D'], delta_bias=sd[p + 'dt_proj.bias'], delta_softplus=True)
    return torch.cat([y, z], 1).transpose(1, 2) @ sd[p + 'out_proj.weight'].T


def _attention(x, sd, p, heads):
    n, length, dim = x.shape
    hd = dim // heads
    qkv = x @ sd[p + 'qkv.weight'].T + sd[p + 'qkv.bias']
    out = torch.empty_like(x)
    for h in range(heads):
        q = qkv[..., h * hd:(h + 1) * hd]
        k = qkv[..., dim + h * hd:dim + (h + 1) * hd]
        v = qkv[..., 2 * dim + h * hd:2 * dim + (h + 1) * hd]
        attn = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd), -1)
        out[..., h * hd:(h + 1) * hd] = attn @ v
    return out @ sd[p + 'proj.weight'].T + sd[p + 'proj.bias']


def _windows(x, ws):
    """(B, C, H, W) -> list of (B, ws*ws, C) windows of the zero-padded map,
    row-major, and the padded size."""
    batch, ch, h, w = x.shape
    hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
    padded = x.new_zeros(batch, ch, hp, wp)
    padded[:, :, :h, :w] = x
    wins = []
    for r in range(hp // ws):
        for c in range(wp // ws):
            tile = padded[:, :, r * ws:(r + 1) * ws, c * ws:(c + 1) * ws]
            wins.append(tile.flatten(2).transpose(1, 2))
    return wins, (hp, wp)


def _unwindows(wins, ws, padded, hw):
    hp, wp = padded
    batch, _, ch = wins[0].shape
    out = wins[0].new_zeros(batch, ch, hp, wp)
    i = 0
    for r in range(hp // ws):
        for c in range(wp // ws):
            out[:, :, r * ws:(r + 1) * ws, c * ws:(c + 1) * ws] = \
                wins[i].transpose(1, 2).reshape(batch, ch, ws, ws)
            i += 1
    return out[:, :, :hw[0], :hw[1]]


def _ref_stem(sd, x):
    """The official stem: two stride-2 3x3 convs, each BatchNorm (eps 1e-4)
    and ReLU."""
    x = torch.relu(_bn(_conv(x, sd, 'patch_embed.conv_down.0', 2), sd,
                       'patch_embed.conv_down.1', 1e-4))
    return torch.relu(_bn(_conv(x, sd, 'patch_embed.conv_down.3', 2), sd,
                          'patch_embed.conv_down.4', 1e-4))


def _ref_conv_stage(sd, x, i, depth):
    """Official stage ``i`` (0 or 1): residual conv - BN - GELU(tanh) - conv -
    BN blocks, layer scale where the weights have one."""
    for j in range(depth):
        p = f'levels.{i}.blocks.{j}.'
        y = _gelu_tanh(_bn(_conv(x, sd, p + 'conv1'), sd, p + 'norm1', 1e-5))
        y = _bn(_conv(y, sd, p + 'conv2'), sd, p + 'norm2', 1e-5)
        if p + 'gamma' in sd:
            y = y * sd[p + 'gamma'].view(1, -1, 1, 1)
        x = x + y
    return x


def _official_forward(sd, x, depths, num_heads, window_size, pooled=False):
    """Features of the official model: the four stage maps before the
    downsampling (the detection wrapper, without output norms), or the
    classifier's pooled feature (final BN, mean)."""
    x = _ref_stem(sd, x)
    feats = []
    for i, depth in enumerate(depths):
        if i < 2:
            x = _ref_conv_stage(sd, x, i, depth)
        else:
            ws = window_size[i]
            hw = x.shape[-2:]
            wins, padded = _windows(x, ws)
            # every window through the blocks, each window on its own
            outs = []
            for t in wins:
                for j in range(depth):
                    p = f'levels.{i}.blocks.{j}.'
                    n_mixers = depth // 2 + 1 if depth % 2 else depth // 2
                    h = _ln(t, sd[p + 'norm1.weight'], sd[p + 'norm1.bias'])
                    if j < n_mixers:
                        h = _mixer(h, sd, p + 'mixer.', x.shape[1])
                    else:
                        h = _attention(h, sd, p + 'mixer.', num_heads[i])
                    t = t + sd.get(p + 'gamma_1', 1.) * h
                    h = _ln(t, sd[p + 'norm2.weight'], sd[p + 'norm2.bias'])
                    h = _gelu(h @ sd[p + 'mlp.fc1.weight'].T +
                              sd[p + 'mlp.fc1.bias'])
                    h = h @ sd[p + 'mlp.fc2.weight'].T + sd[p + 'mlp.fc2.bias']
                    t = t + sd.get(p + 'gamma_2', 1.) * h
                outs.append(t)
            x = _unwindows(outs, ws, padded, hw)
        feats.append(x)
        if i < 3:
            x = torch.nn.functional.conv2d(
                x, sd[f'levels.{i}.downsample.reduction.0.weight'], stride=2,
                padding=1)
    if pooled:
        return _bn(x, sd, 'norm', 1e-5).mean((2, 3))
    return feats


def _official_state_dict(arch, seed=0, num_classes=10):
    """A synthetic state dict in the official release layout (with the
    classifier's final BN and head), values drawn so that activations stay
    of order one through the network."""
    gen = torch.Generator().manual_seed(seed)
    model = MambaVision(arch=arch, out_type='avgpool', out_indices=3)
    sd = OrderedDict()
    for key, ref in model.state_dict().items():
        shape = ref.shape
        if key.endswith('num_batches_tracked'):
            value = torch.tensor(7)
        elif key.endswith('running_var'):
            value = 0.5 + torch.rand(shape, generator=gen)
        elif key.endswith(('running_mean', '.bias')) and 'dt_proj' not in key:
            value = 0.1 * torch.randn(shape, generator=gen)
        elif key.endswith('dt_proj.bias'):
            value = -3 + torch.rand(shape, generator=gen)
        elif key.endswith('A_log'):
            value = ref + 0.1 * torch.randn(shape, generator=gen)
        elif key.endswith(('.D', 'norm1.weight', 'norm2.weight', 'norm.weight',
                           'conv_down.1.weight', 'conv_down.4.weight')):
            value = 1 + 0.1 * torch.randn(shape, generator=gen)
        elif 'gamma' in key:
            value = 0.5 + 0.1 * torch.randn(shape, generator=gen)
        else:  # weights: fan-in scaled
            fan_in = ref[0].numel() if ref.dim() > 1 else 1
            value = torch.randn(shape, generator=gen) / math.sqrt(fan_in)
        sd[key] = value
    sd['head.weight'] = torch.randn(num_classes, model.dims[-1],
                                    generator=gen) * 0.05
    sd['head.bias'] = torch.zeros(num_classes)
    return sd


def _arch_settings(arch):
    if isinstance(arch, str):
        arch = MambaVision.arch_zoo[arch]
    return arch['depths'], arch['num_heads']


def _image(h, w, batch=1, seed=1):
    return torch.randn(
        batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _assert_rel(actual, expected, rtol=1e-5):
    scale = expected.abs().max().item()
    err = (actual - expected).abs().max().item()
    assert err <= rtol * scale, f'max error {err} vs scale {scale}'


# ---------------------------------------------------------------------------
# (a) parameter counts of the classifiers
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('arch,published', [('tiny', 31.8), ('tiny2', 35.1),
                                            ('small', 50.1), ('base', 97.7),
                                            ('large', 227.9),
                                            ('large2', 241.5)])
def test_parameter_counts_match_paper(arch, published):
    with torch.device('meta'):
        model = MambaVision(arch=arch, out_type='avgpool', out_indices=3)
    dims = model.dims
    # the official classifier: the backbone, its final BN and a linear head
    head = dims[-1] * 1000 + 1000
    total = (sum(p.numel() for p in model.parameters()) + head) / 1e6
    assert abs(total - published) / published < 0.01, total
    # the dense backbone: no final BN, one LayerNorm per output instead
    with torch.device('meta'):
        dense = MambaVision(arch=arch)
    assert sum(p.numel() for p in dense.parameters()) == sum(
        p.numel() for p in model.parameters()) - 2 * dims[-1] + sum(
            2 * d for d in dims)


def test_block_split_and_layer_scale():
    for arch in ('tiny', 'small', 'base'):
        depths, _ = _arch_settings(arch)
        model = MambaVision(arch=arch) if arch == 'tiny' else None
        if model is None:
            with torch.device('meta'):
                model = MambaVision(arch=arch)
        for i in (2, 3):
            kinds = [b.attention for b in model.levels[i].blocks]
            n_mixers = depths[i] // 2 + 1 if depths[i] % 2 else depths[i] // 2
            assert kinds == [False] * n_mixers + [True] * (depths[i] -
                                                          n_mixers)
        has_gamma = model.levels[2].blocks[0].gamma_1 is not None
        assert has_gamma == (arch == 'base')
        assert model.levels[0].blocks[0].gamma is None
    mixer = MambaVision(arch='tiny').levels[2].blocks[0].mixer
    assert mixer.conv1d_x.bias is None and mixer.conv1d_z.bias is None
    assert mixer.A_log._no_weight_decay and mixer.D._no_weight_decay
    assert mixer.dt_rank == math.ceil(320 / 16)


# ---------------------------------------------------------------------------
# (b) the official forward, from a synthetic official state dict
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('arch', ['tiny', 'small'])
@pytest.mark.parametrize('hw', [(224, 224), (200, 264)])
def test_matches_official_forward(arch, hw, tmp_path):
    torch.manual_seed(0)
    sd = _official_state_dict(arch, seed=3)
    depths, heads = _arch_settings(arch)
    path = tmp_path / 'mambavision_1k.pth.tar'
    torch.save(dict(state_dict=sd, epoch=310), path)
    model = MambaVision(
        arch=arch, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    model.eval()
    x = _image(*hw)
    with torch.no_grad():
        outs = model(x)
        ref = _official_forward(sd, x, depths, heads, (8, 8, 14, 7))
    for out, feat in zip(outs, ref):
        # the output norms keep their initialisation (weight 1, bias 0)
        expected = _ln(feat.permute(0, 2, 3, 1), 1., 0.).permute(0, 3, 1, 2)
        assert out.shape == expected.shape
        _assert_rel(out, expected)


@pytest.mark.parametrize('layout', ['official', 'hf'])
def test_mini_matches_official_forward_every_output(layout, tmp_path):
    """Layer scale everywhere, odd depths, windows larger than the maps,
    both official layouts, dense and classification outputs."""
    sd = _official_state_dict(MINI, seed=5)
    for i, depth in enumerate(MINI['depths'][:2]):
        for j in range(depth):
            sd[f'levels.{i}.blocks.{j}.gamma'] = torch.full((16 * 2**i, ),
                                                            0.7)
    arch = dict(MINI)
    if layout == 'hf':
        path = tmp_path / 'model.safetensors'
        from safetensors.torch import save_file
        save_file({'model.' + k: v.contiguous() for k, v in sd.items()},
                  str(path))
    else:
        path = tmp_path / 'mini.pth.tar'
        torch.save(dict(state_dict=sd), path)
    kwargs = dict(arch=arch, layer_scale_conv=0.1, window_size=(8, 8, 20, 12),
                  init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    x = _image(97, 131, batch=2)
    dense = MambaVision(out_norm=None, **kwargs)
    dense.init_weights()
    cls = MambaVision(out_type='avgpool', out_indices=3, **kwargs)
    cls.init_weights()
    with torch.no_grad():
        ref = _official_forward(sd, x, MINI['depths'], MINI['num_heads'],
                                (8, 8, 20, 12))
        pooled = _official_forward(sd, x, MINI['depths'], MINI['num_heads'],
                                   (8, 8, 20, 12), pooled=True)
        for out, feat in zip(dense.eval()(x), ref):
            _assert_rel(out, feat)
        _assert_rel(cls.eval()(x)[0], pooled)


# ---------------------------------------------------------------------------
# (c) windows
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('hw,ws', [((14, 14), 7), ((13, 17), 7),
                                   ((5, 3), 8), ((9, 30), 4)])
def test_window_partition_round_trip(hw, ws):
    x = torch.randn(2, 5, *hw)
    windows, padded = window_partition(x, ws)
    hp, wp = padded
    assert hp % ws == 0 and wp % ws == 0 and hp >= hw[0] and wp >= hw[1]
    assert hp - hw[0] < ws and wp - hw[1] < ws
    assert windows.shape == (2 * hp * wp // ws**2, ws * ws, 5)
    ref, ref_padded = _windows(x, ws)
    assert ref_padded == padded
    torch.testing.assert_close(windows, torch.cat([w for w in torch.stack(
        ref, 1)]), rtol=0, atol=0)
    torch.testing.assert_close(
        window_reverse(windows, ws, padded, hw), x, rtol=0, atol=0)


def test_window_larger_than_map_pads_to_the_window():
    x = torch.randn(1, 3, 5, 6)
    windows, padded = window_partition(x, 14)
    assert padded == (14, 14) and windows.shape == (1, 196, 3)
    grid = windows[0].T.reshape(3, 14, 14)
    torch.testing.assert_close(grid[:, :5, :6], x[0], rtol=0, atol=0)
    assert grid[:, 5:].abs().sum() == 0 and grid[:, :, 6:].abs().sum() == 0


# ---------------------------------------------------------------------------
# (d) strict loading
# ---------------------------------------------------------------------------
def test_strict_loader_names_missing_and_unexpected_keys(tmp_path):
    sd = _official_state_dict(MINI, seed=2)
    missing = dict(sd)
    del missing['levels.2.blocks.1.mixer.A_log']
    path = tmp_path / 'missing.pth.tar'
    torch.save(dict(state_dict=missing), path)
    model = MambaVision(
        arch=MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointError, match=r'levels\.2\.blocks\.1\.mixer'
                       r'\.A_log'):
        model.init_weights()
    # a key no MambaVision has, in an official file: named by the conversion
    extra = dict(sd)
    extra['levels.2.blocks.0.mixer.extra_gate.weight'] = torch.zeros(8)
    path = tmp_path / 'unexpected.pth.tar'
    torch.save(dict(state_dict=extra), path)
    model = MambaVision(
        arch=MINI, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointError, match='extra_gate'):
        model.init_weights()
    # a conv1d bias (the official models have none): unexpected
    biased = dict(sd)
    biased['levels.2.blocks.0.mixer.conv1d_x.bias'] = torch.zeros(8)
    torch.save(dict(state_dict=biased), path)
    with pytest.raises(CheckpointError, match=r'conv1d_x\.bias'):
        model.init_weights()
    # Module.load_state_dict(strict=True) goes through the same conversion
    with pytest.raises(RuntimeError, match=r'A_log'):
        MambaVision(arch=MINI).load_state_dict(missing)
    # a mixed Hugging Face / plain file
    with pytest.raises(ValueError, match='mixes'):
        mambavision_checkpoint_layout(['model.norm.weight', 'head.bias'])


def test_conversion_layouts_and_classifier_keys():
    sd = _official_state_dict(MINI, seed=4)
    assert mambavision_checkpoint_layout(sd) == 'official'
    hf = OrderedDict(('model.' + k, v) for k, v in sd.items())
    assert mambavision_checkpoint_layout(hf) == 'hf'
    assert list(convert_mambavision(hf)) == list(sd)
    assert list(convert_mambavision(sd)) == list(sd)
    # dense: head and final norm dropped, the output norms absent by design
    dense = MambaVision(arch=MINI)
    result = dense.load_state_dict(dict(hf), strict=False)
    assert result.unexpected_keys == []
    assert sorted(result.missing_keys) == sorted(
        f'outnorm{i}.{p}' for i in range(4) for p in ('weight', 'bias'))
    # classification: only the head is dropped, nothing missing
    cls = MambaVision(arch=MINI, out_type='avgpool', out_indices=3)
    cls.load_state_dict(dict(hf), strict=True)
    # an mmssm (or official detection) state dict passes unchanged
    own = dense.state_dict()
    MambaVision(arch=MINI).load_state_dict(own, strict=True)
    # under a detector's prefix
    prefixed = {'backbone.' + k: v for k, v in hf.items()}
    holder = torch.nn.Module()
    holder.backbone = MambaVision(arch=MINI, out_type='avgpool', out_indices=3)
    holder.load_state_dict(prefixed, strict=True)


# ---------------------------------------------------------------------------
# (e) shapes and options
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('hw', [(97, 131), (33, 47), (224, 224), (17, 9)])
def test_output_shapes_odd_sizes(hw):
    model = MambaVision(arch=MINI, window_size=(8, 8, 14, 7)).eval()
    with torch.no_grad():
        outs = model(_image(*hw, batch=2))
    h, w = hw
    for i, out in enumerate(outs):
        for _ in range(i + 2):
            h, w = -(-h // 2), -(-w // 2)
        assert out.shape == (2, 16 * 2**i, h, w)
        h, w = hw


def test_out_indices_and_classification_output():
    x = _image(64, 48)
    model = MambaVision(arch=MINI, out_indices=(1, -1)).eval()
    outs = model(x)
    assert [o.shape[1] for o in outs] == [32, 128]
    assert not hasattr(model, 'outnorm0') and hasattr(model, 'outnorm3')
    model = MambaVision(arch=MINI, out_indices=(0, )).eval()
    assert len(model(x)) == 1
    cls = MambaVision(arch=MINI, out_type='avgpool', out_indices=-1).eval()
    assert cls(x)[0].shape == (1, 128) and not hasattr(cls, 'outnorm3')
    with pytest.raises(ValueError, match='avgpool'):
        MambaVision(arch=MINI, out_type='avgpool')
    with pytest.raises(ValueError, match='out_norm'):
        MambaVision(arch=MINI, out_norm='ln')
    bn = MambaVision(arch=MINI, out_norm='bn')
    assert isinstance(bn.outnorm2, torch.nn.BatchNorm2d)
    with pytest.raises(ValueError, match='Unknown MambaVision arch'):
        MambaVision(arch='huge')


@pytest.mark.parametrize('frozen_stages', [-1, 0, 2, 4])
def test_frozen_stages(frozen_stages):
    model = MambaVision(arch=MINI, frozen_stages=frozen_stages)
    model.train()
    frozen = ['patch_embed.'] if frozen_stages >= 0 else []
    for i in range(max(frozen_stages, 0)):
        frozen += [f'levels.{i}.', f'outnorm{i}.']
    for name, param in model.named_parameters():
        assert param.requires_grad != name.startswith(tuple(frozen)), name
    for name, module in model.named_modules():
        if name.startswith(tuple(frozen)):
            assert not module.training, name


def test_with_cp_same_outputs_and_grads():
    x = _image(40, 56, batch=2)
    results = []
    for with_cp in (False, True):
        torch.manual_seed(0)
        model = MambaVision(arch=MINI, with_cp=with_cp)
        model.init_weights()
        model.train()
        outs = model(x)
        sum(o.square().mean() for o in outs).backward()
        results.append(([o.detach() for o in outs], [
            p.grad.clone() for p in model.parameters()
            if p.grad is not None
        ]))
    for a, b in zip(*[r[0] for r in results]):
        torch.testing.assert_close(a, b)
    assert len(results[0][1]) == len(results[1][1]) > 0
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_official_random_init_and_norm_eval():
    model = MambaVision(arch=MINI)
    model.init_weights()
    mixer = model.levels[2].blocks[0].mixer
    # as the official _init_weights: every linear bias zeroed, dt_proj too
    assert mixer.dt_proj.bias.abs().sum() == 0
    assert model.levels[2].blocks[-1].mixer.qkv.bias.abs().sum() == 0
    assert mixer.in_proj.weight.std() < 0.03
    model = MambaVision(arch=MINI, norm_eval=True).train()
    assert not model.patch_embed.conv_down[1].training
    assert model.levels[2].blocks[0].training


def test_registered_for_every_scope():
    for registry, name in ((MMSSM_MODELS, 'MambaVision'),
                           (ROOT_MODELS, 'MambaVision'),
                           (ROOT_MODELS, 'mmssm.MambaVision')):
        assert isinstance(registry.build(dict(type=name, arch=MINI)),
                          MambaVision)
    from mmdet.registry import MODELS as DET_MODELS
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    from mmseg.registry import MODELS as SEG_MODELS
    for registry in (DET_MODELS, SEG_MODELS, PRETRAIN_MODELS):
        assert isinstance(
            registry.build(dict(type='MambaVision', arch=MINI)), MambaVision)


# ---------------------------------------------------------------------------
# Converter tool
# ---------------------------------------------------------------------------
def test_converter_tool(tmp_path, monkeypatch):
    sd = _official_state_dict(MINI, seed=8)
    src = tmp_path / 'official.pth.tar'
    torch.save(dict(state_dict=sd, epoch=3), src)
    dst = tmp_path / 'out.pth'
    for extra, prefix, with_head in ((['--mmpretrain'], 'backbone.', True),
                                     ([], '', True),
                                     (['--no-head'], '', False)):
        monkeypatch.setattr(sys, 'argv',
                            [CONVERTER, str(src), str(dst)] + extra)
        runpy.run_path(CONVERTER, run_name='__main__')
        saved = torch.load(dst, map_location='cpu')
        assert saved['meta']['source_layout'] == 'official'
        out = saved['state_dict']
        expected = {prefix + k for k in sd if not k.startswith('head.')}
        if with_head:
            expected |= {'head.fc.weight', 'head.fc.bias'}
        assert set(out) == expected
        for key, value in out.items():
            plain = key[len(prefix):] if key.startswith(prefix) else key
            plain = plain.replace('head.fc.', 'head.')
            torch.testing.assert_close(value, sd[plain], rtol=0, atol=0)
    # a Hugging Face safetensors file, and a foreign key
    from safetensors.torch import save_file
    hf = tmp_path / 'model.safetensors'
    save_file({'model.' + k: v.contiguous() for k, v in sd.items()}, str(hf))
    monkeypatch.setattr(sys, 'argv', [CONVERTER, str(hf), str(dst)])
    runpy.run_path(CONVERTER, run_name='__main__')
    saved = torch.load(dst, map_location='cpu')
    assert saved['meta']['source_layout'] == 'hf'
    assert 'levels.3.blocks.1.mixer.qkv.weight' in saved['state_dict']
    torch.save(dict(state_dict={**sd, 'levels.9.foo': torch.zeros(1)}), src)
    monkeypatch.setattr(sys, 'argv', [CONVERTER, str(src), str(dst)])
    with pytest.raises(SystemExit, match='levels.9.foo'):
        runpy.run_path(CONVERTER, run_name='__main__')


def test_mmpretrain_classifier_gives_official_logits(tmp_path, monkeypatch):
    """An mmpretrain ImageClassifier (MambaVision avgpool + LinearClsHead)
    loads a converted official file strictly and computes the official
    logits."""
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    sd = _official_state_dict(MINI, seed=9, num_classes=6)
    src, dst = tmp_path / 'official.pth.tar', tmp_path / 'mmpretrain.pth'
    torch.save(dict(state_dict=sd), src)
    monkeypatch.setattr(sys, 'argv',
                        [CONVERTER, str(src), str(dst), '--mmpretrain'])
    runpy.run_path(CONVERTER, run_name='__main__')
    model = PRETRAIN_MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(
                type='MambaVision', arch=MINI, out_type='avgpool',
                out_indices=(3, )),
            head=dict(type='LinearClsHead', num_classes=6, in_channels=128)))
    model.load_state_dict(
        torch.load(dst, map_location='cpu')['state_dict'], strict=True)
    x = _image(64, 80, batch=2)
    with torch.no_grad():
        logits = model.eval()(x, mode='tensor')
        pooled = _official_forward(sd, x, MINI['depths'], MINI['num_heads'],
                                   (8, 8, 14, 7), pooled=True)
    _assert_rel(logits, pooled @ sd['head.weight'].T + sd['head.bias'])


def test_key_names_are_the_official_ones():
    """The parameter and buffer names of each kind of layer, written out from
    the official modules (PatchEmbed, ConvBlock, Block with a mixer or
    attention, Downsample, the classifier's BatchNorm)."""
    sd = MambaVision(arch=MINI, out_type='avgpool', out_indices=3).state_dict()
    bn = ('weight', 'bias', 'running_mean', 'running_var',
          'num_batches_tracked')

    def under(prefix):
        return {k[len(prefix):] for k in sd if k.startswith(prefix)}

    assert under('patch_embed.') == {
        f'conv_down.{i}.weight' for i in (0, 3)} | {
            f'conv_down.{i}.{p}' for i in (1, 4) for p in bn}
    assert under('levels.1.blocks.0.') == {
        'conv1.weight', 'conv1.bias', 'conv2.weight', 'conv2.bias'} | {
            f'norm{i}.{p}' for i in (1, 2) for p in bn}
    common = {f'{n}.{p}' for n in ('norm1', 'norm2', 'mlp.fc1', 'mlp.fc2')
              for p in ('weight', 'bias')} | {'gamma_1', 'gamma_2'}
    assert under('levels.2.blocks.0.') == common | {
        'mixer.in_proj.weight', 'mixer.x_proj.weight', 'mixer.dt_proj.weight',
        'mixer.dt_proj.bias', 'mixer.A_log', 'mixer.D',
        'mixer.out_proj.weight', 'mixer.conv1d_x.weight',
        'mixer.conv1d_z.weight'}
    assert under('levels.2.blocks.2.') == common | {
        'mixer.qkv.weight', 'mixer.qkv.bias', 'mixer.proj.weight',
        'mixer.proj.bias'}
    assert under('levels.2.downsample.') == {'reduction.0.weight'}
    assert all(k.startswith('blocks.') for k in under('levels.3.'))
    assert under('norm.') == set(bn)
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    # dim 64 at stage 2: in_proj C -> C, x_proj C/2 -> ceil(C/16) + 2 * 8
    assert shapes['levels.2.blocks.0.mixer.in_proj.weight'] == (64, 64)
    assert shapes['levels.2.blocks.0.mixer.x_proj.weight'] == (4 + 16, 32)
    assert shapes['levels.2.blocks.0.mixer.dt_proj.weight'] == (32, 4)
    assert shapes['levels.2.blocks.0.mixer.A_log'] == (32, 8)
    assert shapes['levels.2.blocks.0.mixer.conv1d_x.weight'] == (32, 1, 3)
    assert shapes['levels.2.downsample.reduction.0.weight'] == (128, 64, 3, 3)
    assert shapes['patch_embed.conv_down.0.weight'] == (8, 3, 3, 3)


def test_gradients_match_the_reference_scan():
    """Training through the default CPU scan gives the gradients of the
    reference scan (autograd through a plain loop)."""
    x = _image(40, 36, batch=2)
    grads = []
    for impl in (None, 'ref'):
        torch.manual_seed(0)
        model = MambaVision(arch=MINI, scan_impl=impl, window_size=(8, 8, 5,
                                                                     3))
        model.init_weights()
        # non-zero dt biases, so that the scan is far from trivial
        for m in model.modules():
            if hasattr(m, 'dt_proj') and hasattr(m, 'A_log'):
                torch.nn.init.uniform_(m.dt_proj.bias, -3, -1)
        model.train()
        sum((o * o).mean() for o in model(x)).backward()
        grads.append({n: p.grad for n, p in model.named_parameters()
                      if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    assert any('A_log' in n for n in grads[0])
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name],
                                   rtol=1e-4, atol=1e-6, msg=name)
