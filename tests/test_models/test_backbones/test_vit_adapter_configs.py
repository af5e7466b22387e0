"""configs/vim_adapter: they load, follow the reference recipes, build
models whose adapter and heads match ViT-Adapter's published sizes, and the
CPU demo detector (Vim-Reg + adapter) learns a fixed batch."""
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

import mmssm  # noqa: F401
# tests/ is on sys.path (tests/conftest.py); the config tests' helpers
from test_configs.config_helpers import (build_model, config_paths,  # noqa: I
                                         load, train_steps)
from test_configs.config_helpers import num_params as _count

CONFIGS = config_paths('vim_adapter')

# Backbones without classifier head, for comparing with ViT-Adapter's
# published totals (czczup/ViT-Adapter detection/ and segmentation/ READMEs:
# Mask R-CNN ViT-Adapter-S 48 M, -B 120 M; UperNet -S 58 M, -B 134 M).
DEIT_S, DEIT_B = 21.67e6, 85.80e6


def _cfg(name):
    return load('vim_adapter', name)


def test_every_config_loads_with_one_custom_imports():
    assert len(CONFIGS) == 10  # 4 det + 4 seg + 2 demos
    for path in CONFIGS:
        with open(path) as f:
            assert f.read().count('custom_imports = dict(') == 1, path
        cfg = Config.fromfile(path)
        assert cfg.custom_imports['imports'][0] == 'mmssm'
        assert cfg.custom_imports['allow_failed_imports'] is False
        backbone = cfg.model.backbone
        assert backbone.type == 'PlainAdapter'
        assert backbone.backbone.type == 'Vim'
        if 'demo' not in path:
            assert backbone.backbone.arch.startswith('reg-')
            assert backbone.backbone.init_cfg.type == 'Pretrained'


def test_recipes():
    det = _cfg('mask-rcnn_vim-reg-base-adapter_fpn_1x_coco.py')
    assert det.optim_wrapper.optimizer == dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05)
    assert det.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.9
    assert det.train_cfg.max_epochs == 12
    assert det.param_scheduler[1].milestones == [8, 11]
    assert det.model.backbone.deform_num_heads == 12
    assert det.model.backbone.deform_ratio == 0.5
    large = _cfg('mask-rcnn_vim-reg-large-adapter_fpn_1x_coco.py')
    assert large.model.backbone.interaction_indexes[-1] == [36, 47]
    assert large.model.backbone.deform_num_heads == 16
    assert large.model.neck.in_channels == [1024] * 4
    small = _cfg('mask-rcnn_vim-reg-small-adapter_fpn_1x_coco.py')
    assert small.model.backbone.deform_ratio == 1.0
    seg = _cfg('upernet_vim-reg-base-adapter_8xb2-160k_ade20k-512x512.py')
    assert seg.optim_wrapper.optimizer.lr == 6e-5
    assert seg.optim_wrapper.optimizer.weight_decay == 0.01
    assert seg.train_cfg.max_iters == 160000
    assert seg.param_scheduler[0].end == 1500
    assert seg.model.test_cfg.stride == (341, 341)
    seg_l = _cfg('upernet_vim-reg-large-adapter_8xb2-160k_ade20k-512x512.py')
    assert seg_l.optim_wrapper.optimizer.lr == 3e-5
    assert seg_l.model.decode_head.in_channels == [1024] * 4


@pytest.mark.parametrize('name,scope,deit,published', [
    ('mask-rcnn_vim-reg-small-adapter_fpn_1x_coco.py', 'mmdet', DEIT_S, 48e6),
    ('upernet_vim-reg-small-adapter_8xb2-160k_ade20k-512x512.py', 'mmseg',
     DEIT_S, 58e6),
    ('mask-rcnn_vim-reg-base-adapter_fpn_1x_coco.py', 'mmdet', DEIT_B, 120e6),
])
def test_adapter_and_heads_match_vit_adapter(name, scope, deit, published):
    model = build_model(_cfg(name), scope)
    vim = _count(model.backbone.backbone)
    # swapping the Vim-Reg backbone for DeiT gives ViT-Adapter's total
    assert abs(_count(model) - vim + deit - published) / published < 0.01
    assert model.backbone.backbone.num_registers == 12


def test_layer_decay_groups_of_the_detector():
    cfg = _cfg('mask-rcnn_vim-reg-small-adapter_fpn_1x_coco.py')
    model = build_model(cfg, 'mmdet')
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    scales = {}
    for group in optim.optimizer.param_groups:
        for name in group['param_names']:
            scales[name] = (group['lr_scale'], group['weight_decay'])
    top = scales['backbone.spm.fc1.weight']
    assert top == (1.0, 0.05)
    assert scales['backbone.level_embed'] == (1.0, 0.0)
    assert scales['backbone.backbone.cls_token'][1] == 0.0
    assert scales['backbone.backbone.pos_embed_cls'] == (0.9**25, 0.0)
    assert scales['backbone.backbone.layers.23.mixer.in_proj.weight'] == (
        0.9, 0.05)


def test_demo_detector_learns_a_fixed_batch():
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(0)
    model = build_model(
        _cfg('mask-rcnn_vim-reg-adapter-demo_fpn_demo_coco-shapes.py'),
        'mmdet')
    model.init_weights()
    assert model.backbone.backbone.num_registers == 4
    data = demo_mm_inputs(
        batch_size=2, image_shapes=[(3, 64, 64)] * 2, num_items=[3, 3],
        num_classes=5, with_mask=True)
    losses = train_steps(model, data, 4)
    assert all(torch.isfinite(torch.tensor(losses))), losses
    # the loss falls by 34 % after these 4 steps (seed 0: 4.74 -> 3.13;
    # seeds 1 and 2: 35 % and 55 %, 2026-12-04); a fall of 15 % is required
    assert losses[-1] < 0.85 * losses[0], losses


def test_demo_segmentor_builds_and_runs():
    cfg = _cfg('upernet_vim-reg-adapter-demo_demo_ade-shapes.py')
    model = build_model(cfg, 'mmseg').eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 64, 64), mode='tensor')
    assert logits.shape == (1, 7, 16, 16)  # 7 classes at stride 4
