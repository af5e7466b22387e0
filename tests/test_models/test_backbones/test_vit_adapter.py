"""ViT-Adapter around plain mmssm backbones: the residual-free deformable
attention against a direct computation, output sizes for odd inputs, the
zero-initialised injection, registers, interaction indexes, lr-decay depths."""
import math

import pytest
import torch

import mmssm  # noqa: F401
from mmssm.engine.hooks import SLWSHook
from mmssm.models.backbones import PlainAdapter, Vim
from mmssm.models.backbones.vit_adapter import even_interaction_indexes
from mmssm.models.layers import AdapterDeformAttention
from mmssm.models.layers.vit_adapter import (grid_reference_points,
                                             level_start_index)

DIMS = 32


def tiny_adapter(num_registers=2, **kwargs):
    torch.manual_seed(0)
    cfg = dict(
        backbone=dict(
            type='Vim',
            arch=dict(embed_dims=DIMS, num_layers=4, d_state=4),
            img_size=64,
            num_registers=num_registers),
        conv_inplane=8,
        deform_num_heads=4,
        norm_cfg=dict(type='BN'))
    cfg.update(kwargs)
    return PlainAdapter(**cfg).eval()


def _bilinear(img, x, y):
    """Sample ``img`` (C, H, W) at normalised (x, y), zero outside, pixel
    centres at (i + 0.5) / size (align_corners=False)."""
    channels, height, width = img.shape
    px, py = x * width - 0.5, y * height - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    fx, fy = px - x0, py - y0
    out = torch.zeros(channels, dtype=torch.float64)
    for xx, yy, weight in ((x0, y0, (1 - fx) * (1 - fy)),
                           (x0 + 1, y0, fx * (1 - fy)),
                           (x0, y0 + 1, (1 - fx) * fy),
                           (x0 + 1, y0 + 1, fx * fy)):
        if 0 <= xx < width and 0 <= yy < height:
            out += weight * img[:, yy, xx].double()
    return out


def test_deform_attention_cpu_matches_direct_computation():
    torch.manual_seed(0)
    heads, levels, points, dims = 2, 2, 3, 8
    attn = AdapterDeformAttention(dims, heads, levels, points, value_ratio=0.5)
    with torch.no_grad():  # random offsets/weights: samples off the grid too
        for lin in (attn.sampling_offsets, attn.attention_weights):
            lin.weight.normal_(0, 1.0)
            lin.bias.normal_(0, 1.0)
        attn.output_proj.bias.normal_()
    shapes = torch.tensor([[3, 4], [2, 2]])
    start = level_start_index(shapes)
    assert start.tolist() == [0, 12]
    feat = torch.randn(2, 16, dims)
    query = torch.randn(2, 5, dims)
    ref = torch.rand(2, 5, 2)
    out = attn(query, ref, feat, shapes, start)

    with torch.no_grad():
        value = attn.value_proj(feat)  # (B, 16, 4): 2 heads x 2 channels
        offsets = attn.sampling_offsets(query).view(2, 5, heads, levels,
                                                    points, 2)
        logits = attn.attention_weights(query).view(2, 5, heads,
                                                    levels * points)
    expected = torch.zeros(2, 5, 4, dtype=torch.float64)
    for b in range(2):
        for q in range(5):
            for h in range(heads):
                weights = logits[b, q, h].double().softmax(-1)
                for lvl, (hh, ww) in enumerate(shapes.tolist()):
                    begin = int(start[lvl])
                    img = value[b, begin:begin + hh * ww,
                                2 * h:2 * h + 2].T.reshape(2, hh, ww)
                    for p in range(points):
                        x = ref[b, q, 0] + offsets[b, q, h, lvl, p, 0] / ww
                        y = ref[b, q, 1] + offsets[b, q, h, lvl, p, 1] / hh
                        expected[b, q, 2 * h:2 * h + 2] += weights[
                            lvl * points + p] * _bilinear(
                                img, float(x), float(y))
    expected = attn.output_proj(expected.float())
    assert torch.allclose(out, expected, atol=1e-5)
    # no residual inside: a zero output projection gives exactly zero
    with torch.no_grad():
        attn.output_proj.weight.zero_()
        attn.output_proj.bias.zero_()
    assert torch.equal(attn(query, ref, feat, shapes, start),
                       torch.zeros_like(query))


def test_deform_attention_errors():
    with pytest.raises(ValueError, match='not divisible by num_heads'):
        AdapterDeformAttention(30, num_heads=4)
    attn = AdapterDeformAttention(8, 2, num_levels=1)
    with pytest.raises(ValueError, match='spatial shapes'):
        attn(torch.randn(1, 2, 8), torch.rand(1, 2, 2), torch.randn(1, 5, 8),
             torch.tensor([[2, 2]]), torch.tensor([0]))


def test_reference_points_are_cell_centres():
    ref = grid_reference_points([(2, 4), (1, 1)])
    assert ref.shape == (1, 9, 2)
    assert ref[0, 0].tolist() == [0.125, 0.25]
    assert ref[0, 7].tolist() == [0.875, 0.75]
    assert ref[0, 8].tolist() == [0.5, 0.5]


@pytest.mark.parametrize('size', [(70, 45), (33, 97)])
def test_output_sizes_for_odd_inputs(size):
    model = tiny_adapter()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    assert len(outs) == 4
    for out, stride in zip(outs, (4, 8, 16, 32)):
        assert out.shape == (1, DIMS, math.ceil(size[0] / stride),
                             math.ceil(size[1] / stride))
        assert torch.isfinite(out).all()
    model.out_indices = (1, 3)
    with torch.no_grad():
        assert [o.shape[-1] for o in model(torch.randn(1, 3, *size))] == [
            math.ceil(size[1] / 8), math.ceil(size[1] / 32)
        ]


def test_padding_does_not_leak_into_crop_stride():
    # a 64x64 image and its 50x50 crop padded to 64 agree on no pixel but
    # give maps of their own ceil sizes: 13 at stride 4 for 50
    model = tiny_adapter()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 50, 50))[0].shape[-1] == 13


def _capture_norm_f(model):
    seen = {}
    model.backbone.norm_f.register_forward_hook(
        lambda m, a, out: seen.__setitem__('tokens', out.detach()))
    return seen


@pytest.mark.parametrize('num_registers', [0, 3])
def test_zero_gamma_leaves_backbone_unchanged(num_registers):
    model = tiny_adapter(num_registers=num_registers)
    img = torch.randn(1, 3, 64, 96)
    seen = _capture_norm_f(model)
    with torch.no_grad():
        model(img)
        plain = model.backbone(img)[0]  # Vim: norm_f(last) without adapter
    patch_index, extra = model.backbone.token_layout((4, 6))
    assert len(extra) == (num_registers if num_registers else 1)
    tokens = seen['tokens'][:, patch_index]
    assert torch.allclose(
        tokens.transpose(1, 2).reshape(1, DIMS, 4, 6), plain, atol=1e-5)
    # a non-zero gamma injects the spatial prior into the backbone
    with torch.no_grad():
        for block in model.interactions:
            block.injector.gamma.fill_(1.0)
        model(img)
    tokens = seen['tokens'][:, patch_index]
    assert not torch.allclose(
        tokens.transpose(1, 2).reshape(1, DIMS, 4, 6), plain, atol=1e-3)


def test_registers_stay_in_sequence_and_are_used():
    model = tiny_adapter(num_registers=3)
    img = torch.randn(1, 3, 64, 64)
    lengths = []
    model.backbone.layers[0].register_forward_pre_hook(
        lambda m, a: lengths.append(a[0].shape[1]))
    with torch.no_grad():
        before = model(img)
        model.backbone.cls_token.add_(1.0)
        after = model(img)
    assert lengths == [16 + 3, 16 + 3]
    assert not torch.allclose(before[2], after[2], atol=1e-4)


def test_adapter_init_and_structure():
    model = tiny_adapter()
    assert all((b.injector.gamma == 0).all() for b in model.interactions)
    assert [b.extra_extractors is not None for b in model.interactions] == [
        False, False, False, True
    ]
    assert model.interaction_indexes == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert model.level_embed.shape == (3, DIMS)
    ffn = model.interactions[0].extractor.ffn
    assert ffn.fc1.out_features == DIMS // 4  # cffn_ratio 0.25
    assert model.plain_backbone is model.backbone
    assert SLWSHook.find_layers(model) is model.backbone.layers
    assert 'layers.0.norm.weight' not in dict(model.named_parameters())


def test_interaction_indexes():
    assert even_interaction_indexes(24) == [[0, 5], [6, 11], [12, 17],
                                            [18, 23]]
    assert even_interaction_indexes(32)[-1] == [24, 31]
    assert even_interaction_indexes(48)[1] == [12, 23]
    with pytest.raises(ValueError, match='equal'):
        even_interaction_indexes(10)
    with pytest.raises(ValueError, match='contiguous'):
        tiny_adapter(interaction_indexes=[[0, 1], [3, 3]])
    with pytest.raises(ValueError, match='last layer'):
        tiny_adapter(interaction_indexes=[[0, 1], [2, 2]])
    with pytest.raises(ValueError, match='needs 4 interactions'):
        tiny_adapter(interaction_indexes=[[0, 1], [2, 3]])
    model = tiny_adapter(
        interaction_indexes=[[0, 1], [2, 3]], backbone_features='last')
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32))[0].shape == (1, DIMS, 8, 8)


def test_backbone_requirements():
    with pytest.raises(ValueError, match='16x16 non-overlapping'):
        PlainAdapter(
            Vim(arch=dict(embed_dims=16, num_layers=4), stride=8),
            deform_num_heads=2)
    with pytest.raises(TypeError, match='plain mmssm sequence backbone'):
        PlainAdapter(torch.nn.Conv2d(3, 8, 3))


def test_layer_depth_delegates_to_backbone():
    model = tiny_adapter()
    assert model.get_layer_depth('backbone.backbone.layers.2.norm.weight',
                                 'backbone.') == (3, 6)
    assert model.get_layer_depth('backbone.backbone.pos_embed_cls',
                                 'backbone.') == (0, 6)
    assert model.get_layer_depth('backbone.spm.fc1.weight',
                                 'backbone.') == (5, 6)
    assert model.get_layer_depth('backbone.level_embed',
                                 'backbone.') == (5, 6)


def test_with_cp_gives_same_gradients():
    img = torch.randn(2, 3, 64, 64)  # BN in training: > 1 value per channel
    grads = []
    for with_cp in (False, True):
        model = tiny_adapter(with_cp=with_cp).train()
        for block in model.interactions:
            block.injector.gamma.data.fill_(0.5)
        sum(o.sum() for o in model(img)).backward()
        grads.append(model.interactions[0].injector.attn.value_proj.weight
                     .grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-5)
