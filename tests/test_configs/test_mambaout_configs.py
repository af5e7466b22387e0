"""configs/mambaout: every config loads, builds, and matches the paper's
parameter counts; demo data configs agree with the generator's metainfo."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config

import mmssm  # noqa: F401
from config_helpers import CONFIG_DIR, build_model, num_params  # noqa: I

CFG_DIR = osp.join(CONFIG_DIR, 'mambaout')


def _params(model):
    return num_params(model) / 1e6


def test_every_config_has_one_custom_imports():
    files = sorted(glob.glob(osp.join(CFG_DIR, '*.py')))
    assert len(files) >= 13
    for f in files:
        text = open(f).read()
        # set once per leaf: in the file itself or in the sibling it extends
        assert text.count('custom_imports') == (0 if "_base_ = './" in text
                                                else 1), f
        cfg = Config.fromfile(f)
        assert 'mmssm' in cfg.custom_imports['imports']
        assert cfg.default_scope in ('mmdet', 'mmseg', 'mmpretrain')


@pytest.mark.parametrize('arch,paper', [('femto', 7.3), ('tiny', 26.5),
                                        ('small', 48.5), ('base', 84.8)])
def test_imagenet_classifier_params_match_paper(arch, paper):
    cfg = Config.fromfile(osp.join(CFG_DIR, f'mambaout-{arch}_32xb128_in1k.py'))
    assert cfg.optim_wrapper.optimizer.lr == 4e-3
    model = build_model(cfg)
    assert abs(_params(model) - paper) / paper < 0.01


def test_imagenet_classifier_forward_loss():
    cfg = Config.fromfile(osp.join(CFG_DIR, 'mambaout-femto_32xb128_in1k.py'))
    cfg.model.train_cfg = None
    model = build_model(cfg)
    from mmpretrain.structures import DataSample
    x = torch.randn(2, 3, 64, 64)
    samples = [DataSample().set_gt_label(i) for i in (3, 7)]
    losses = model(x, samples, mode='loss')
    assert torch.isfinite(losses['loss'])
    logits = model(x, mode='tensor')
    assert logits.shape == (2, 1000)


@pytest.mark.parametrize('name,paper', [
    ('mask-rcnn_mambaout-tiny_fpn_1x_coco.py', 43.0),
    ('upernet_mambaout-tiny_4xb4-160k_ade20k-512x512.py', 54.0),
])
def test_dense_model_params_match_paper(name, paper):
    cfg = Config.fromfile(osp.join(CFG_DIR, name))
    assert cfg.model.backbone.init_cfg.checkpoint.startswith('checkpoints/')
    model = build_model(cfg)
    # the paper rounds to whole millions
    assert abs(_params(model) - paper) < 0.5


def test_demo_data_configs_match_generator_metainfo():
    from mmssm.datasets import ADE_SHAPES_METAINFO, SHAPES_METAINFO
    det = Config.fromfile(
        osp.join(CFG_DIR, 'mask-rcnn_mambaout-femto_fpn_demo_coco-shapes.py'))
    seg = Config.fromfile(
        osp.join(CFG_DIR, 'upernet_mambaout-femto_demo_ade-shapes.py'))
    for cfg, meta in ((det, SHAPES_METAINFO), (seg, ADE_SHAPES_METAINFO)):
        for loader in ('train_dataloader', 'val_dataloader'):
            got = cfg[loader].dataset.metainfo
            assert tuple(got['classes']) == tuple(meta['classes'])
            assert [tuple(c) for c in got['palette']] == \
                [tuple(c) for c in meta['palette']]
    n_det = len(SHAPES_METAINFO['classes'])
    assert det.model.roi_head.bbox_head.num_classes == n_det
    assert det.model.roi_head.mask_head.num_classes == n_det
    n_seg = len(ADE_SHAPES_METAINFO['classes'])
    assert seg.model.decode_head.num_classes == n_seg
    assert seg.model.auxiliary_head.num_classes == n_seg


def test_demo_detector_schedule_is_the_documented_one():
    """The README's figures come from this recipe: 1400 iterations of batch 2
    whose cosine decay ends at the last iteration (a schedule ending earlier
    or later than ``max_iters`` would silently change the run), validation
    at the end, half of the sampled RoIs positive, 256x256 inputs for
    training and testing, a fixed seed."""
    det = Config.fromfile(
        osp.join(CFG_DIR, 'mask-rcnn_mambaout-femto_fpn_demo_coco-shapes.py'))
    assert det.train_cfg.max_iters == 1400
    assert det.train_dataloader.batch_size == 2
    assert det.auto_scale_lr.base_batch_size == 2
    assert det.randomness.seed == 0
    assert det.train_cfg.val_interval == det.train_cfg.max_iters
    warmup, cosine = det.param_scheduler
    assert warmup.end == cosine.begin
    assert cosine.type == 'CosineAnnealingLR'
    assert cosine.end == det.train_cfg.max_iters
    assert det.model.train_cfg.rcnn.sampler.pos_fraction == 0.5
    for loader in (det.train_dataloader, det.val_dataloader,
                   det.test_dataloader):
        resize, = [t for t in loader.dataset.pipeline if t.type == 'Resize']
        assert tuple(resize.scale) == (256, 256)
    # checkpoints land on the iteration tools/test.py is pointed at
    assert det.train_cfg.max_iters % det.default_hooks.checkpoint.interval == 0


def test_demo_detector_strides_match_its_pyramid():
    """The demo drops the stride-4 level and narrows the FPN: the maps must
    really have the strides that the anchors and both RoI extractors are
    told, and the width the heads expect, or RoIs would be pooled from the
    wrong places without any error."""
    det = Config.fromfile(
        osp.join(CFG_DIR, 'mask-rcnn_mambaout-femto_fpn_demo_coco-shapes.py'))
    strides = det.model.rpn_head.anchor_generator.strides
    assert det.model.roi_head.bbox_roi_extractor.featmap_strides == strides
    assert det.model.roi_head.mask_roi_extractor.featmap_strides == strides
    roi_head = det.model.roi_head
    assert (roi_head.bbox_roi_extractor.out_channels ==
            roi_head.bbox_head.in_channels ==
            roi_head.mask_roi_extractor.out_channels ==
            roi_head.mask_head.in_channels == det.model.rpn_head.in_channels
            == det.model.neck.out_channels)
    model = build_model(det).eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.zeros(1, 3, 256, 256))
    assert len(feats) == len(strides) == det.model.neck.num_outs
    width = det.model.neck.out_channels
    for feat, stride in zip(feats, strides):
        assert feat.shape[1:] == (width, 256 // stride, 256 // stride)
