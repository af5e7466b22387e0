"""GMambaVision options of the MambaVision backbone (issue #16 part 4):
``attn_type='shifted_window'|'relative'``, ``num_registers`` and
``downsample='attn_pool'``.

The references are written here, independently of the implementation:

* shifted windows as an explicit ``(L, L)`` mask over the tokens of one window
  from the group of every row and column: Swin's shifted windows in original
  coordinates are the intervals ``[0, s), [s, s + aw), ...`` (the cyclic roll
  and its region mask only implement that), so a position ``p`` is in group
  ``(p + aw - s) // aw``; no roll, no padding;
* the relative bias by a loop over every pair of tokens;
* attention pooling by a loop over every output position;
* a whole GMambaVision forward built from the independent official reference
  of ``test_mambavision.py`` plus the above (registers concatenated by hand).
"""
import math

import pytest
import torch
import torch.nn.functional as F

from mmssm.models.backbones.mambavision import (MambaVision,
                                                MambaVisionAttention,
                                                MambaVisionAttnPool,
                                                MambaVisionDownsample,
                                                shifted_window_mask)
from mmssm.utils.checkpoint import CheckpointError, load_pretrained
# tests/test_models/test_backbones is on sys.path (rootdir-less import): the
# independent official reference and the synthetic official state dict
from test_mambavision import (  # noqa: I
    _assert_rel, _gelu, _image, _ln, _mixer, _official_forward,
    _official_state_dict, _ref_conv_stage, _ref_stem, _unwindows, _windows)

#: two mixers then two attention blocks (the second one shifted) in stages
#: 2-3, layer scale on
GMV = dict(dim=16, in_dim=8, depths=[1, 1, 4, 4], num_heads=[1, 2, 2, 4],
           layer_scale=0.5)
#: stage 2: window 7, sub-windows 3 (canvas padded to 9), shift 1;
#: stage 3: window 5, sub-windows 2 (canvas 6), shift 1
GMV_WINDOWS = (8, 8, 7, 5)


# ---------------------------------------------------------------------------
# naive references
# ---------------------------------------------------------------------------
def _group(p, aw, s):
    """Shifted window of position ``p`` along one axis (see the module
    docstring)."""
    return (p + (aw - s) % aw) // aw


def _naive_shift_allowed(ws, shift, num_registers):
    aw = ws // 2
    s = aw // 2 if shift else 0
    n_tok = ws * ws
    allowed = torch.ones(n_tok + num_registers, n_tok + num_registers,
                         dtype=torch.bool)
    for i in range(n_tok):
        yi, xi = divmod(i, ws)
        for j in range(n_tok):
            yj, xj = divmod(j, ws)
            allowed[i, j] = (_group(yi, aw, s) == _group(yj, aw, s)
                             and _group(xi, aw, s) == _group(xj, aw, s))
    return allowed


def _naive_relative_bias(table, ws, num_registers):
    heads = table.shape[1]
    n_tok = ws * ws
    length = n_tok + num_registers
    bias = torch.zeros(heads, length, length)
    for i in range(n_tok):
        yi, xi = divmod(i, ws)
        for j in range(n_tok):
            yj, xj = divmod(j, ws)
            row = (yi - yj + ws - 1) * (2 * ws - 1) + (xi - xj + ws - 1)
            bias[:, i, j] = table[row]
    return bias


def _naive_attention(x, qkv_w, qkv_b, proj_w, proj_b, heads, allowed=None,
                     bias=None):
    """Explicit per-head softmax attention over ``(B, L, C)``."""
    batch, length, dim = x.shape
    hd = dim // heads
    qkv = x @ qkv_w.T + qkv_b
    out = torch.empty_like(x)
    for h in range(heads):
        q = qkv[..., h * hd:(h + 1) * hd]
        k = qkv[..., dim + h * hd:dim + (h + 1) * hd]
        v = qkv[..., 2 * dim + h * hd:2 * dim + (h + 1) * hd]
        logits = q @ k.transpose(1, 2) / math.sqrt(hd)
        if bias is not None:
            logits = logits + bias[h]
        if allowed is not None:
            logits = logits.masked_fill(~allowed, float('-inf'))
        out[..., h * hd:(h + 1) * hd] = torch.softmax(logits, -1) @ v
    return out @ proj_w.T + proj_b


def _naive_attn_pool(x, score_w, proj_w):
    """Loop over the output positions of a ``(B, C, H, W)`` map."""
    batch, channels, height, width = x.shape
    ho, wo = -(-height // 2), -(-width // 2)
    out = x.new_zeros(batch, proj_w.shape[0], ho, wo)
    for i in range(ho):
        for j in range(wo):
            cells = [(y, xx) for y in (2 * i, 2 * i + 1)
                     for xx in (2 * j, 2 * j + 1) if y < height and xx < width]
            feats = torch.stack([x[:, :, y, xx] for y, xx in cells], 1)
            weights = torch.softmax(feats @ score_w[0], 1)  # (B, n)
            pooled = (weights[..., None] * feats).sum(1)
            out[:, :, i, j] = pooled @ proj_w.T
    return out


def _gmv_forward(sd, x, arch, window_size, attn_type='global',
                 num_registers=0, attn_pool=False):
    """The four stage maps of GMambaVision (no output norms), from the
    official reference pieces and the naive options above."""
    depths, heads = arch['depths'], arch['num_heads']
    x = _ref_stem(sd, x)
    feats = []
    for i, depth in enumerate(depths):
        if i < 2:
            x = _ref_conv_stage(sd, x, i, depth)
        else:
            ws = window_size[i]
            hw = x.shape[-2:]
            wins, padded = _windows(x, ws)
            n_mixers = -(-depth // 2)
            allowed, bias = {}, {}  # per attention block
            for j in range(n_mixers, depth):
                p = f'levels.{i}.blocks.{j}.'
                allowed[j] = _naive_shift_allowed(
                    ws, (j - n_mixers) % 2 == 1, num_registers
                ) if attn_type == 'shifted_window' else None
                bias[j] = _naive_relative_bias(
                    sd[p + 'mixer.relative_position_bias_table'], ws,
                    num_registers) if attn_type == 'relative' else None
            outs = []
            for t in wins:
                if num_registers:
                    regs = sd[f'levels.{i}.registers']
                    t = torch.cat([t, regs.expand(t.shape[0], -1, -1)], 1)
                for j in range(depth):
                    p = f'levels.{i}.blocks.{j}.'
                    h = _ln(t, sd[p + 'norm1.weight'], sd[p + 'norm1.bias'])
                    if j < n_mixers:
                        h = _mixer(h, sd, p + 'mixer.', x.shape[1])
                    else:
                        h = _naive_attention(
                            h, sd[p + 'mixer.qkv.weight'],
                            sd[p + 'mixer.qkv.bias'],
                            sd[p + 'mixer.proj.weight'],
                            sd[p + 'mixer.proj.bias'], heads[i], allowed[j],
                            bias[j])
                    t = t + sd[p + 'gamma_1'] * h
                    h = _ln(t, sd[p + 'norm2.weight'], sd[p + 'norm2.bias'])
                    h = _gelu(h @ sd[p + 'mlp.fc1.weight'].T +
                              sd[p + 'mlp.fc1.bias'])
                    h = h @ sd[p + 'mlp.fc2.weight'].T + sd[p + 'mlp.fc2.bias']
                    t = t + sd[p + 'gamma_2'] * h
                outs.append(t[:, :ws * ws])  # registers dropped
            x = _unwindows(outs, ws, padded, hw)
        feats.append(x)
        if i < 3:
            if attn_pool:
                x = _naive_attn_pool(
                    x, sd[f'levels.{i}.downsample.score.weight'],
                    sd[f'levels.{i}.downsample.proj.weight'])
            else:
                x = F.conv2d(
                    x, sd[f'levels.{i}.downsample.reduction.0.weight'],
                    stride=2, padding=1)
    return feats


def _new_keys(attn_type='global', num_registers=0, attn_pool=False):
    """The GMambaVision parameters of :data:`GMV`, written out by hand."""
    keys = set()
    if num_registers:
        keys |= {'levels.2.registers', 'levels.3.registers'}
    if attn_type == 'relative':
        keys |= {f'levels.{i}.blocks.{j}.mixer.relative_position_bias_table'
                 for i in (2, 3) for j in (2, 3)}
    if attn_pool:
        keys |= {f'levels.{i}.downsample.{m}.weight'
                 for i in range(3) for m in ('score', 'proj')}
    return keys


def _gmv(**kwargs):
    cfg = dict(arch=GMV, window_size=GMV_WINDOWS)
    cfg.update(kwargs)
    torch.manual_seed(0)
    return MambaVision(**cfg)


# ---------------------------------------------------------------------------
# the reference itself, by hand
# ---------------------------------------------------------------------------
def test_reference_groups_by_hand():
    # MambaVision-T at 224, stage 2: 14x14 window, sub-windows 7, shift 3
    groups = [_group(p, 7, 3) for p in range(14)]
    assert groups == [0] * 3 + [1] * 7 + [2] * 4
    assert [_group(p, 7, 0) for p in range(14)] == [0] * 7 + [1] * 7
    # stage 3: 7x7 window, sub-windows 3 (canvas 9), shift 1
    assert [_group(p, 3, 1) for p in range(7)] == [0, 1, 1, 1, 2, 2, 2]
    allowed = _naive_shift_allowed(3, True, 1)  # aw 1: no shift, 1x1 groups
    assert torch.equal(allowed[:9, :9], torch.eye(9, dtype=torch.bool))
    assert allowed[:, 9].all() and allowed[9].all()


# ---------------------------------------------------------------------------
# module-level equality with the naive references
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('num_registers', [0, 2])
@pytest.mark.parametrize('shift', [False, True])
@pytest.mark.parametrize('ws', [7, 8, 5, 14])
def test_shifted_window_attention_matches_naive_mask(ws, shift,
                                                     num_registers):
    """Sub-window 3/4/2/7: canvas padded (7 -> 9, 5 -> 6) or not (8, 14)."""
    torch.manual_seed(ws)
    attn = MambaVisionAttention(
        8, 2, attn_type='shifted_window', window_size=ws, shift=shift,
        num_registers=num_registers).eval()
    assert attn.sub_window == ws // 2
    assert attn.shift_size == ((ws // 2) // 2 if shift else 0)
    x = torch.randn(3, ws * ws + num_registers, 8)
    want = _naive_attention(x, attn.qkv.weight, attn.qkv.bias,
                            attn.proj.weight, attn.proj.bias, 2,
                            allowed=_naive_shift_allowed(ws, shift,
                                                         num_registers))
    with torch.no_grad():
        torch.testing.assert_close(attn(x), want, rtol=1e-5, atol=1e-5)
    # the mask: one row per sub-window token, register columns always open
    mask = shifted_window_mask(ws, num_registers, shift)
    n = -(-ws // (ws // 2))
    assert mask.shape == (n * n, (ws // 2)**2,
                          (ws // 2)**2 + num_registers)
    if num_registers:
        assert mask[..., -num_registers:].all()


@pytest.mark.parametrize('num_registers', [0, 3])
@pytest.mark.parametrize('ws', [1, 3, 5])
def test_relative_bias_matches_pair_loop(ws, num_registers):
    torch.manual_seed(ws)
    attn = MambaVisionAttention(
        8, 2, attn_type='relative', window_size=ws,
        num_registers=num_registers).eval()
    table = attn.relative_position_bias_table
    assert table.shape == ((2 * ws - 1)**2, 2)
    with torch.no_grad():
        table.normal_()  # large enough to matter
    bias = _naive_relative_bias(table.detach(), ws, num_registers)
    torch.testing.assert_close(attn.relative_bias().detach(), bias)
    x = torch.randn(2, ws * ws + num_registers, 8)
    want = _naive_attention(x, attn.qkv.weight, attn.qkv.bias,
                            attn.proj.weight, attn.proj.bias, 2, bias=bias)
    with torch.no_grad():
        got = attn(x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        # the bias matters (one token: a softmax over one key)
        table.zero_()
        if ws > 1 or num_registers:
            assert (attn(x) - got).abs().max() > 1e-2
    # a sequence of another length is refused, loudly
    with pytest.raises(ValueError, match='windows of'):
        attn(torch.randn(1, ws * ws + num_registers + 1, 8))


@pytest.mark.parametrize('hw', [(6, 8), (7, 9), (1, 1), (5, 2), (2, 3)])
def test_attention_pooling_matches_loop(hw):
    torch.manual_seed(0)
    pool = MambaVisionAttnPool(6)
    assert pool.proj.weight.shape == (12, 6) and pool.proj.bias is None
    assert pool.score.weight.shape == (1, 6) and pool.score.bias is None
    x = torch.randn(2, 6, *hw)
    with torch.no_grad():
        got = pool(x)
    want = _naive_attn_pool(x, pool.score.weight, pool.proj.weight)
    ho, wo = -(-hw[0] // 2), -(-hw[1] // 2)
    assert got.shape == (2, 12, ho, wo)
    # the conv path's output size
    assert got.shape[-2:] == MambaVisionDownsample(6)(x).shape[-2:]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # a 1x1 map: the only position, projected
    one = x[:, :, :1, :1]
    with torch.no_grad():
        torch.testing.assert_close(
            pool(one)[:, :, 0, 0], one[:, :, 0, 0] @ pool.proj.weight.T)
        # zero scores: 2x2 average pooling, then the projection
        pool.score.weight.zero_()
        if min(hw) >= 2:
            avg = F.avg_pool2d(x[..., :hw[0] // 2 * 2, :hw[1] // 2 * 2], 2)
            torch.testing.assert_close(
                pool(x)[..., :avg.shape[-2], :avg.shape[-1]],
                torch.einsum('oc,bchw->bohw', pool.proj.weight, avg),
                rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# the whole model against the reference
# ---------------------------------------------------------------------------
def _options_state_dict(model, seed):
    """The model's state dict with an official one loaded and the new
    parameters drawn large enough to matter."""
    gen = torch.Generator().manual_seed(seed)
    sd = _official_state_dict(GMV, seed=seed)
    sd = {k: v for k, v in sd.items() if not k.startswith(('head.', 'norm.'))}
    own = model.state_dict()
    out = {}
    for key, value in own.items():
        if key in sd and key in own and sd[key].shape == value.shape:
            out[key] = sd[key]
        elif key.endswith(('registers', 'relative_position_bias_table')):
            out[key] = torch.randn(value.shape, generator=gen)
        elif '.downsample.' in key:  # score / proj of the attention pool
            out[key] = torch.randn(value.shape, generator=gen) / math.sqrt(
                value.shape[1])
        else:  # outnorm: identity
            out[key] = value
    return out


@pytest.mark.parametrize('attn_type,num_registers,attn_pool,hw', [
    ('shifted_window', 2, True, (224, 224)),
    ('shifted_window', 2, True, (97, 131)),
    ('shifted_window', 0, False, (97, 131)),
    ('relative', 3, False, (224, 224)),
    ('relative', 0, True, (97, 131)),
    ('global', 2, True, (97, 131)),
])
def test_model_matches_reference(attn_type, num_registers, attn_pool, hw):
    """224 (stage 2 14x14 in 2x2 windows of 7; stage 3 7x7 padded to 10) and
    97x131 (7x9 -> 7x14, 4x5 -> 5x5): stage padding, canvas padding of the
    sub-windows (7 -> 9, 5 -> 6), both shift parities, registers through
    mixers and attention."""
    model = _gmv(attn_type=attn_type, num_registers=num_registers,
                 downsample='attn_pool' if attn_pool else 'conv',
                 out_norm=None).eval()
    sd = _options_state_dict(model, seed=7)
    model.load_state_dict(sd, strict=True)
    x = _image(*hw)
    with torch.no_grad():
        outs = model(x)
        ref = _gmv_forward(sd, x, GMV, GMV_WINDOWS, attn_type, num_registers,
                           attn_pool)
    for out, feat in zip(outs, ref):
        assert out.shape == feat.shape
        _assert_rel(out, feat, rtol=2e-5)
    if not attn_pool:  # the options change the result
        with torch.no_grad():
            official = _official_forward(sd, x, GMV['depths'],
                                         GMV['num_heads'], GMV_WINDOWS)
        assert (outs[3] - official[3]).abs().max() > 1e-3


# ---------------------------------------------------------------------------
# registers
# ---------------------------------------------------------------------------
def test_registers_enter_every_window_and_leave_the_outputs():
    model = _gmv(num_registers=3).train()
    lengths = {}
    for i in (2, 3):
        for j, block in enumerate(model.levels[i].blocks):
            block.register_forward_hook(
                lambda m, a, out, key=(i, j): lengths.__setitem__(
                    key, tuple(out.shape)))
    x = _image(97, 131, batch=2)
    outs = model(x)
    # 7x9 -> 7x14: 2 windows of 7x7; 4x5 -> 5x5: 1 window of 5x5
    for j in range(4):
        assert lengths[(2, j)] == (2 * 2, 49 + 3, 64)
        assert lengths[(3, j)] == (2 * 1, 25 + 3, 128)
    plain = _gmv()
    assert [o.shape for o in outs] == [o.shape for o in plain(x)]
    # gradient reaches them (mixers and attention read them)
    sum(o.square().mean() for o in outs).backward()
    for i in (2, 3):
        grad = model.levels[i].registers.grad
        assert grad is not None and grad.abs().sum() > 0
    assert model.levels[0].registers is None
    assert model.levels[2].registers.shape == (1, 3, 64)
    # they are inputs of the computation: other registers, other maps
    model.eval()
    with torch.no_grad():
        before = model(x)[3]
        # (not a constant: the LayerNorm in front of every mixer removes it)
        model.levels[2].registers.add_(
            torch.randn(model.levels[2].registers.shape))
        assert (model(x)[3] - before).abs().max() > 1e-4
    # frozen with their stage
    frozen = _gmv(num_registers=3, frozen_stages=3)
    assert not frozen.levels[2].registers.requires_grad
    assert frozen.levels[3].registers.requires_grad


# ---------------------------------------------------------------------------
# defaults: the official model
# ---------------------------------------------------------------------------
def test_defaults_are_the_official_model(tmp_path):
    official_keys = {
        k for k in _official_state_dict(GMV)
        if not k.startswith(('head.', 'norm.'))
    } | {f'outnorm{i}.{p}' for i in range(4) for p in ('weight', 'bias')}
    default = _gmv()
    explicit = _gmv(attn_type='global', num_registers=0, downsample='conv')
    assert set(default.state_dict()) == official_keys
    for key, value in default.state_dict().items():
        assert torch.equal(value, explicit.state_dict()[key]), key
    assert not list(default.buffers()) or all(
        'running' in n or 'num_batches' in n
        for n, _ in default.named_buffers())
    for block in default.levels[2].blocks[2:]:
        assert block.mixer.attn_type == 'global'
    # official weights: bit-identical outputs, equal to the reference
    sd = _official_state_dict(GMV, seed=3)
    path = tmp_path / 'official.pth.tar'
    torch.save(dict(state_dict=sd), path)
    outs = []
    for model in (default, explicit):
        load_pretrained(model, str(path))
        with torch.no_grad():
            outs.append(model.eval()(_image(97, 131)))
    for a, b in zip(*outs):
        assert torch.equal(a, b)
    with torch.no_grad():
        ref = _official_forward(sd, _image(97, 131), GMV['depths'],
                                GMV['num_heads'], GMV_WINDOWS)
    for out, feat in zip(outs[0], ref):
        _assert_rel(out, _ln(feat.permute(0, 2, 3, 1), 1., 0.).permute(
            0, 3, 1, 2))


# ---------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------
OPTION_SETS = {
    'shifted': dict(attn_type='shifted_window'),
    'relative': dict(attn_type='relative'),
    'registers': dict(num_registers=2),
    'attn_pool': dict(downsample='attn_pool'),
    'all': dict(attn_type='relative', num_registers=2,
                downsample='attn_pool'),
}


def _expected_new(kwargs):
    return _new_keys(kwargs.get('attn_type', 'global'),
                     kwargs.get('num_registers', 0),
                     kwargs.get('downsample') == 'attn_pool')


@pytest.mark.parametrize('option', sorted(OPTION_SETS))
def test_official_checkpoint_loads_with_options_on(option, tmp_path,
                                                   monkeypatch):
    kwargs = OPTION_SETS[option]
    sd = _official_state_dict(GMV, seed=2)
    path = tmp_path / 'mambavision_1k.pth.tar'
    torch.save(dict(state_dict=sd, epoch=3), path)
    model = _gmv(**kwargs)
    new = _expected_new(kwargs)
    assert set(model.state_dict()) - set(sd) - {
        f'outnorm{i}.{p}' for i in range(4) for p in ('weight', 'bias')
    } == new
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logs = []
    import mmengine.logging

    import mmssm.models.backbones.mambavision as mv_module
    for where in (mmengine.logging, mv_module):
        monkeypatch.setattr(where, 'print_log',
                            lambda msg, *a, **k: logs.append(msg))
    result = load_pretrained(model, str(path))
    outnorms = {
        f'outnorm{i}.{p}'
        for i in range(4) for p in ('weight', 'bias')
    }
    assert set(result['absent_by_design']) == new | outnorms
    assert not any(result[k] for k in ('missing', 'unexpected', 'mismatched'))
    (newly, ) = [m for m in logs if 'keep their initialisation' in m]
    assert newly.endswith(str(sorted(new | outnorms)))
    dropped = [m for m in logs if 'strided-conv downsampling' in m]
    if kwargs.get('downsample') == 'attn_pool':
        assert dropped == [
            "MambaVision (downsample='attn_pool'): dropped the 3 weights of "
            'the strided-conv downsampling that the attention pooling '
            "replaces: ['levels.0.downsample.reduction.0.weight', "
            "'levels.1.downsample.reduction.0.weight', "
            "'levels.2.downsample.reduction.0.weight']"
        ]
    else:
        assert not dropped
    for key, value in model.state_dict().items():
        if key in new or key in outnorms:
            assert torch.equal(value, before[key]), key  # kept its init
        else:
            assert torch.equal(value, sd[key]), key
    # the init_cfg path and the Hugging Face layout give the same weights
    from safetensors.torch import save_file
    hf = tmp_path / 'model.safetensors'
    save_file({'model.' + k: v.contiguous() for k, v in sd.items()}, str(hf))
    for ckpt in (path, hf):
        via_cfg = _gmv(**kwargs, init_cfg=dict(type='Pretrained',
                                                checkpoint=str(ckpt)))
        via_cfg.init_weights()
        for key, value in via_cfg.state_dict().items():
            if key not in new:
                assert torch.equal(value, model.state_dict()[key]), key


def test_loading_stays_strict_with_options_on(tmp_path):
    kwargs = OPTION_SETS['all']

    def save(sd, name):
        path = tmp_path / name
        torch.save(dict(state_dict=sd), path)
        return str(path)

    broken = _official_state_dict(GMV, seed=2)
    del broken['levels.2.blocks.3.mixer.qkv.bias']
    with pytest.raises(CheckpointError,
                       match=r'missing.*levels\.2\.blocks\.3\.mixer\.qkv'):
        load_pretrained(_gmv(**kwargs), save(broken, 'broken.pth'))
    # own checkpoints (dense and classifier) round-trip with nothing new
    own = _gmv(**kwargs).state_dict()
    result = load_pretrained(_gmv(**kwargs), save(own, 'own.pth'))
    assert result['absent_by_design'] == []
    cls = _gmv(out_type='avgpool', out_indices=3, **kwargs)
    result = load_pretrained(_gmv(out_type='avgpool', out_indices=3, **kwargs),
                             save(cls.state_dict(), 'cls.pth'))
    assert result['absent_by_design'] == []
    # a checkpoint with only some registers is not the official layout
    partial = dict(own)
    del partial['levels.3.registers']
    with pytest.raises(CheckpointError, match=r'levels\.3\.registers'):
        load_pretrained(_gmv(**kwargs), save(partial, 'partial.pth'))
    # attention-pool keys next to the conv: the conv is unexpected
    mixed = dict(own, **{'levels.0.downsample.reduction.0.weight':
                         torch.zeros(32, 16, 3, 3)})
    with pytest.raises(CheckpointError,
                       match=r'unexpected.*downsample\.reduction'):
        load_pretrained(_gmv(**kwargs), save(mixed, 'mixed.pth'))
    # an options-off model refuses an options-on checkpoint
    with pytest.raises(CheckpointError, match=r'unexpected.*registers'):
        load_pretrained(_gmv(), save(own, 'own2.pth'))


# ---------------------------------------------------------------------------
# arguments, shifts, gradients
# ---------------------------------------------------------------------------
def test_bad_arguments():
    with pytest.raises(ValueError, match=r"attn_type must be one of \('global"
                       r"', 'shifted_window', 'relative'\), got 'swin'"):
        _gmv(attn_type='swin')
    for bad in (-1, 1.5, True, '2', None):
        with pytest.raises(ValueError, match='num_registers must be an int'):
            _gmv(num_registers=bad)
    with pytest.raises(ValueError, match=r"downsample must be one of "
                       r"\('conv', 'attn_pool'\), got 'maxpool'"):
        _gmv(downsample='maxpool')
    with pytest.raises(ValueError, match='window_size must be >= 2'):
        _gmv(attn_type='shifted_window', window_size=(8, 8, 7, 1))
    _gmv(attn_type='relative', window_size=(8, 8, 7, 1))  # 1x1 is fine
    with pytest.raises(ValueError, match='needs attn_type'):
        MambaVisionAttention(8, 2, shift=True)
    with pytest.raises(ValueError, match="needs the stage's window_size"):
        MambaVisionAttention(8, 2, attn_type='relative')


def test_shift_on_every_odd_attention_block():
    model = _gmv(attn_type='shifted_window',
                 arch=dict(GMV, depths=[1, 1, 7, 4]))
    # stage 2: 4 mixers, then attention blocks 4, 5, 6 (shifted: 5)
    shifts = [(b.mixer.sub_window, b.mixer.shift_size) if b.attention else None
              for b in model.levels[2].blocks]
    assert shifts == [None] * 4 + [(3, 0), (3, 1), (3, 0)]
    shifts = [(b.mixer.sub_window, b.mixer.shift_size) if b.attention else None
              for b in model.levels[3].blocks]
    assert shifts == [None] * 2 + [(2, 0), (2, 1)]
    # MambaVision-T's classification windows: 14 -> 7 (shift 3), 7 -> 3
    with torch.device('meta'):
        tiny = MambaVision(arch='tiny', attn_type='shifted_window')
    assert [(b.mixer.sub_window, b.mixer.shift_size)
            for b in tiny.levels[2].blocks[4:]] == [(7, 0), (7, 3)] * 2
    assert [(b.mixer.sub_window, b.mixer.shift_size)
            for b in tiny.levels[3].blocks[2:]] == [(3, 0), (3, 1)]


def test_every_option_gets_gradients():
    model = _gmv(attn_type='relative', num_registers=2,
                 downsample='attn_pool').train()
    model.init_weights()
    outs = model(_image(97, 131, batch=2))
    sum(o.square().mean() for o in outs).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), \
            name
    for key in _new_keys('relative', 2, True):
        param = model.get_parameter(key)
        assert param.grad.abs().sum() > 0, key
    model = _gmv(attn_type='shifted_window', num_registers=2).train()
    sum(o.square().mean() for o in model(_image(64, 80))).backward()
    for i in (2, 3):
        assert model.levels[i].registers.grad.abs().sum() > 0
        for block in model.levels[i].blocks[2:]:
            assert block.mixer.qkv.weight.grad.abs().sum() > 0


def test_random_init_of_the_new_parameters():
    model = _gmv(attn_type='relative', num_registers=4,
                 downsample='attn_pool')
    model.init_weights()
    for key in _new_keys('relative', 4, True):
        value = model.get_parameter(key).detach()
        assert value.abs().max() < 0.1, key  # truncated normal, std 0.02
        if value.numel() >= 64:
            assert 0.015 < value.std() < 0.025, key
