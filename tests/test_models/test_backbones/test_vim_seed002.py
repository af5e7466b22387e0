"""Vim seed-002 options (issue #17 part 1): the SE block (``se_ratio``) and the
MobileNetV2 patch embedding (``patch_embed='mbv2'``): shapes and gradients
(with registers, SLWS and the ViT-Adapter), the SE block against a
hand-written one, the stem's strides and widths, official-layout weights
loading strictly with the options on, argument checks, and the options off
leaving the official layout untouched."""
import pytest
import torch
import torch.nn as nn

import mmssm  # noqa: F401
from mmssm.engine.hooks import SLWSHook
from mmssm.models.backbones import PlainAdapter, Vim
from mmssm.models.backbones.vim import (VimMBV2PatchEmbed, VimPatchEmbed,
                                        VimSE)
from mmssm.utils.checkpoint import CheckpointError, load_pretrained
# tests/test_models/test_backbones is on sys.path (pytest rootdir-less
# import): the official-layout state dict built from REFERENCE.md's key list
from test_vim import official_state_dict  # noqa: I

TINY = dict(embed_dims=16, num_layers=3, d_state=4)
OPTIONS = {
    'se': dict(se_ratio=4),
    'mbv2': dict(patch_embed='mbv2'),
    'both': dict(se_ratio=4, patch_embed='mbv2'),
}


def _mbv2(option):
    return OPTIONS[option].get('patch_embed') == 'mbv2'


def tiny_vim(**kwargs):
    cfg = dict(arch=TINY, img_size=32, mixer_cfg=dict(scan_impl='ref'))
    cfg.update(kwargs)
    torch.manual_seed(0)
    return Vim(**cfg)


def _stem_keys(model):
    return {k for k in model.state_dict() if k.startswith('patch_embed.')}


def _se_keys(model):
    return {k for k in model.state_dict() if '.se.' in k}


# ----------------------------------------------------------- options off
def test_options_off_keep_the_official_layout():
    official = {k for k in official_state_dict() if not k.startswith('head')}
    for kwargs in ({}, dict(se_ratio=None, patch_embed='conv'),
                   dict(se_ratio=0)):
        model = tiny_vim(**kwargs)
        assert set(model.state_dict()) == official
        assert all(layer.se is None for layer in model.layers)
        assert isinstance(model.patch_embed, VimPatchEmbed)
        assert model.se_ratio is None
    # on: exactly the new keys on top of (se) / instead of the dense
    # patch embedding (mbv2)
    se = tiny_vim(se_ratio=4)
    assert set(se.state_dict()) - official == _se_keys(se)
    assert _se_keys(se) == {
        f'layers.{i}.se.{fc}.{p}'
        for i in range(3) for fc in ('fc1', 'fc2') for p in ('weight', 'bias')
    }
    assert se.layers[0].se.fc1.weight.shape == (4, 16)
    mbv2 = tiny_vim(patch_embed='mbv2')
    assert set(mbv2.state_dict()) == (
        official - {'patch_embed.proj.weight', 'patch_embed.proj.bias'}
    ) | _stem_keys(mbv2)


# ------------------------------------------------------ shapes, gradients
@pytest.mark.parametrize('num_registers', [0, 3])
@pytest.mark.parametrize('option', sorted(OPTIONS))
def test_shapes_and_gradients(option, num_registers):
    model = tiny_vim(num_registers=num_registers, out_indices=[1, 2],
                     **OPTIONS[option]).train()
    img = torch.randn(2, 3, 50, 70)
    outs = model(img)
    assert [tuple(o.shape) for o in outs] == [(2, 16, 4, 5)] * 2
    (outs[0].sum() + outs[1].square().mean()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
    new = _se_keys(model) | (_stem_keys(model) if _mbv2(option) else set())
    for name, param in model.named_parameters():
        if name in new:
            assert param.grad.abs().sum() > 0, name
    # classification features too (class token / registers)
    cls = tiny_vim(num_registers=num_registers, out_type='cls_token',
                   **OPTIONS[option]).eval()
    with torch.no_grad():
        feat = cls(img[:1, :, :32, :32])[0]
    assert feat.shape == (1, 16 * max(num_registers, 1))


# -------------------------------------------------------------- SE block
def _hand_se(x, w1, b1, w2, b2):
    """Squeeze (mean over every token) -> FC -> ReLU -> FC -> sigmoid ->
    scale, written out with matrix products."""
    squeezed = x.sum(dim=1) / x.shape[1]  # (B, D)
    hidden = torch.clamp(squeezed @ w1.t() + b1, min=0)
    gate = 1 / (1 + torch.exp(-(hidden @ w2.t() + b2)))
    return x * gate[:, None, :]


def test_se_block_matches_hand_written():
    torch.manual_seed(0)
    se = VimSE(16, 4)
    x = torch.randn(2, 7, 16)
    want = _hand_se(x, se.fc1.weight, se.fc1.bias, se.fc2.weight,
                    se.fc2.bias)
    torch.testing.assert_close(se(x), want)
    # order-independent squeeze: shuffling tokens (SLWS) commutes with it
    perm = torch.randperm(7)
    torch.testing.assert_close(se(x[:, perm]), se(x)[:, perm])


@pytest.mark.parametrize('num_registers', [0, 3])
def test_se_placement_in_the_whole_model(num_registers):
    """The SE model equals the plain model with the same weights and a
    hand-written SE applied to every layer's mixer output before the next
    residual add (squeeze over every token, registers / class token
    included)."""
    with_se = tiny_vim(se_ratio=4, num_registers=num_registers,
                       out_type='raw', layer_output='mixer',
                       out_indices=[0, 2]).eval()
    plain = tiny_vim(num_registers=num_registers).eval()
    plain.load_state_dict(
        {k: v for k, v in with_se.state_dict().items() if '.se.' not in k})
    img = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        got = with_se(img)
        hidden, _, _ = plain.prepare_tokens(img)
        residual, mixer_out = None, []
        for i, layer in enumerate(plain.layers):
            hidden, residual = layer(hidden, residual)
            se = with_se.layers[i].se
            hidden = _hand_se(hidden, se.fc1.weight, se.fc1.bias,
                              se.fc2.weight, se.fc2.bias)
            mixer_out.append(hidden)
        want_last = plain.norm_f(residual + hidden)
    assert hidden.shape[1] == 6 + max(num_registers, 1)
    torch.testing.assert_close(got[0], mixer_out[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got[1], want_last, rtol=1e-4, atol=1e-5)


def test_slws_and_adapter_with_both_options():
    # SLWS shuffles the layers of an SE + mbv2 Vim with registers
    model = tiny_vim(num_registers=3, **OPTIONS['both']).train()
    hook = SLWSHook(prob=1.0, seed=0)
    hook.attach(model)
    fire = hook.draw().tolist()  # layer 0 never, the last always
    assert not fire[0] and fire[-1]
    model(torch.randn(2, 3, 32, 32))[0].sum().backward()
    assert all(key[1] == 4 + 3 for key in hook._perms)
    assert model.layers[2].se.fc1.weight.grad.abs().sum() > 0
    hook.detach()
    # ViT-Adapter: zero-gamma injection gives the backbone's own features
    torch.manual_seed(0)
    adapter = PlainAdapter(
        backbone=dict(type='Vim', arch=dict(embed_dims=32, num_layers=4,
                                            d_state=4), img_size=64,
                      num_registers=2, **OPTIONS['both']),
        conv_inplane=8, deform_num_heads=4, norm_cfg=dict(type='BN')).eval()
    seen = {}
    adapter.backbone.norm_f.register_forward_hook(
        lambda m, a, out: seen.__setitem__('tokens', out.detach()))
    img = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        maps = adapter(img)
        own = adapter.backbone(img)[0]
    assert [m.shape[1] for m in maps] == [32] * 4
    patch_index, _ = adapter.backbone.token_layout((4, 6))
    tokens = seen['tokens'][:, patch_index]
    torch.testing.assert_close(tokens.transpose(1, 2).reshape(1, 32, 4, 6),
                               own, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------ mbv2 stem
def test_mbv2_stem_strides_and_widths():
    model = tiny_vim(patch_embed='mbv2').eval()
    stem = model.patch_embed
    assert isinstance(stem, VimMBV2PatchEmbed)
    assert model.token_stride == 16 and model.in_channels == 3
    shapes = []
    for module in [stem.stem] + list(stem.blocks):
        module.register_forward_hook(
            lambda m, a, out: shapes.append(tuple(out.shape[1:])))
    with torch.no_grad():
        tokens, grid = stem(torch.randn(1, 3, 64, 96))
    # stride 2, 4, 8, 16; MobileNetV2 widths 32, 24, 32, then embed_dims
    assert shapes == [(32, 32, 48), (24, 16, 24), (32, 8, 12), (16, 4, 6)]
    assert grid == (4, 6) and tokens.shape == (1, 24, 16)
    for block, (cin, hidden, cout) in zip(
            stem.blocks, [(32, 192, 24), (24, 144, 32), (32, 192, 16)]):
        assert block.expand.conv.in_channels == cin
        assert block.expand.conv.out_channels == hidden
        assert block.dw.conv.groups == hidden and block.dw.conv.stride == (2,
                                                                           2)
        assert block.project.conv.out_channels == cout
        assert isinstance(block.expand.act, nn.ReLU6)
        assert not hasattr(block.project, 'act')  # linear bottleneck
    assert stem.stem.conv.kernel_size == (3, 3) and stem.stem.conv.stride == (
        2, 2)
    # the same token grid as the dense patch embedding, odd sizes included
    for size in [(32, 32), (50, 70), (17, 16), (15, 9), (64, 96)]:
        assert stem.grid_size(*size) == model.grid_size(*size) == \
            VimPatchEmbed(3, 16, 16).grid_size(*size)
        with torch.no_grad():
            assert stem(torch.randn(1, 3, *size))[1] == stem.grid_size(*size)
    # patch 8: two inverted residuals; Vim-Ti's stem
    assert len(VimMBV2PatchEmbed(3, 64, 8).blocks) == 2
    assert sum(p.numel()
               for p in VimMBV2PatchEmbed(3, 192, 16).parameters()) == 70112


def test_mbv2_stem_pads_right_and_bottom_to_a_multiple_of_the_patch():
    """Odd image sizes: the stem sees the image zero padded on the right and
    at the bottom to the next multiple of 16 (padding written out here, not
    taken from the module), never cropped."""
    import torch.nn.functional as F
    stem = VimMBV2PatchEmbed(3, 16, 16).eval()
    for h, w in [(17, 16), (15, 9), (50, 70), (32, 48)]:
        x = torch.randn(2, 3, h, w)
        pad_h, pad_w = -(-h // 16) * 16 - h, -(-w // 16) * 16 - w
        with torch.no_grad():
            tokens, grid = stem(x)
            manual = stem.blocks(stem.stem(F.pad(x, (0, pad_w, 0, pad_h))))
        assert grid == ((h + pad_h) // 16, (w + pad_w) // 16)
        torch.testing.assert_close(tokens, manual.flatten(2).transpose(1, 2),
                                   rtol=0, atol=0)


def test_mbv2_batch_norm_training_options():
    model = tiny_vim(patch_embed='mbv2', norm_eval=True).train()
    bns = [m for m in model.patch_embed.modules()
           if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 10 and not any(bn.training for bn in bns)
    with pytest.raises(ValueError, match='no BatchNorm'):
        tiny_vim(norm_eval=True)
    frozen = tiny_vim(patch_embed='mbv2', se_ratio=4, frozen_stages=1)
    frozen.train()
    assert not any(p.requires_grad for p in frozen.patch_embed.parameters())
    assert not frozen.layers[0].se.fc1.weight.requires_grad
    assert frozen.layers[1].se.fc1.weight.requires_grad
    assert not frozen.patch_embed.training
    depth = frozen.get_layer_depth
    assert depth('backbone.patch_embed.blocks.0.dw.conv.weight',
                 'backbone.') == (0, 5)
    assert depth('backbone.layers.2.se.fc2.bias', 'backbone.') == (3, 5)


# --------------------------------------------------------- checkpoints
@pytest.mark.parametrize('option', sorted(OPTIONS))
def test_official_weights_load_with_options_on(option, tmp_path,
                                               monkeypatch):
    sd = official_state_dict()
    ckpt = tmp_path / 'official.pth'
    torch.save(dict(model=sd), ckpt)
    model = tiny_vim(**OPTIONS[option])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    new = _se_keys(model)
    if _mbv2(option):
        new |= _stem_keys(model)
    logs = []
    import mmengine.logging
    import mmssm.models.backbones.vim as vim_module
    for where in (mmengine.logging, vim_module):
        monkeypatch.setattr(where, 'print_log',
                            lambda msg, *a, **k: logs.append(msg))
    result = load_pretrained(model, str(ckpt))
    assert set(result['absent_by_design']) == new
    assert not any(result[k] for k in ('missing', 'unexpected', 'mismatched'))
    # the log lists exactly the newly initialised weights
    (newly, ) = [m for m in logs if 'keep their initialisation' in m]
    assert newly.endswith(str(sorted(new)))
    dropped = [m for m in logs if 'dense patch embedding' in m]
    if _mbv2(option):
        assert dropped and dropped[0].endswith(
            "['patch_embed.proj.bias', 'patch_embed.proj.weight']")
    else:
        assert not dropped
    got = model.state_dict()
    for key, value in got.items():
        if key in new:
            torch.testing.assert_close(value, before[key])  # kept its init
        else:
            torch.testing.assert_close(value, sd[key])
    # the init_cfg path gives the same weights
    via_cfg = tiny_vim(**OPTIONS[option],
                       init_cfg=dict(type='Pretrained', checkpoint=str(ckpt)))
    via_cfg.init_weights()
    for key, value in via_cfg.state_dict().items():
        torch.testing.assert_close(value, got[key])


def test_loading_stays_strict_with_options_on(tmp_path):
    def save(sd, name):
        path = tmp_path / name
        torch.save(dict(model=sd), path)
        return str(path)

    broken = official_state_dict()
    del broken['layers.1.mixer.D_b']
    model = tiny_vim(**OPTIONS['both'])
    with pytest.raises(CheckpointError, match=r'missing in the checkpoint '
                       r'\(1\): layers\.1\.mixer\.D_b'):
        load_pretrained(model, save(broken, 'broken.pth'))
    # an SE checkpoint lacking some SE keys is not the official layout
    se_sd = tiny_vim(se_ratio=4).state_dict()
    partial = dict(official_state_dict(),
                   **{k: v for k, v in se_sd.items()
                      if k.startswith('layers.0.se.')})
    with pytest.raises(CheckpointError, match=r'layers\.1\.se\.fc1\.weight'):
        load_pretrained(tiny_vim(se_ratio=4), save(partial, 'partial.pth'))
    # an mbv2 checkpoint with the dense conv too: unexpected
    mixed = dict(tiny_vim(patch_embed='mbv2').state_dict(),
                 **{'patch_embed.proj.weight': torch.zeros(16, 3, 16, 16)})
    with pytest.raises(CheckpointError,
                       match=r'unexpected.*patch_embed\.proj'):
        load_pretrained(tiny_vim(patch_embed='mbv2'), save(mixed, 'mix.pth'))
    # the options' own checkpoints round-trip with nothing new
    src = tiny_vim(**OPTIONS['both'])
    result = load_pretrained(tiny_vim(**OPTIONS['both']),
                             save(src.state_dict(), 'own.pth'))
    assert result['absent_by_design'] == []
    # an options-off model refuses an options-on checkpoint
    with pytest.raises(CheckpointError, match=r'unexpected.*se\.fc'):
        load_pretrained(tiny_vim(), save(tiny_vim(se_ratio=4).state_dict(),
                                         'se.pth'))


# ------------------------------------------------------------ arguments
def test_bad_arguments():
    with pytest.raises(ValueError, match=r"\('conv', 'mbv2'\).*'dense'"):
        tiny_vim(patch_embed='dense')
    for bad in (-1, 1.5, True, '4', 32):  # 16 // 32 == 0
        with pytest.raises(ValueError, match='se_ratio must be None or 0'):
            tiny_vim(se_ratio=bad)
    with pytest.raises(ValueError, match='patch_size in'):
        tiny_vim(patch_embed='mbv2', patch_size=14)
    with pytest.raises(ValueError, match='no overlapping variant'):
        tiny_vim(patch_embed='mbv2', stride=8)
    assert tiny_vim(se_ratio=16).layers[0].se.fc1.out_features == 1
