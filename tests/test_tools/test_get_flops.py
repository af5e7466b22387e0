"""tools/analysis_tools/get_flops.py: known layers against hand math, the
selective scan's PythonOp against its documented formula (alone, grouped with
scan orders, and inside tiny GroupMamba and Vim backbones), mmcv RoIAlign, and
the command line."""
import json

import pytest
import torch
import torch.nn as nn
from tiny_demo_configs import load_tool

from mmssm.ops import selective_scan

gf = load_tool('get_flops')


def _scan_flops(res):
    return sum(v for k, v in res['by_operator'].items() if 'Scan' in k)


def test_conv_and_linear_against_hand_math():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(),
        nn.Linear(8 * 10 * 12, 5))
    res = gf.get_flops(model, (10, 12))
    conv = 8 * 10 * 12 * (3 * 3 * 3)  # outputs x (k*k*c_in) MACs
    linear = 8 * 10 * 12 * 5
    assert res['flops'] == conv + linear
    assert res['by_module']['0'] == conv and res['by_module']['2'] == linear
    assert res['params'] == 8 * 27 + 8 + 960 * 5 + 5


class _Scan(nn.Module):

    def __init__(self, dim, d_state, length, groups=None, order=None,
                 grid=None):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        bc = (2, d_state, length) if groups is None else (2, groups, d_state,
                                                          length)
        self.register_buffer('A', -torch.rand(dim, d_state, generator=g))
        self.register_buffer('B', torch.randn(*bc, generator=g))
        self.register_buffer('C', torch.randn(*bc, generator=g))
        self.register_buffer('D', torch.randn(dim, generator=g))
        self.order, self.grid = order, grid

    def forward(self, u):
        return selective_scan(u, u.sigmoid(), self.A, self.B, self.C, self.D,
                              z=u, delta_softplus=True, order=self.order,
                              grid=self.grid)


def test_selective_scan_formula():
    # B=2, D=6, L=5, N=3: 2 * 6 * 5 * (4 * 3 + 1)
    res = gf.count_flops(_Scan(6, 3, 5), (torch.randn(2, 6, 5), ))
    assert _scan_flops(res) == 2 * 6 * 5 * 13 == 780
    assert res['flops'] == 780  # everything else is elementwise
    assert gf.selective_scan_flops(2, 6, 5, 3) == 780
    # grouped B/C, GroupMamba's four orders on a 2x3 grid, d_state 1
    scan = _Scan(8, 1, 6, groups=4,
                 order=['row', 'col', 'row_reverse', 'col_reverse'],
                 grid=(2, 3))
    res = gf.count_flops(scan, (torch.randn(2, 8, 6), ))
    assert _scan_flops(res) == 2 * 8 * 6 * 5


def test_scan_counted_inside_groupmamba_and_vim():
    from mmssm.models.backbones import GroupMamba, Vim
    dims = [16, 32, 48, 64]
    gm = GroupMamba(
        arch=dict(embed_dims=dims, depths=[1, 1, 1, 1],
                  mlp_ratios=[2, 2, 2, 2], stem_channels=8))
    res = gf.get_flops(gm, (64, 64))
    # one block per stage; d_inner = C (expand 1), N = 1, L = (64 / s)^2
    want = sum(c * (64 // s)**2 * 5 for c, s in zip(dims, (4, 8, 16, 32)))
    assert _scan_flops(res) == want
    assert res['unsupported'] == {} or not any(
        'Scan' in k for k in res['unsupported'])

    vim = Vim(arch=dict(embed_dims=32, num_layers=2, d_state=4), img_size=32)
    res = gf.get_flops(vim, (32, 32))
    # per layer: both directions in one call, 2 * d_inner channels,
    # L = 4 patches + class token
    d_inner = 64
    assert _scan_flops(res) == 2 * (2 * d_inner * 5 * (4 * 4 + 1))


def test_roi_align_handle():
    from mmcv.ops import RoIAlign

    class _Roi(nn.Module):

        def __init__(self):
            super().__init__()
            self.roi = RoIAlign((7, 7), spatial_scale=0.5, sampling_ratio=2)

        def forward(self, x):
            rois = torch.tensor([[0., 1., 1., 9., 9.], [0., 2., 2., 6., 8.]])
            return self.roi(x, rois)

    res = gf.count_flops(_Roi(), (torch.randn(1, 4, 8, 8), ))
    # 2 RoIs x 4 channels x 7 x 7 bins x (2 x 2 samples) x 4 MACs
    assert res['flops'] == 2 * 4 * 49 * 4 * 4


def test_cli_backbone_json(tmp_path, capsys):
    out = tmp_path / 'flops.json'
    res = gf.main(['--backbone', 'MambaOut', '--arch', 'femto', '--shape',
                   '64', '64', '--max-depth', '1', '--json', str(out)])
    text = capsys.readouterr().out
    assert f'Flops (multiply-adds): {res["flops"] / 1e9:.3f} G' in text
    assert f'Params: {res["params"] / 1e6:.3f} M' in text
    saved = json.loads(out.read_text())
    assert saved['flops'] == res['flops'] > 0
    assert saved['shape'] == [64, 64]
    with pytest.raises(SystemExit):
        gf.parse_args(['--shape', '64', '64'])  # neither CONFIG nor backbone
