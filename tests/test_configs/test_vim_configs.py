"""Vim configs: they load, follow the recipes, build models of the papers'
sizes, and the CPU demo detector/segmentor (with the SLWS hook) learn a fixed
batch."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

import mmssm  # noqa: F401
from config_helpers import build_model, config_paths, load  # noqa: I
from config_helpers import num_params as _count
from config_helpers import train_steps
from mmssm.engine.hooks import SLWSHook

CONFIGS = config_paths('vim')


def _cfg(name):
    return load('vim', name)


def _scope(path):
    name = osp.basename(path)
    if name.startswith(('mask-rcnn', 'cascade')):
        return 'mmdet'
    return 'mmseg' if name.startswith('upernet') else 'mmpretrain'


def test_every_config_loads_with_one_custom_imports():
    # 4 + 3 demo det (one pruned), 2 + 1 demo seg, 6 cls + 2 seed-002 cls
    # (SE, mbv2)
    assert len(CONFIGS) == 18
    for path in CONFIGS:
        with open(path) as f:
            assert f.read().count('custom_imports = dict(') == 1, path
        cfg = Config.fromfile(path)
        # detection configs also import mmssm.det (the mask TTA model)
        assert cfg.custom_imports['imports'][0] == 'mmssm'
        assert set(cfg.custom_imports['imports']) <= {'mmssm', 'mmssm.det'}
        assert cfg.custom_imports['allow_failed_imports'] is False
        assert cfg.model.backbone.type == 'Vim'
        assert cfg.optim_wrapper.constructor == \
            'SSMLayerDecayOptimWrapperConstructor'


def test_recipes():
    seg = _cfg('upernet_vim-tiny_plain-taps_8xb2-160k_ade20k-512x512.py')
    assert seg.optim_wrapper.optimizer.lr == 6e-5
    assert seg.optim_wrapper.optimizer.weight_decay == 0.01
    assert seg.param_scheduler[0].end == 1500
    assert seg.train_cfg.max_iters == 160000
    assert seg.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.92
    assert seg.model.backbone.out_indices == (5, 11, 17, 23)
    assert seg.model.test_cfg == dict(
        mode='slide', crop_size=(512, 512), stride=(341, 341))
    det = _cfg('cascade-mask-rcnn_vim-small_simple-fpn_lsj-100e_coco.py')
    assert det.optim_wrapper.optimizer == dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1)
    assert det.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.837
    assert det.model.neck.scale_factors == (4.0, 2.0, 1.0, 0.5)
    assert det.model.neck.num_outs == 5 and det.model.neck.in_channels == 384
    assert det.model.data_preprocessor.batch_augments[0].size == (1024, 1024)
    assert det.train_dataloader.batch_size * 16 == 64
    det1x = _cfg('mask-rcnn_vim-tiny_simple-fpn_1x_coco.py')
    assert det1x.train_cfg.max_epochs == 12
    for name, arch, prob in [
        ('shufflemamba-middle_slws_16xb128_in1k.py', 'middle', 0.5),
        ('shufflemamba-base_slws_16xb128_in1k.py', 'base', 0.5),
        ('shufflemamba-large_slws_8xb128_in1k.py', 'large', 0.6)
    ]:
        cfg = _cfg(name)
        assert cfg.model.backbone.arch == arch
        slws = [h for h in cfg.custom_hooks if h.type == 'SLWSHook']
        assert len(slws) == 1 and slws[0].prob == prob
    assert _cfg('vim-small_8xb64_in1k.py').model.backbone.drop_path_rate == \
        0.05


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_every_config_builds(path):
    model = build_model(Config.fromfile(path), _scope(path))
    assert type(model.backbone).__name__ == 'Vim'
    n = _count(model)
    name = osp.basename(path)
    paper = {
        'vim-tiny_8xb128_in1k.py': 7e6,
        'vim-small_8xb64_in1k.py': 26e6,
        'vim-base_8xb128_in1k.py': 98e6,
        'upernet_vim-small_plain-taps_8xb2-160k_ade20k-512x512.py': 46e6,
    }
    if name in paper:
        assert abs(n - paper[name]) / paper[name] < 0.03, n
    if name == 'upernet_vim-tiny_plain-taps_8xb2-160k_ade20k-512x512.py':
        # 12.3 M with the official head widths (the paper rounds to 13 M)
        assert abs(n - 13e6) / 13e6 < 0.06, n
    # seed 002 (issue #17): Vim-Ti's 7,148,008 parameters (1000-class head
    # included) + 24 SE blocks of 192 * 48 + 48 + 48 * 192 + 192 weights /
    # - the dense patch conv (147,648) + the MobileNetV2 stem (70,112)
    seed002 = {
        'vim-tiny_se_8xb128_in1k.py': (dict(se_ratio=4), 24 * 18672),
        'vim-tiny_mbv2_8xb128_in1k.py': (dict(patch_embed='mbv2'),
                                         70112 - 147648),
    }
    if name in seed002:
        options, delta = seed002[name]
        backbone = Config.fromfile(path).model.backbone
        assert {k: backbone[k] for k in options} == options
        assert n == 7148008 + delta, n
    if name.startswith('upernet'):
        optim = build_optim_wrapper(model, Config.fromfile(path).optim_wrapper)
        a_log = model.backbone.layers[0].mixer.A_b_log
        group = [g for g in optim.optimizer.param_groups
                 if any(p is a_log for p in g['params'])][0]
        assert group['weight_decay'] == 0.0
        rate = Config.fromfile(path).optim_wrapper.paramwise_cfg[
            'layer_decay_rate']
        depth = model.backbone.num_layers
        assert group['lr'] == pytest.approx(
            optim.optimizer.defaults['lr'] * rate**depth)


def test_taps_fpn_demo_pyramid():
    """The taps-FPN demo chains its necks (an nn.Sequential): layers 1, 3, 4
    and 5 of the stride-8 Vim become five 128-channel maps at strides 4-64."""
    torch.manual_seed(0)
    model = build_model(
        _cfg('cascade-mask-rcnn_vim-demo_taps-fpn_demo_coco-shapes.py'),
        'mmdet')
    assert [type(m).__name__ for m in model.neck] == [
        'PlainMultiLevelTaps', 'FPN'
    ]
    # 320 px, 16x16 patches at stride 8 -> (320 - 16) / 8 + 1 = 39 tokens
    feats = model.extract_feat(torch.randn(1, 3, 320, 320))
    assert [tuple(f.shape) for f in feats] == [(1, 128, s, s)
                                               for s in (78, 39, 19, 9, 5)]


@pytest.mark.parametrize(
    'name', [
        'cascade-mask-rcnn_vim-demo_simple-fpn_demo_coco-shapes.py',
        'cascade-mask-rcnn_vim-demo_taps-fpn_demo_coco-shapes.py'
    ])
def test_demo_detector_learns_a_fixed_batch_with_slws(name):
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(0)
    model = build_model(_cfg(name), 'mmdet')
    model.init_weights()
    data = demo_mm_inputs(
        batch_size=2, image_shapes=[(3, 64, 64)] * 2, num_items=[3, 3],
        num_classes=5, with_mask=True)
    hook = SLWSHook(prob=1.0, seed=0)
    losses = train_steps(model, data, 5, hook)
    assert hook.fire_counts.sum() > 0  # shuffles happened in training
    assert all(torch.isfinite(torch.tensor(losses)))
    # the loss falls by 36 % (simple FPN, seed 0: 5.71 -> 3.65; seeds 1
    # and 2: 32 % and 30 %) and by 39 % (taps FPN, seed 0: 5.44 -> 3.35;
    # seeds 1 and 2: 46 % and 45 %) after these 5 steps (2026-12-04); a fall
    # of 15 % is required
    assert losses[-1] < 0.85 * losses[0], losses


def test_demo_segmentor_learns_a_fixed_batch_with_slws():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    torch.manual_seed(0)
    cfg = _cfg('upernet_vim-demo_plain-taps_demo_ade-shapes.py')
    cfg.model.data_preprocessor.size = (64, 64)
    model = build_model(cfg, 'mmseg')
    model.init_weights()
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8))
        label = torch.zeros(1, 64, 64, dtype=torch.long)
        label[:, 16:48, 8:40] = 3
        sample = SegDataSample(gt_sem_seg=PixelData(data=label))
        sample.set_metainfo(dict(img_shape=(64, 64), ori_shape=(64, 64),
                                 pad_shape=(64, 64)))
        samples.append(sample)
    hook = SLWSHook(prob=0.5, seed=0)
    losses = train_steps(model, dict(inputs=inputs, data_samples=samples), 6,
                         hook)
    assert losses[-1] < 0.8 * losses[0], losses
