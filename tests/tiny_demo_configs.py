"""Tiny versions of the MambaOut demo configs, shared by the end-to-end tests
(tools/train.py, tools/test.py, ms_eval.py). Format with ``base`` (the demo
config path), ``data_root``, ``max_iters`` and ``val_interval``."""

TINY_ARCH = dict(depths=[1, 1, 1, 1], dims=[16, 24, 32, 48])

_COMMON = """
train_cfg = dict(max_iters={max_iters}, val_interval={val_interval})
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))
"""

DET_CFG = """
_base_ = [{base!r}]
data_root = {data_root!r}
model = dict(
    backbone=dict(arch=dict(_delete_=True, **{arch!r})),
    # the demo's backbone gives stages 1-3 (those its FPN uses)
    neck=dict(in_channels=[24, 32, 48], out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=32),
        bbox_head=dict(in_channels=32, fc_out_channels=32),
        mask_roi_extractor=dict(out_channels=32),
        mask_head=dict(in_channels=32, conv_out_channels=32)),
    # keep low-score detections of the barely trained model so that COCO
    # evaluation has predictions to score
    test_cfg=dict(rcnn=dict(score_thr=0.0, max_per_img=10)))
_pipe = dict(type='Resize', scale=(128, 128), keep_ratio=False)
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        _pipe, dict(type='PackDetInputs')]))
_test_pipeline = [
    dict(type='LoadImageFromFile'), _pipe,
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                          'img_shape', 'scale_factor'))]
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=_test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
""" + _COMMON

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
    dataset=dict(data_root=data_root, pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(128, 64), keep_ratio=True),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='PackSegInputs')]))
test_dataloader = val_dataloader
""" + _COMMON


def det_cfg(base, data_root, max_iters=4, val_interval=4):
    return DET_CFG.format(base=base, data_root=data_root, arch=TINY_ARCH,
                          max_iters=max_iters, val_interval=val_interval)


def seg_cfg(base, data_root, max_iters=4, val_interval=4):
    return SEG_CFG.format(base=base, data_root=data_root, arch=TINY_ARCH,
                          max_iters=max_iters, val_interval=val_interval)


UPERNET_DEMO = ('configs', 'mambaout', 'upernet_mambaout-femto_demo_ade-shapes.py')


def write_seg_cfg(tmp_path, root, data_root, max_iters, val_interval=100):
    """Write the tiny UperNet demo (``tmp_path/cfg.py``) on
    ``data_root/ade_shapes``; ``root`` is the repository. Returns its path."""
    import os.path as osp
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(
        seg_cfg(osp.join(root, *UPERNET_DEMO), str(data_root / 'ade_shapes'),
                max_iters=max_iters, val_interval=val_interval))
    return str(cfg)


def run_train(root, args, cwd, env=None):
    """``tools/train.py ARGS`` in a subprocess; asserts it succeeds and
    returns its stdout + stderr."""
    import os
    import os.path as osp
    import subprocess
    import sys
    env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
    res = subprocess.run(
        [sys.executable, osp.join(root, 'tools', 'train.py')] + list(args),
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    return out
