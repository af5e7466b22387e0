"""Tests of GroupMamba, its VMamba-like variant and the official converter."""
import math
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import mmssm  # noqa: F401
import mmssm.models.layers.ss2d as ss2d_module
from mmssm.models.backbones.groupmamba import GroupMamba, convert_groupmamba
from mmssm.models.layers.ss2d import SS2D, GroupedSS2D
from mmssm.ops import selective_scan_ref
from mmssm.utils.checkpoint import CheckpointError

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(__file__))))
TINY = dict(
    embed_dims=[16, 32, 48, 64],
    depths=[1, 1, 2, 1],
    mlp_ratios=[2, 2, 2, 2],
    stem_channels=8)


def _tiny(**kwargs):
    kwargs.setdefault('scan_impl', 'ref')
    torch.manual_seed(0)
    model = GroupMamba(TINY, **kwargs)
    model.init_weights()
    return model


# ---------------------------------------------------------------------------
# shapes, arguments
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('mixer', ['group', 'ss2d4'])
def test_odd_input_sizes(mixer):
    model = _tiny(mixer=mixer).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 45, 37))
    # "same"-padded stride-2 convs: ceil halving; 45 -> 23 -> 12 -> 6 -> 3 -> 2
    # and 37 -> 19 -> 10 -> 5 -> 3 -> 2
    assert [tuple(o.shape) for o in outs] == [(2, 16, 12, 10), (2, 32, 6, 5),
                                              (2, 48, 3, 3), (2, 64, 2, 2)]
    # every stage output goes through its LayerNorm (zero mean over C)
    for out in outs:
        assert out.mean(dim=1).abs().max() < 1e-4


def test_out_indices_and_cls_token():
    model = _tiny(out_indices=(1, -1)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [32, 64]
    cls_model = _tiny(out_indices=(3, ), out_type='cls_token').eval()
    with torch.no_grad():
        (feat, ) = cls_model(torch.randn(2, 3, 32, 32))
    assert feat.shape == (2, 64)
    assert hasattr(cls_model, 'cls_block') and not hasattr(model, 'cls_block')


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match='Unknown GroupMamba arch'):
        GroupMamba('huge')
    with pytest.raises(ValueError, match='missing'):
        GroupMamba(dict(embed_dims=[16], depths=[1]))
    with pytest.raises(ValueError, match='multiples of 4'):
        GroupMamba(dict(TINY, embed_dims=[16, 32, 48, 66]))
    with pytest.raises(ValueError, match='mixer'):
        GroupMamba(TINY, mixer='ss2d2')
    with pytest.raises(ValueError, match='out_type'):
        GroupMamba(TINY, out_type='avg')
    with pytest.raises(ValueError, match='out of range'):
        GroupMamba(TINY, out_indices=(4, ))
    model = _tiny()
    with pytest.raises(ValueError, match='3 input channels'):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(TypeError, match='floating point'):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


# ---------------------------------------------------------------------------
# parameter counts (build only)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('arch,paper', [('tiny', 23e6), ('small', 34e6),
                                        ('base', 57e6)])
def test_param_counts_match_paper(arch, paper):
    model = GroupMamba(arch, out_type='cls_token')
    dim = model.embed_dims[-1]
    # + the official classification and distillation heads (1000 classes)
    count = sum(p.numel() for p in model.parameters()) + 2 * (dim * 1000 +
                                                               1000)
    assert abs(count - paper) / paper < 0.03, count
    # dense use drops the class block: its Modulated Group Mamba layer and FFN
    dense = sum(p.numel() for p in GroupMamba(arch).parameters())
    cls_block = sum(p.numel() for p in model.cls_block.parameters())
    assert dense == count - 2 * (dim * 1000 + 1000) - cls_block


def test_mixer_param_counts_by_hand():
    # SS2D, C = 8, d_state 1, expand 1, dt_rank ceil(8 / 16) = 1, 4 dirs:
    # in_proj 8*16 + conv 8*9+8 + x_proj 4*3*8 + dt 4*8*1 + 4*8 + A 32 + D 32
    # + out_norm 16 + out_proj 8*8 = 512
    assert sum(p.numel() for p in SS2D(8).parameters()) == 512
    # four groups of C/4 = 2 channels, one direction each, dt_rank 1:
    # in_proj 2*4 + conv 2*9+2 + x_proj 3*2 + dt 2 + 2 + A 2 + D 2
    # + out_norm 4 + out_proj 4 = 50 per group
    assert sum(p.numel() for p in GroupedSS2D(8).parameters()) == 200


# ---------------------------------------------------------------------------
# the one-call scan against explicit transposed / flipped sequences
# ---------------------------------------------------------------------------
def _crossscan(x, direction):
    """Official CrossScan_k: (B, C, H, W) -> (B, C, L) visiting sequence."""
    if direction in ('col', 'col_reverse'):
        x = x.transpose(2, 3)
    seq = x.flatten(2)
    return seq.flip(-1) if direction.endswith('reverse') else seq


def _crossmerge(y, direction, height, width):
    """Official CrossMerge_k: visiting sequence -> row-major tokens."""
    if direction.endswith('reverse'):
        y = y.flip(-1)
    if direction in ('col', 'col_reverse'):
        b, c, _ = y.shape
        y = y.view(b, c, width, height).transpose(2, 3).reshape(b, c, -1)
    return y


def _explicit_ss2d(m, x):
    """SS2D forward written from the official code, one scan per direction
    on an explicitly permuted copy, through the plain reference scan."""
    b, h, w, _ = x.shape
    xz = F.linear(x, m.in_proj.weight)
    xin, z = xz.chunk(2, dim=-1)
    xin = F.silu(
        F.conv2d(
            xin.permute(0, 3, 1, 2),
            m.conv2d.weight,
            m.conv2d.bias,
            padding=1,
            groups=m.d_inner))
    d, rank, n = m.d_inner, m.dt_rank, m.d_state
    y = 0
    for k, direction in enumerate(m.directions):
        seq = _crossscan(xin, direction)
        x_dbl = torch.einsum('bdl,cd->bcl', seq, m.x_proj_weight[k])
        dts, Bs, Cs = torch.split(x_dbl, [rank, n, n], dim=1)
        dts = torch.einsum('brl,dr->bdl', dts, m.dt_projs_weight[k])
        yk = selective_scan_ref(
            seq,
            dts,
            -torch.exp(m.A_logs[k * d:(k + 1) * d]),
            Bs,
            Cs,
            m.Ds[k * d:(k + 1) * d],
            delta_bias=m.dt_projs_bias[k],
            delta_softplus=True)
        y = y + _crossmerge(yk, direction, h, w)
    y = F.layer_norm(
        y.transpose(1, 2), (d, ), m.out_norm.weight, m.out_norm.bias)
    return F.linear(y * F.silu(z).reshape(b, h * w, d),
                    m.out_proj.weight).view(b, h, w, -1)


class _CountingScan:

    def __init__(self):
        self.calls = []
        self.fn = ss2d_module.selective_scan

    def __call__(self, *args, **kwargs):
        self.calls.append(kwargs)
        return self.fn(*args, **kwargs)


def _randomise(module):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))


@pytest.mark.parametrize('cls', [GroupedSS2D, SS2D])
def test_one_scan_call_matches_explicit_directions(cls, monkeypatch):
    torch.manual_seed(0)  # the layer's init and the input: one fixed draw
    layer = cls(8, d_state=2, scan_impl='ref')  # d_state 2: B/C grouping
    _randomise(layer)
    counter = _CountingScan()
    monkeypatch.setattr(ss2d_module, 'selective_scan', counter)
    x = torch.randn(2, 3, 5, 8, requires_grad=True)  # H != W
    out = layer(x)
    assert len(counter.calls) == 1
    assert counter.calls[0]['order'] == [
        'row', 'col', 'row_reverse', 'col_reverse'
    ]
    assert counter.calls[0]['grid'] == (3, 5)

    x2 = x.detach().clone().requires_grad_(True)
    if cls is GroupedSS2D:
        # group g: channels [2g, 2g+2) scanned by branch g in direction g
        expected = torch.cat([
            _explicit_ss2d(branch, xg)
            for branch, xg in zip(layer.branches, x2.chunk(4, dim=-1))
        ], dim=-1)
    else:
        expected = _explicit_ss2d(layer, x2)
    err = (out - expected).abs().max() / expected.abs().max()
    assert err < 1e-5, err
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    # fp32 round-off of two summation orders, relative to the gradient's
    # scale (an elementwise atol of 1e-6 failed on ~1 in 3 random draws)
    err = (x.grad - x2.grad).abs().max() / x2.grad.abs().max()
    assert err < 1e-5, err


def test_directions_are_not_interchangeable():
    # a scan in the wrong direction must give a different output
    layer = GroupedSS2D(8, scan_impl='ref')
    _randomise(layer)
    x = torch.randn(1, 3, 5, 8)
    swapped = GroupedSS2D(
        8, directions=('col', 'row', 'row_reverse', 'col_reverse'),
        scan_impl='ref')
    swapped.load_state_dict(layer.state_dict())
    assert not torch.allclose(layer(x), swapped(x), atol=1e-4)


# ---------------------------------------------------------------------------
# official checkpoints
# ---------------------------------------------------------------------------
def official_shapes(arch, num_classes=10):
    """Key -> shape of the official ``GroupMamba`` state dict (written from
    Amshaker/GroupMamba ``classification/models/groupmamba.py``)."""
    shapes = {}

    def linear(name, cin, cout, bias=True):
        shapes[f'{name}.weight'] = (cout, cin)
        if bias:
            shapes[f'{name}.bias'] = (cout, )

    def layer_norm(name, c):
        shapes[f'{name}.weight'] = shapes[f'{name}.bias'] = (c, )

    def batch_norm(name, c):
        for p in ('weight', 'bias', 'running_mean', 'running_var'):
            shapes[f'{name}.{p}'] = (c, )
        shapes[f'{name}.num_batches_tracked'] = ()

    def group_mamba_layer(p, c):
        linear(f'{p}.fc1', c, c // 16)
        linear(f'{p}.fc2', c // 16, c)
        layer_norm(f'{p}.norm', c)
        linear(f'{p}.proj', c, c)
        shapes[f'{p}.skip_scale'] = (1, )
        cg = c // 4
        r = math.ceil(cg / 16)
        for g in range(1, 5):
            q = f'{p}.mamba_g{g}'
            linear(f'{q}.in_proj', cg, 2 * cg, bias=False)
            shapes[f'{q}.conv2d.weight'] = (cg, 1, 3, 3)
            shapes[f'{q}.conv2d.bias'] = (cg, )
            shapes[f'{q}.x_proj_weight'] = (1, r + 2, cg)
            shapes[f'{q}.dt_projs_weight'] = (1, cg, r)
            shapes[f'{q}.dt_projs_bias'] = (1, cg)
            shapes[f'{q}.A_logs'] = (cg, 1)
            shapes[f'{q}.Ds'] = (cg, )
            layer_norm(f'{q}.out_norm', cg)
            linear(f'{q}.out_proj', cg, cg, bias=False)

    dims, stem = arch['embed_dims'], arch['stem_channels']
    shapes['patch_embed1.conv.0.weight'] = (stem, 3, 7, 7)
    batch_norm('patch_embed1.conv.1', stem)
    shapes['patch_embed1.conv.3.weight'] = (stem, stem, 3, 3)
    batch_norm('patch_embed1.conv.4', stem)
    shapes['patch_embed1.conv.6.weight'] = (stem, stem, 3, 3)
    batch_norm('patch_embed1.conv.7', stem)
    shapes['patch_embed1.proj.weight'] = (dims[0], stem, 3, 3)
    shapes['patch_embed1.proj.bias'] = (dims[0], )
    layer_norm('patch_embed1.norm', dims[0])
    for i, (c, depth, ratio) in enumerate(
            zip(dims, arch['depths'], arch['mlp_ratios'])):
        if i > 0:
            shapes[f'patch_embed{i + 1}.proj.weight'] = (c, dims[i - 1], 3, 3)
            shapes[f'patch_embed{i + 1}.proj.bias'] = (c, )
            layer_norm(f'patch_embed{i + 1}.norm', c)
        hidden = int(c * ratio)
        for j in range(depth):
            p = f'block{i + 1}.{j}'
            group_mamba_layer(f'{p}.attn', c)
            layer_norm(f'{p}.norm2', c)
            linear(f'{p}.mlp.fc1', c, hidden)
            shapes[f'{p}.mlp.dwconv.dwconv.weight'] = (hidden, 1, 3, 3)
            shapes[f'{p}.mlp.dwconv.dwconv.bias'] = (hidden, )
            linear(f'{p}.mlp.fc2', hidden, c)
        layer_norm(f'norm{i + 1}', c)
    c, hidden = dims[-1], int(dims[-1] * arch['mlp_ratios'][-1])
    layer_norm('post_network.0.norm1', c)
    layer_norm('post_network.0.norm2', c)
    group_mamba_layer('post_network.0.attn', c)
    linear('post_network.0.mlp.fc1', c, hidden)
    linear('post_network.0.mlp.fc2', hidden, c)
    linear('head', c, num_classes)
    linear('dist_head', c, num_classes)
    return shapes


def official_state_dict(arch, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in official_shapes(arch).items():
        if key.endswith('num_batches_tracked'):
            out[key] = torch.tensor(7)
        elif key.endswith('running_var'):
            out[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            out[key] = 0.1 * torch.randn(shape, generator=gen)
    return out


def test_convert_official_keys_exactly():
    official = official_state_dict(TINY)
    dense = convert_groupmamba(official)
    assert set(dense) == set(GroupMamba(TINY).state_dict())
    cls = convert_groupmamba(official, with_cls_block=True)
    model = GroupMamba(TINY, out_type='cls_token')
    missing, unexpected = model.load_state_dict(cls, strict=False)
    assert missing == [] and unexpected == []
    # every official tensor lands once, unchanged (heads dropped)
    assert len(cls) == len(official) - 4
    ids = {id(v) for v in official.values()}
    assert all(id(v) in ids for v in cls.values())
    # a few mappings written out by hand
    for src, dst in [
        ('patch_embed1.conv.4.running_mean', 'stem.convs.1.bn.running_mean'),
        ('patch_embed1.conv.6.weight', 'stem.convs.2.conv.weight'),
        ('patch_embed3.proj.weight', 'downsamples.1.proj.weight'),
        ('block3.1.attn.mamba_g2.x_proj_weight',
         'stages.2.1.mixer.ssm.branches.1.x_proj_weight'),
        ('block1.0.attn.fc2.bias', 'stages.0.0.mixer.cam.fc2.bias'),
        ('block2.0.attn.skip_scale', 'stages.1.0.mixer.skip_scale'),
        ('block2.0.norm2.weight', 'stages.1.0.norm.weight'),
        ('block1.0.mlp.dwconv.dwconv.weight', 'stages.0.0.ffn.dwconv.weight'),
        ('norm4.bias', 'norms.3.bias'),
        ('post_network.0.attn.mamba_g4.Ds', 'cls_block.mixer.ssm.branches.3.Ds'),
        ('post_network.0.mlp.fc1.weight', 'cls_block.ffn.fc1.weight'),
    ]:
        assert cls[dst] is official[src], (src, dst)
    heads = convert_groupmamba(official, with_heads=True)
    assert heads['head.dist_fc.weight'] is official['dist_head.weight']
    assert heads['backbone.norms.0.weight'] is official['norm1.weight']
    with pytest.raises(KeyError, match='unexpected official'):
        convert_groupmamba(dict(official, **{'pos_embed': torch.zeros(1)}))


@pytest.mark.parametrize('wrap', ['flat', 'model_ema'])
def test_init_cfg_loads_official_checkpoint(tmp_path, wrap):
    official = official_state_dict(TINY)
    path = str(tmp_path / 'groupmamba_official.pth')
    if wrap == 'flat':
        torch.save(official, path)
    else:  # training checkpoint: the EMA weights are the released ones
        torch.save(
            dict(model=official_state_dict(TINY, seed=5), model_ema=official),
            path)
    model = GroupMamba(
        TINY,
        scan_impl='ref',
        init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    reference = _tiny()
    reference.load_state_dict(convert_groupmamba(official), strict=True)
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    x = torch.randn(1, 3, 33, 31)
    model.eval()
    reference.eval()
    with torch.no_grad():
        for a, b in zip(model(x), reference(x)):
            torch.testing.assert_close(a, b)


def test_checkpoint_round_trip_through_converter_cli(tmp_path):
    # mmssm model -> official layout (the inverse map, by hand) -> CLI ->
    # a fresh model: identical outputs.
    source = _tiny(out_type='cls_token').eval()
    _randomise(source)
    own = source.state_dict()
    official = {}
    for key in official_shapes(TINY):
        if key.startswith(('head.', 'dist_head.')):
            official[key] = torch.zeros(official_shapes(TINY)[key])
    inverse = {v: k for k, v in _mapping_by_name().items()}
    for key, value in own.items():
        official[inverse[key]] = value
    src, dst = str(tmp_path / 'official.pth'), str(tmp_path / 'mmssm.pth')
    torch.save(official, src)
    subprocess.run([
        sys.executable,
        osp.join(REPO, 'tools/model_converters/groupmamba2mmssm.py'), src,
        dst, '--keep', 'cls'
    ],
                   check=True,
                   capture_output=True)
    target = GroupMamba(
        TINY,
        out_type='cls_token',
        scan_impl='ref',
        init_cfg=dict(type='Pretrained', checkpoint=dst)).eval()
    target.init_weights()
    x = torch.randn(2, 3, 29, 35)
    with torch.no_grad():
        torch.testing.assert_close(target(x)[-1], source(x)[-1])


def _mapping_by_name():
    """Official key -> mmssm key, through the converter on named tensors."""
    shapes = official_shapes(TINY)
    named = {k: torch.zeros(1) for k in shapes}
    converted = convert_groupmamba(named, with_cls_block=True)
    by_id = {id(v): k for k, v in named.items()}
    return {by_id[id(v)]: k for k, v in converted.items()}


def test_missing_checkpoint_key_raises(tmp_path):
    official = official_state_dict(TINY)
    del official['block2.0.attn.mamba_g3.A_logs']
    path = str(tmp_path / 'broken.pth')
    torch.save(official, path)
    model = GroupMamba(TINY, init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(CheckpointError,
                       match=r'missing in the checkpoint \(1\): stages\.1\.0'
                       r'\.mixer\.ssm\.branches\.2\.A_logs'):
        model.init_weights()


# ---------------------------------------------------------------------------
# training behaviour
# ---------------------------------------------------------------------------
def test_frozen_stages_and_norm_eval():
    model = _tiny(frozen_stages=2, norm_eval=True)
    model.train()
    frozen = [model.stem, model.stages[0], model.norms[0], model.downsamples[0],
              model.stages[1], model.norms[1]]
    for module in frozen:
        assert not module.training
        assert all(not p.requires_grad for p in module.parameters())
    for module in [model.downsamples[1], model.stages[2], model.norms[2]]:
        assert module.training
        assert all(p.requires_grad for p in module.parameters())
    bn = model.stem.convs[0].bn
    assert isinstance(bn, torch.nn.BatchNorm2d) and not bn.training
    model.train()  # stays frozen after another train()
    assert not model.stages[1].training
    with pytest.raises(ValueError, match='frozen_stages'):
        GroupMamba(TINY, frozen_stages=5)


def test_with_cp_same_outputs_and_grads():
    plain = _tiny()
    ckpt = _tiny(with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    assert ckpt.stages[0][0].with_cp
    x = torch.randn(1, 3, 32, 24)
    outs_a, outs_b = plain(x), ckpt(x)
    sum(o.sum() for o in outs_a).backward()
    sum(o.sum() for o in outs_b).backward()
    for a, b in zip(outs_a, outs_b):
        torch.testing.assert_close(a, b)
    for (name, pa), pb in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, msg=name)


def test_drop_path_schedule():
    model = _tiny(drop_path_rate=0.3)
    rates = [b.drop_path.drop_prob for stage in model.stages for b in stage]
    assert rates == pytest.approx([0.0, 0.075, 0.15, 0.225, 0.3])
    model.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[-1], model(x)[-1])
