"""Vim with Mamba-Reg registers: layout, embeddings, dense outputs, SLWS,
checkpoints in the Mamba-Reg layout (init_cfg, converter, CLI)."""
import os.path as osp

import pytest
import torch

import mmssm  # noqa: F401
from mmssm.engine.hooks import SLWSHook
from mmssm.models.backbones import Vim, convert_vim
from mmssm.models.backbones.vim import mamba_reg_layout

ARCH = dict(embed_dims=32, num_layers=2, d_state=4)


def reg_vim(**kwargs):
    cfg = dict(arch=ARCH, img_size=64, num_registers=3)
    cfg.update(kwargs)
    torch.manual_seed(0)
    return Vim(**cfg).eval()


def _expected_positions(num_patches, n):
    """Mamba-Reg layout built by walking the sequence."""
    chunk = num_patches // (n + 1)
    seq, patch = [], 0
    for _ in range(n):
        seq += ['p'] * chunk
        seq.append('r')
        patch += chunk
    seq += ['p'] * (num_patches - patch)
    return [i for i, t in enumerate(seq) if t == 'r'], len(seq)


def test_layout_14x14_with_12_registers():
    order, regs, patches = mamba_reg_layout(196, 12)
    assert regs.tolist() == list(range(15, 192, 16))  # 15, 31, ..., 191
    assert regs.tolist()[-1] == 191 and len(order) == 208
    assert patches.tolist() == [i for i in range(208) if (i - 15) % 16 != 0
                                or i > 191]
    seq = torch.cat([torch.arange(196), -1 - torch.arange(12)])[order]
    assert (seq[regs] < 0).all()
    assert seq[patches].tolist() == list(range(196))  # patches in order


@pytest.mark.parametrize('grid,n', [((5, 7), 4), ((3, 3), 12), ((13, 11), 12),
                                    ((32, 20), 16), ((1, 1), 2)])
def test_layout_other_grids(grid, n):
    num = grid[0] * grid[1]
    order, regs, patches = mamba_reg_layout(num, n)
    expected, length = _expected_positions(num, n)
    assert regs.tolist() == expected and len(order) == length == num + n
    assert sorted(regs.tolist() + patches.tolist()) == list(range(num + n))
    assert (order[patches] == torch.arange(num)).all()
    assert (order[regs] == num + torch.arange(n)).all()
    if num < n + 1:  # chunk 0: all registers first
        assert regs.tolist() == list(range(n))


def test_presets_and_arguments():
    assert Vim.arch_zoo['reg-large']['num_registers'] == 16
    for name in ('reg-tiny', 'reg-small', 'reg-base', 'reg-middle'):
        assert Vim.arch_zoo[name]['num_registers'] == 12
    model = Vim(arch='reg-tiny')
    assert model.num_registers == 12 and not model.with_cls_token
    assert model.cls_token.shape == (1, 12, 192)
    assert model.pos_embed_cls.shape == (1, 12, 192)
    assert model.pos_embed.shape == (1, 196, 192)  # patches only
    assert Vim(arch='reg-tiny', num_registers=0).with_cls_token
    with pytest.raises(ValueError, match='no class token'):
        Vim(arch=ARCH, num_registers=2, with_cls_token=True)
    with pytest.raises(ValueError, match='num_registers'):
        Vim(arch=ARCH, num_registers=-1)


def test_tokens_at_register_and_patch_positions():
    model = reg_vim()
    img = torch.randn(2, 3, 48, 80)  # 3x5 grid, chunk 15 // 4 = 3
    tokens, grid, reg_index = model.prepare_tokens(img)
    assert grid == (3, 5) and tokens.shape == (2, 18, 32)
    assert reg_index.tolist() == [3, 7, 11]
    regs = model.cls_token + model.pos_embed_cls
    assert torch.allclose(tokens[:, reg_index], regs.expand(2, -1, -1))
    patch_index, extra_index = model.token_layout(grid)
    assert extra_index.tolist() == [3, 7, 11]
    patches, _ = model.patch_embed(img)
    from mmssm.models.backbones.vim import resize_vim_pos_embed
    pos = resize_vim_pos_embed(model.pos_embed, (4, 4), (3, 5), False)
    assert torch.allclose(tokens[:, patch_index], patches + pos, atol=1e-6)


def test_dense_outputs_drop_registers_and_use_them():
    model = reg_vim(out_type='raw')
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        raw = model(img)[0]
        model.out_type = 'featmap'
        fmap = model(img)[0]
    assert raw.shape == (1, 16 + 3, 32) and fmap.shape == (1, 32, 4, 4)
    patch_index, reg_index = model.token_layout((4, 4))
    assert torch.equal(fmap.flatten(2).transpose(1, 2), raw[:, patch_index])
    # no register row survives in the map
    rows = fmap.flatten(2).transpose(1, 2)[0]
    for r in raw[0, reg_index]:
        assert not torch.isclose(rows, r).all(-1).any()
    model.out_type = 'cls_token'  # Mamba-Reg feature: registers concatenated
    with torch.no_grad():
        feat = model(img)[0]
    assert torch.equal(feat, raw[:, reg_index].flatten(1))
    model.out_type = 'featmap'
    with torch.no_grad():
        model.cls_token.add_(1.0)
        changed = model(img)[0]
    assert not torch.allclose(changed, fmap, atol=1e-4)


def test_slws_shuffles_registers_with_patches():
    model = reg_vim().train()  # 2 layers: layer 0 never, layer 1 always
    img = torch.randn(1, 3, 64, 64)
    seen = {}
    model.layers[1].register_forward_pre_hook(
        lambda m, args: seen.__setitem__('in', args[0].detach().clone()))
    model(img)
    plain = seen['in']
    hook = SLWSHook(prob=1.0, seed=0)
    hook.attach(model)
    # re-register the capture after SLWS so it sees the shuffled input
    model.layers[1].register_forward_pre_hook(
        lambda m, args: seen.__setitem__('in', args[0].detach().clone()))
    assert hook.draw().tolist() == [False, True]
    model(img)
    (key, (perm, _)), = hook._perms.items()
    assert key[1] == 16 + 3  # the whole sequence, registers included
    assert torch.equal(seen['in'], plain[:, perm])
    hook.detach()


def _mamba_reg_state_dict(model):
    """The layout of a wangf3014/Mamba-Reg checkpoint (`model` entry)."""
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    n, dims = model.num_registers, model.embed_dims
    sd['neck.weight'] = torch.randn(dims // 2, dims)  # cls_reduce 2
    sd['norm_neck.weight'] = torch.ones(n * dims // 2)
    sd['head.weight'] = torch.randn(10, n * dims // 2)
    sd['head.bias'] = torch.zeros(10)
    return sd


def test_mamba_reg_checkpoint_round_trip(tmp_path):
    src = reg_vim()
    with torch.no_grad():
        for p in (src.cls_token, src.pos_embed_cls, src.pos_embed):
            p.normal_()
    sd = _mamba_reg_state_dict(src)
    assert sd['cls_token'].shape == (1, 3, 32)
    assert sd['pos_embed'].shape == (1, 16, 32)
    ckpt = osp.join(tmp_path, 'mambar.pth')
    torch.save({'model': sd}, ckpt)

    # converter: backbone keys complete, classifier parts under head.
    converted = convert_vim(sd)
    assert converted['head.neck.weight'].shape == (16, 32)
    assert 'head.norm_neck.weight' in converted
    assert 'head.fc.weight' in converted
    backbone_sd = {
        k[len('backbone.'):]: v
        for k, v in converted.items() if k.startswith('backbone.')
    }
    dst = reg_vim()
    torch.manual_seed(1)
    dst._vim_init()
    result = dst.load_state_dict(backbone_sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys

    # init_cfg on the official file; same features as the source
    loaded = reg_vim(init_cfg=dict(type='Pretrained', checkpoint=ckpt))
    loaded.init_weights()
    img = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        assert torch.allclose(loaded(img)[0], src(img)[0], atol=1e-5)

    # the CLI converter output loads through init_cfg as well
    from tools.model_converters.vim2mmssm import main
    out = osp.join(tmp_path, 'converted.pth')
    main([ckpt, out])
    again = reg_vim(init_cfg=dict(
        type='Pretrained', checkpoint=out, prefix='backbone.'))
    again.init_weights()
    with torch.no_grad():
        assert torch.allclose(again(img)[0], src(img)[0], atol=1e-5)

    # --no-head: the same file without the classifier keys (head.fc, the
    # Mamba-Reg neck), every other key in the same order
    bare_path = osp.join(tmp_path, 'no_head.pth')
    main([ckpt, bare_path, '--no-head'])
    full = torch.load(out, weights_only=True)['state_dict']
    bare = torch.load(bare_path, weights_only=True)['state_dict']
    assert any(k.startswith('head.fc.') for k in full)
    assert any(k.startswith('head.neck') for k in full)
    assert list(bare) == [k for k in full if not k.startswith('head.')]


def test_mamba_reg_checkpoint_resized_to_another_grid(tmp_path):
    src = reg_vim()
    ckpt = osp.join(tmp_path, 'mambar.pth')
    torch.save({'model': _mamba_reg_state_dict(src)}, ckpt)
    big = reg_vim(img_size=96, init_cfg=dict(type='Pretrained',
                                             checkpoint=ckpt))
    big.init_weights()
    assert big.pos_embed.shape == (1, 36, 32)
    assert torch.equal(big.cls_token, src.cls_token)
    # resized with the patch-only layout: a 4x4 -> 6x6 bicubic image resize
    from mmssm.models.backbones.vim import resize_vim_pos_embed
    assert torch.allclose(
        big.pos_embed,
        resize_vim_pos_embed(src.pos_embed, (4, 4), (6, 6), False))


def test_checkpoint_mismatches_raise(tmp_path):
    sd = _mamba_reg_state_dict(reg_vim())
    with pytest.raises(KeyError, match='num_registers'):
        Vim(arch=ARCH, img_size=64).load_state_dict(
            {k: v for k, v in sd.items() if not k.startswith(('neck', 'head',
                                                               'norm_neck'))})
    with pytest.raises(ValueError, match='3 registers, this Vim 5'):
        reg_vim(num_registers=5).load_state_dict(sd, strict=False)
    plain = Vim(arch=ARCH, img_size=64).state_dict()
    with pytest.raises(KeyError, match='pos_embed_cls is missing'):
        reg_vim().load_state_dict(plain, strict=False)
