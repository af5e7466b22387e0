"""End to end: a tiny demo Mask R-CNN and UperNet trained for 2 iterations
by tools/train.py, then tools/analysis_tools/ms_eval.py runs tools/test.py
single-scale and with --tta (DetTTAModelWithMasks / SegTTAModel, the configs'
own multi-scale + flip pipelines) and reports both side by side, including
coco/segm_mAP for the TTA run (mmdet's own DetTTAModel refuses masks)."""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_ARCH = dict(depths=[1, 1, 1, 1], dims=[16, 24, 32, 48])

DET_CFG = """
_base_ = [{base!r}]
data_root = {data_root!r}
model = dict(
    backbone=dict(arch=dict(_delete_=True, **{arch!r})),
    neck=dict(in_channels=[16, 24, 32, 48], out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=32),
        bbox_head=dict(in_channels=32, fc_out_channels=32),
        mask_roi_extractor=dict(out_channels=32),
        mask_head=dict(in_channels=32, conv_out_channels=32)),
    # keep detections of the barely trained model so that AP is computed
    test_cfg=dict(rcnn=dict(score_thr=0.0, max_per_img=10)))
_pipe = dict(type='Resize', scale=(128, 128), keep_ratio=False)
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        _pipe, dict(type='PackDetInputs')]))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_iters=2, val_interval=100)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
"""

SEG_CFG = """
_base_ = [{base!r}]
data_root = {data_root!r}
crop_size = (64, 64)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch=dict(_delete_=True, **{arch!r})),
    decode_head=dict(in_channels=[16, 24, 32, 48], channels=16),
    auxiliary_head=dict(in_channels=32, channels=16))
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='Resize', scale=(128, 64), keep_ratio=True),
        dict(type='RandomCrop', crop_size=crop_size),
        dict(type='PackSegInputs')]))
val_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=2, val_interval=100)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
"""


def _load_tool():
    spec = importlib.util.spec_from_file_location(
        'ms_eval', osp.join(ROOT, 'tools', 'analysis_tools', 'ms_eval.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    from mmssm.datasets import generate_all
    root = tmp_path_factory.mktemp('synthetic')
    generate_all(str(root), seed=5, num_train=4, num_val=2)
    return root


def _train(tmp_path, text):
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(text)
    work = tmp_path / 'work'
    res = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'train.py'), str(cfg),
         '--work-dir', str(work)], cwd=tmp_path, capture_output=True,
        text=True, env=dict(os.environ, PYTHONUNBUFFERED='1'), timeout=900)
    assert res.returncode == 0, (res.stdout + res.stderr)[-5000:]
    ckpt = work / 'iter_2.pth'
    assert ckpt.is_file()
    return cfg, ckpt


def test_parse_metrics_reads_the_final_test_line():
    ms = _load_tool()
    log = ('Iter(test) [1/2]    eta: 0:00:01  time: 0.5  data_time: 0.1\n'
           'Iter(test) [2/2]    coco/bbox_mAP: 0.1250  coco/segm_mAP: '
           '0.0500  data_time: 0.0100  time: 0.4000\n')
    assert ms.parse_metrics(log) == {
        'coco/bbox_mAP': 0.125,
        'coco/segm_mAP': 0.05
    }
    with pytest.raises(ValueError, match='Iter\\(test\\)'):
        ms.parse_metrics('nothing here')
    table = ms.side_by_side({'mIoU': 40.0, 'aAcc': 80.0}, {'mIoU': 41.5})
    assert '| mIoU   | 40.0000 | 41.5000 | +1.5000 |' in table
    assert 'aAcc' not in table


def test_det_single_and_multi_scale_with_masks(tmp_path, data_root, capsys):
    text = DET_CFG.format(
        base=osp.join(ROOT, 'configs', 'mambaout',
                      'mask-rcnn_mambaout-femto_fpn_demo_coco-shapes.py'),
        data_root=str(data_root / 'coco_shapes') + '/', arch=TINY_ARCH)
    cfg, ckpt = _train(tmp_path, text)
    ms = _load_tool()
    out = tmp_path / 'ms.json'
    res = ms.main([str(cfg), str(ckpt), '--work-dir', str(tmp_path / 'ev'),
                   '--out', str(out)])
    for run in ('single_scale', 'multi_scale'):
        for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
            assert 0.0 <= res[run][key] <= 1.0, (run, key, res[run])
    assert json.loads(out.read_text())['multi_scale'] == res['multi_scale']
    printed = capsys.readouterr().out
    assert 'coco/segm_mAP' in printed and 'multi-scale (TTA)' in printed


def test_seg_single_and_multi_scale(tmp_path, data_root):
    text = SEG_CFG.format(
        base=osp.join(ROOT, 'configs', 'mambaout',
                      'upernet_mambaout-femto_demo_ade-shapes.py'),
        data_root=str(data_root / 'ade_shapes'), arch=TINY_ARCH)
    cfg, ckpt = _train(tmp_path, text)
    res = _load_tool().main(
        [str(cfg), str(ckpt), '--work-dir', str(tmp_path / 'ev')])
    for run in ('single_scale', 'multi_scale'):
        assert 0.0 <= res[run]['mIoU'] <= 100.0
        assert 'aAcc' in res[run]
