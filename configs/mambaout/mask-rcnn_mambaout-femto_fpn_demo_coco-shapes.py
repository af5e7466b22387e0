# CPU demo: Mask R-CNN (light heads) with MambaOut-Femto trained from scratch
# on the synthetic COCO shapes. `python tools/train.py <this config>`.
# 1200 iterations, half of the sampled RoIs positive: from random init the
# box head names the shape types only after ~600-800 iterations (README).
_base_ = [
    '../_base_/models/mask-rcnn_fpn_demo.py',
    '../_base_/datasets/coco-shapes_instance.py',
    '../_base_/demo_runtime_det.py',
    '../_base_/tta/det_tta_coco-shapes.py'
]
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='MambaOut',
        arch='femto',
        drop_path_rate=0.0,
        out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[48, 96, 192, 288]),
    train_cfg=dict(rcnn=dict(sampler=dict(pos_fraction=0.5))))

max_iters = 1200
warmup_iters = 50
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False,
         begin=warmup_iters, end=max_iters)
]
