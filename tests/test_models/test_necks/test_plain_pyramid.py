import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmssm.models.layers import LayerNorm2d
from mmssm.models.necks import PlainMultiLevelTaps, SimpleFeaturePyramid


def _ln2d(x, norm):
    return F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1], ), norm.weight,
                        norm.bias, norm.eps).permute(0, 3, 1, 2)


def test_simple_feature_pyramid_shapes_and_math():
    torch.manual_seed(0)
    neck = SimpleFeaturePyramid(32, out_channels=16)
    neck.init_weights()
    x = torch.randn(2, 32, 6, 8)
    outs = neck([torch.randn(2, 32, 6, 8), x])  # uses the last map
    assert [o.shape for o in outs] == [(2, 16, 24, 32), (2, 16, 12, 16),
                                       (2, 16, 6, 8), (2, 16, 3, 4),
                                       (2, 16, 2, 2)]
    # extra level: max_pool2d(kernel 1, stride 2) = every other pixel
    torch.testing.assert_close(outs[4], outs[3][..., ::2, ::2])
    # scale 0.5: maxpool -> conv1x1 -> LN -> conv3x3 -> LN, widths 32 -> 16
    s = neck.stages[3]
    manual = F.max_pool2d(x, 2)
    manual = _ln2d(F.conv2d(manual, s[1].weight), s[2])
    manual = _ln2d(F.conv2d(manual, s[3].weight, padding=1), s[4])
    torch.testing.assert_close(outs[3], manual)
    # scale 4: deconv 32->16, LN, GELU, deconv 16->8, then the convs
    s = neck.stages[0]
    assert isinstance(s[0][1], LayerNorm2d) and isinstance(s[0][2], nn.GELU)
    assert (s[0][0].out_channels, s[0][3].out_channels) == (16, 8)
    assert s[1].in_channels == 8 and neck.stages[1][1].in_channels == 16
    assert all(m.bias is None for m in neck.modules()
               if isinstance(m, nn.Conv2d))


def test_simple_feature_pyramid_param_count():
    """ViTDet neck on a 192-wide backbone, counted by hand."""
    neck = SimpleFeaturePyramid(192)
    c, o = 192, 256
    deconvs = (c * c // 2 * 4 + c // 2) + 2 * c // 2 + (
        c // 2 * c // 4 * 4 + c // 4) + (c * c // 2 * 4 + c // 2)
    convs = sum(w * o + 2 * o + o * o * 9 + 2 * o
                for w in (c // 4, c // 2, c, c))
    assert sum(p.numel() for p in neck.parameters()) == deconvs + convs
    with pytest.raises(ValueError, match='num_outs'):
        SimpleFeaturePyramid(192, num_outs=3)
    with pytest.raises(ValueError, match=r'\(B, 192, H, W\)'):
        neck(torch.randn(1, 96, 4, 4))


def test_plain_multi_level_taps():
    torch.manual_seed(0)
    neck = PlainMultiLevelTaps(8, norm_cfg=dict(type='BN'))
    maps = [torch.randn(2, 8, 5, 6) for _ in range(4)]
    outs = neck(maps)
    assert [o.shape for o in outs] == [(2, 8, 20, 24), (2, 8, 10, 12),
                                       (2, 8, 5, 6), (2, 8, 2, 3)]
    assert outs[2] is maps[2]
    torch.testing.assert_close(outs[3], F.max_pool2d(maps[3], 2))
    assert isinstance(neck.ops[0][1], nn.BatchNorm2d)
    assert isinstance(neck.ops[0][2], nn.GELU)
    deconv = neck.ops[1]
    torch.testing.assert_close(
        outs[1], F.conv_transpose2d(maps[1], deconv.weight, deconv.bias,
                                    stride=2))
    # stride-8 backbone
    neck8 = PlainMultiLevelTaps(8, rescales=(2, 1, 0.5, 0.25),
                                norm_cfg=dict(type='BN'))
    assert [o.shape[-1] for o in neck8(maps)] == [12, 6, 3, 1]
    with pytest.raises(ValueError, match='at least 4'):
        neck(maps[:3])
    with pytest.raises(ValueError, match='scale factors'):
        PlainMultiLevelTaps(8, rescales=(3, ))
