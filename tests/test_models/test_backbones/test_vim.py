"""Tests of the Vim backbone.

``naive_vim`` re-implements the official forward (hustvl/Vim
``models_mamba.py``, bimamba v2) from a raw state dict with explicit sequence
flips and ``selective_scan_ref``: it shares no code with the backbone.
"""
import argparse
import math
import os.path as osp
import runpy

import pytest
import torch
import torch.nn.functional as F

import mmssm  # noqa: F401  (registers the safe globals for torch.load)
from mmssm.models.backbones.vim import (Vim, VimPatchEmbed, cls_token_index,
                                        convert_vim, resize_vim_pos_embed)
from mmssm.ops import selective_scan_ref
from mmssm.utils.checkpoint import CheckpointError

TINY = dict(embed_dims=16, num_layers=3, d_state=4)
REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(__file__))))


# ----------------------------------------------------------- naive reference
def _rms(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def _naive_branch(sd, p, xz, suffix, d_state):
    L = xz.shape[-1]
    x, z = xz.chunk(2, dim=1)
    d_inner = x.shape[1]
    w = sd[f'{p}conv1d{suffix}.weight']
    x = F.conv1d(x, w, sd[f'{p}conv1d{suffix}.bias'], padding=w.shape[-1] - 1,
                 groups=d_inner)[..., :L]
    x = F.silu(x)
    x_dbl = x.transpose(1, 2) @ sd[f'{p}x_proj{suffix}.weight'].t()
    dt_rank = sd[f'{p}dt_proj{suffix}.weight'].shape[1]
    dt, B, C = torch.split(x_dbl, [dt_rank, d_state, d_state], -1)
    dt = (dt @ sd[f'{p}dt_proj{suffix}.weight'].t()).transpose(1, 2)
    return selective_scan_ref(
        x, dt, -torch.exp(sd[f'{p}A{suffix}_log']), B.transpose(1, 2),
        C.transpose(1, 2), sd[f'{p}D{suffix}'], z=z,
        delta_bias=sd[f'{p}dt_proj{suffix}.bias'], delta_softplus=True)


def naive_vim(sd, img, num_layers, d_state, patch=16):
    """Official Vim forward: all tokens after norm_f, class token in the
    middle."""
    x = F.conv2d(img, sd['patch_embed.proj.weight'],
                 sd['patch_embed.proj.bias'], stride=patch)
    x = x.flatten(2).transpose(1, 2)
    M = x.shape[1]
    cls = sd['cls_token'].expand(x.shape[0], -1, -1)
    x = torch.cat([x[:, :M // 2], cls, x[:, M // 2:]], dim=1)
    hidden, residual = x + sd['pos_embed'], None
    for i in range(num_layers):
        p = f'layers.{i}.mixer.'
        residual = hidden if residual is None else residual + hidden
        h = _rms(residual, sd[f'layers.{i}.norm.weight'])
        xz = (h @ sd[p + 'in_proj.weight'].t()).transpose(1, 2)
        out = _naive_branch(sd, p, xz, '', d_state)
        out_b = _naive_branch(sd, p, xz.flip([-1]), '_b', d_state).flip([-1])
        hidden = ((out + out_b) / 2).transpose(1, 2) @ sd[
            p + 'out_proj.weight'].t()
    return _rms(residual + hidden, sd['norm_f.weight'])


def official_state_dict(dim=16, depth=3, d_state=4, grid=(2, 2), seed=0,
                        num_classes=5):
    """A state dict laid out like an official hustvl/Vim checkpoint, built
    from the key list of REFERENCE.md (not from the backbone)."""
    g = torch.Generator().manual_seed(seed)
    d_inner, R = 2 * dim, math.ceil(dim / 16)
    M = grid[0] * grid[1]

    def rnd(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    sd = {
        'patch_embed.proj.weight': rnd(dim, 3, 16, 16, scale=0.05),
        'patch_embed.proj.bias': rnd(dim),
        'cls_token': rnd(1, 1, dim),
        'pos_embed': rnd(1, M + 1, dim),
        'norm_f.weight': 1 + rnd(dim),
        'head.weight': rnd(num_classes, dim),
        'head.bias': rnd(num_classes),
    }
    for i in range(depth):
        p = f'layers.{i}.'
        sd[p + 'norm.weight'] = 1 + rnd(dim)
        sd[p + 'mixer.in_proj.weight'] = rnd(2 * d_inner, dim)
        sd[p + 'mixer.out_proj.weight'] = rnd(dim, d_inner)
        for s in ('', '_b'):
            sd[p + f'mixer.conv1d{s}.weight'] = rnd(d_inner, 1, 4)
            sd[p + f'mixer.conv1d{s}.bias'] = rnd(d_inner)
            sd[p + f'mixer.x_proj{s}.weight'] = rnd(R + 2 * d_state, d_inner)
            sd[p + f'mixer.dt_proj{s}.weight'] = rnd(d_inner, R)
            sd[p + f'mixer.dt_proj{s}.bias'] = rnd(d_inner) - 3
            sd[p + f'mixer.A{s}_log'] = torch.log(
                torch.arange(1, d_state + 1.)).repeat(d_inner, 1) + rnd(
                    d_inner, d_state)
            sd[p + f'mixer.D{s}'] = 1 + rnd(d_inner)
    return sd


def tiny_vim(**kwargs):
    kwargs.setdefault('arch', TINY)
    kwargs.setdefault('img_size', 32)
    kwargs.setdefault('mixer_cfg', dict(scan_impl='ref'))
    return Vim(**kwargs)


# --------------------------------------------------------------------- tests
def test_param_counts_match_paper():
    """Vim-Ti 7 M and Vim-S 26 M with a 1000-class head (paper Table 1)."""
    for arch, dim, paper in [('tiny', 192, 7e6), ('small', 384, 26e6)]:
        model = Vim(arch)
        n = sum(p.numel() for p in model.parameters()) + dim * 1000 + 1000
        assert abs(n - paper) / paper < 0.03, (arch, n)
    # exact count of Vim-Ti from the official shapes
    per_layer = (192 * 768 + 2 * (384 * 4 + 384) + 2 * 384 * 44 + 2 *
                 (12 * 384 + 384) + 2 * 384 * 16 + 2 * 384 + 384 * 192 + 192)
    expected = 24 * per_layer + 3 * 256 * 192 + 192 + 197 * 192 + 192 + 192
    assert sum(p.numel() for p in Vim('tiny').parameters()) == expected
    assert Vim('middle').num_layers == 32 and Vim('large').embed_dims == 1024


def test_forward_matches_official_math_and_checkpoint_round_trip(tmp_path):
    """A file laid out like an official checkpoint (with an argparse
    Namespace, refused by plain ``torch.load(weights_only=True)``) loads
    through init_cfg with no missing keys and gives the reference
    features."""
    sd = official_state_dict()
    ckpt = tmp_path / 'vim_official.pth'
    torch.save(
        dict(model=sd, model_ema=None, epoch=299,
             args=argparse.Namespace(model='vim_tiny', lr=5e-4)), ckpt)
    model = tiny_vim(out_type='raw',
                     init_cfg=dict(type='Pretrained', checkpoint=str(ckpt)))
    model.init_weights()
    got = dict(model.state_dict())
    for key, value in sd.items():
        if not key.startswith('head.'):
            torch.testing.assert_close(got[key], value)
    assert set(got) == {k for k in sd if not k.startswith('head.')}
    model.eval()
    img = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(img)[0]
        ref = naive_vim(sd, img, 3, 4)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    # and the class token output is the middle token (M // 2 = 2)
    cls_model = tiny_vim(out_type='cls_token')
    cls_model.load_state_dict(dict(model.state_dict()))
    cls_model.eval()
    with torch.no_grad():
        torch.testing.assert_close(cls_model(img)[0], ref[:, 2])


def test_converter_layout_and_tool(tmp_path):
    sd = official_state_dict()
    sd['rope.freqs_cos'] = torch.zeros(3)
    out = convert_vim({'module.' + k: v for k, v in sd.items()})
    assert 'head.fc.weight' in out and 'head.fc.bias' in out
    assert not any(k.startswith('rope') for k in out)
    backbone = {k[9:]: v for k, v in out.items() if k.startswith('backbone.')}
    # pos_embed keeps its class row in the middle (not moved to row 0)
    torch.testing.assert_close(backbone['pos_embed'], sd['pos_embed'])
    result = tiny_vim().load_state_dict(backbone, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    with pytest.raises(KeyError, match='fc_norm'):
        convert_vim(dict(sd, **{'fc_norm.weight': torch.ones(2)}))
    bad = dict(sd, pos_embed=torch.zeros(1, 4, 16))  # 3 patch rows
    with pytest.raises(ValueError, match='not a square'):
        convert_vim(bad)
    # the command line tool
    src, dst = tmp_path / 'in.pth', tmp_path / 'out.pth'
    torch.save(dict(model=sd, args=argparse.Namespace(a=1)), src)
    tool = osp.join(REPO, 'tools', 'model_converters', 'vim2mmssm.py')
    import sys
    argv, sys.argv = sys.argv, [tool, str(src), str(dst)]
    try:
        runpy.run_path(tool, run_name='__main__')
    finally:
        sys.argv = argv
    saved = torch.load(dst, map_location='cpu')['state_dict']
    assert set(saved) == set(out)
    model = tiny_vim(
        init_cfg=dict(type='Pretrained', checkpoint=str(dst),
                      prefix='backbone.'))
    model.init_weights()
    torch.testing.assert_close(model.norm_f.weight, sd['norm_f.weight'])


def test_missing_keys_raise(tmp_path):
    sd = official_state_dict()
    del sd['layers.1.mixer.D_b']
    ckpt = tmp_path / 'broken.pth'
    torch.save(dict(model=sd), ckpt)
    model = tiny_vim(init_cfg=dict(type='Pretrained', checkpoint=str(ckpt)))
    with pytest.raises(CheckpointError,
                       match=r'missing in the checkpoint \(1\): '
                       r'layers\.1\.mixer\.D_b'):
        model.init_weights()


@pytest.mark.parametrize('size,grid', [((32, 32), (2, 2)), ((50, 70), (4, 5)),
                                       ((17, 16), (2, 1)), ((15, 9), (1, 1))])
def test_odd_and_non_square_inputs(size, grid):
    torch.manual_seed(0)
    model = tiny_vim(out_indices=[0, 2]).eval()
    img = torch.randn(1, 3, *size)
    with torch.no_grad():
        outs = model(img)
        assert [o.shape for o in outs] == [(1, 16, *grid)] * 2
        # zero padding on the right / bottom, never a crop
        padded = F.pad(img, (0, grid[1] * 16 - size[1], 0,
                             grid[0] * 16 - size[0]))
        torch.testing.assert_close(model(padded)[1], outs[1])


def test_stride8_variant_grid():
    embed = VimPatchEmbed(3, 8, patch_size=16, stride=8)
    assert embed.grid_size(224, 224) == (27, 27)
    assert embed.grid_size(30, 40) == (3, 4)  # 30 padded to 32, 40 fits
    tokens, grid = embed(torch.randn(1, 3, 30, 40))
    assert grid == (3, 4) and tokens.shape == (1, 12, 8)
    manual = embed.proj(F.pad(torch.ones(1, 3, 30, 40), (0, 0, 0, 2)))
    torch.testing.assert_close(
        embed(torch.ones(1, 3, 30, 40))[0], manual.flatten(2).transpose(1, 2))
    model = tiny_vim(stride=8, img_size=224)
    assert model.pos_embed.shape == (1, 27 * 27 + 1, 16)


def test_class_token_placement():
    """The class token is inserted at M // 2 with pos_embed row M // 2, and
    that token (not token 0) is the one dropped from the feature maps."""
    torch.manual_seed(0)
    model = tiny_vim(img_size=48).eval()  # 3x3 grid, M = 9
    img = torch.randn(2, 3, 48, 48)
    tokens, grid, cls_index = model.prepare_tokens(img)
    assert grid == (3, 3) and cls_index == 4 and tokens.shape[1] == 10
    torch.testing.assert_close(
        tokens[:, 4],
        (model.cls_token[0, 0] + model.pos_embed[0, 4]).expand(2, -1))
    patches = F.conv2d(img, model.patch_embed.proj.weight,
                       model.patch_embed.proj.bias, stride=16)
    patches = patches.flatten(2).transpose(1, 2)
    torch.testing.assert_close(tokens[:, :4], patches[:, :4] +
                               model.pos_embed[:, :4])
    torch.testing.assert_close(tokens[:, 5:], patches[:, 4:] +
                               model.pos_embed[:, 5:])
    raw = tiny_vim(img_size=48, out_type='raw')
    fmap = tiny_vim(img_size=48)
    raw.load_state_dict(model.state_dict())
    fmap.load_state_dict(model.state_dict())
    with torch.no_grad():
        r = raw.eval()(img)[0]
        f = fmap.eval()(img)[0]
    expected = torch.cat([r[:, :4], r[:, 5:]], 1).transpose(1, 2).reshape(
        2, 16, 3, 3)
    torch.testing.assert_close(f, expected)
    avg = tiny_vim(img_size=48, out_type='avg_featmap')
    avg.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(avg.eval()(img)[0], f.mean((2, 3)))


def test_head_class_token_position():
    """ShuffleMamba layout: class token and pos_embed row at index 0."""
    torch.manual_seed(0)
    model = tiny_vim(img_size=48, cls_position='head', out_type='raw').eval()
    img = torch.randn(1, 3, 48, 48)
    tokens, _, cls_index = model.prepare_tokens(img)
    assert cls_index == 0
    torch.testing.assert_close(tokens[0, 0],
                               model.cls_token[0, 0] + model.pos_embed[0, 0])
    fmap = tiny_vim(img_size=48, cls_position='head')
    fmap.load_state_dict(model.state_dict())
    with torch.no_grad():
        raw = model(img)[0]
        torch.testing.assert_close(
            fmap.eval()(img)[0], raw[:, 1:].transpose(1, 2).reshape(
                1, 16, 3, 3))
    pos = torch.randn(1, 5, 4)
    new = resize_vim_pos_embed(pos, (2, 2), (3, 3), cls_position='head')
    torch.testing.assert_close(new[:, 0], pos[:, 0])
    assert cls_token_index(9, 'middle') == 4 and cls_token_index(9,
                                                                 'head') == 0
    with pytest.raises(ValueError, match='cls_position'):
        tiny_vim(cls_position='tail')


def test_pos_embed_resize():
    torch.manual_seed(0)
    pos = torch.randn(1, 2 * 3 + 1, 8)
    # identity when the grid matches
    assert resize_vim_pos_embed(pos, (2, 3), (2, 3)) is pos
    new = resize_vim_pos_embed(pos, (2, 3), (4, 5))
    assert new.shape == (1, 21, 8)
    # class row (index 3 of 6 patches) moves to index 10 of 20 patches
    torch.testing.assert_close(new[:, 10], pos[:, 3])
    patches = torch.cat([pos[:, :3], pos[:, 4:]], 1).reshape(1, 2, 3, 8)
    manual = F.interpolate(patches.permute(0, 3, 1, 2), size=(4, 5),
                           mode='bicubic', align_corners=False)
    manual = manual.flatten(2).transpose(1, 2)
    torch.testing.assert_close(torch.cat([new[:, :10], new[:, 11:]], 1),
                               manual)
    # bf16 embeddings are resized in fp32 and returned in bf16
    new16 = resize_vim_pos_embed(pos.bfloat16(), (2, 3), (4, 5))
    assert new16.dtype == torch.bfloat16
    torch.testing.assert_close(new16.float(), new, rtol=2e-2, atol=2e-2)
    with pytest.raises(ValueError, match='does not match'):
        resize_vim_pos_embed(pos, (2, 2), (4, 4))


def test_pos_embed_resized_when_loading_other_grid():
    """A 2x2-grid state dict loads into a 4x4-grid model through the
    pre-hook, and matches the online resize of the small model."""
    torch.manual_seed(0)
    small = tiny_vim(img_size=32).eval()
    big = tiny_vim(img_size=64).eval()
    big.load_state_dict(small.state_dict())
    assert big.pos_embed.shape == (1, 17, 16)
    torch.testing.assert_close(
        big.pos_embed, resize_vim_pos_embed(small.pos_embed, (2, 2), (4, 4)))
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(big(img)[0], small(img)[0])
    # a class-token-free model keeps the middle row out, not row 0
    no_cls = tiny_vim(img_size=32, with_cls_token=False)
    no_cls.load_state_dict(small.state_dict())
    expected = torch.cat([small.pos_embed[:, :2], small.pos_embed[:, 3:]], 1)
    torch.testing.assert_close(no_cls.pos_embed, expected)
    with pytest.raises(KeyError, match='cls_token'):
        small.load_state_dict(no_cls.state_dict())


def test_with_cp_same_output_and_grads():
    torch.manual_seed(0)
    a = tiny_vim(out_indices=[1, 2])
    b = tiny_vim(out_indices=[1, 2], with_cp=True)
    b.load_state_dict(a.state_dict())
    img = torch.randn(1, 3, 32, 48)
    outs_a, outs_b = a(img), b(img)
    sum(o.sum() for o in outs_a).backward()
    sum(o.sum() for o in outs_b).backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, msg=name)


def test_drop_path_only_in_training():
    torch.manual_seed(0)
    model = tiny_vim(drop_path_rate=0.5)
    assert [round(layer.drop_path.drop_prob, 2)
            for layer in model.layers[1:]] == [0.25, 0.5]
    img = torch.randn(4, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(img)[0], model(img)[0])
        model.train()
        assert not torch.allclose(model(img)[0], model(img)[0])


def test_frozen_stages_and_norm_eval():
    model = tiny_vim(frozen_stages=2)
    model.train()
    assert not model.pos_embed.requires_grad
    assert not model.cls_token.requires_grad
    assert not any(p.requires_grad for p in model.patch_embed.parameters())
    assert not any(p.requires_grad for p in model.layers[1].parameters())
    assert all(p.requires_grad for p in model.layers[2].parameters())
    assert model.norm_f.weight.requires_grad
    assert not model.layers[0].training and model.layers[2].training
    full = tiny_vim(frozen_stages=3)
    assert not full.norm_f.weight.requires_grad
    with pytest.raises(ValueError, match='frozen_stages'):
        tiny_vim(frozen_stages=4)
    stem_only = tiny_vim(frozen_stages=0).train()
    assert not stem_only.pos_embed.requires_grad
    assert all(p.requires_grad for p in stem_only.layers[0].parameters())
    # Vim has no BatchNorm: norm_eval would do nothing and is refused
    with pytest.raises(ValueError, match='Vim has no BatchNorm'):
        tiny_vim(norm_eval=True)


def test_every_trainable_parameter_gets_a_gradient():
    # DistributedDataParallel (find_unused_parameters=False, the default)
    # fails when a trainable parameter gets no gradient; dense configs use
    # final_norm=False, whose norm_f is then frozen.
    for final_norm in (True, False):
        model = tiny_vim(final_norm=final_norm, out_indices=(0, -1))
        sum(o.sum() for o in model(torch.randn(1, 3, 32, 48))).backward()
        missing = [n for n, p in model.named_parameters()
                   if p.requires_grad and p.grad is None]
        assert missing == [], missing
        assert model.norm_f.weight.requires_grad == final_norm


def test_get_layer_depth():
    model = tiny_vim()
    assert model.get_layer_depth('backbone.pos_embed', 'backbone.') == (0, 5)
    assert model.get_layer_depth('backbone.cls_token', 'backbone.') == (0, 5)
    assert model.get_layer_depth('backbone.patch_embed.proj.weight',
                                 'backbone.') == (0, 5)
    assert model.get_layer_depth('backbone.layers.0.mixer.A_log',
                                 'backbone.') == (1, 5)
    assert model.get_layer_depth('layers.2.norm.weight') == (3, 5)
    assert model.get_layer_depth('backbone.norm_f.weight',
                                 'backbone.') == (4, 5)
    assert model.get_layer_depth('neck.fpn.weight', 'backbone.') == (4, 5)


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match='Unknown Vim arch'):
        Vim('huge')
    with pytest.raises(ValueError, match='num_layers'):
        Vim(dict(embed_dims=8))
    with pytest.raises(ValueError, match='out_type'):
        tiny_vim(out_type='tokens')
    with pytest.raises(ValueError, match='with_cls_token'):
        tiny_vim(out_type='cls_token', with_cls_token=False)
    with pytest.raises(ValueError, match='out of range'):
        tiny_vim(out_indices=[3])
    model = tiny_vim()
    with pytest.raises(ValueError, match='input channels'):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match='4D'):
        model(torch.randn(3, 32, 32))
    with pytest.raises(TypeError, match='floating point'):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
