# CPU demo: Mask R-CNN (light heads) with MambaOut-Femto trained from scratch
# on the synthetic COCO shapes. `python tools/train.py <this config>`.
#
# Tuned for time on a 2-core CPU (README, "Figures reached here"): from random
# init the box head names the shape types only after ~1000+ optimizer steps,
# so the recipe buys steps per second rather than resolution or width:
# 256x256 inputs, batch 2, a P3-P6 pyramid (the shapes are >= 25 px at this
# size; the stride-4 level's convolutions were the largest single cost),
# 64-channel FPN and heads, 1400 iterations: box mAP 0.602 / mask 0.597 in
# 16.6 min on a quiet machine.
_base_ = [
    '../_base_/models/mask-rcnn_fpn_demo.py',
    '../_base_/datasets/coco-shapes_instance.py',
    '../_base_/demo_runtime_det.py',
    '../_base_/tta/det_tta_coco-shapes.py'
]
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

# FPN on stages 1-3 (strides 8-32) plus a max-pooled stride-64 level;
# anchors 32-256 px. The backbone gives only those stages: an output the FPN
# skipped (stage 0 with `start_level=1`, as before) left its norm without a
# gradient, which stops DDP ("parameters that were not used in producing
# loss"). 64-channel FPN
# and heads, 64 sampled RoIs per image (half positive) from 150 proposals, and
# one RoIAlign sample per 14x14 mask bin (a bin spans <= ~1.5 feature cells at
# these sizes): the RoI heads' share of an iteration shrinks from ~half.
strides = [8, 16, 32, 64]
width = 64
model = dict(
    backbone=dict(
        _delete_=True,
        type='MambaOut',
        arch='femto',
        drop_path_rate=0.0,
        out_indices=(1, 2, 3)),
    neck=dict(
        in_channels=[96, 192, 288],
        out_channels=width,
        start_level=0,
        num_outs=4),
    rpn_head=dict(
        in_channels=width,
        feat_channels=width,
        anchor_generator=dict(strides=strides)),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width, featmap_strides=strides),
        bbox_head=dict(in_channels=width),
        mask_roi_extractor=dict(
            out_channels=width,
            featmap_strides=strides,
            roi_layer=dict(sampling_ratio=1)),
        mask_head=dict(in_channels=width, conv_out_channels=width)),
    train_cfg=dict(
        rpn_proposal=dict(max_per_img=150),
        rcnn=dict(sampler=dict(num=64, pos_fraction=0.5))))

# the base pipelines with 256x256 instead of 320x320 resizes
img_scale = (256, 256)
train_pipeline = [
    dict(t, scale=img_scale) if t['type'] == 'Resize' else t
    for t in _base_.train_pipeline
]
test_pipeline = [
    dict(t, scale=img_scale) if t['type'] == 'Resize' else t
    for t in _base_.test_pipeline
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# (the multi-scale TTA of the base keeps its 256/320/384 views: 256 is the
# single-scale test size)

max_iters = 1400
warmup_iters = 50
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False,
         begin=warmup_iters, end=max_iters)
]
auto_scale_lr = dict(base_batch_size=2)
# the README's figures are from this seed
randomness = dict(seed=0)
