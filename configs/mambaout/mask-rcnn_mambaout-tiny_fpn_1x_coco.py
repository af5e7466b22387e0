# Mask R-CNN 1x with MambaOut-Tiny on COCO (the author's dense recipe:
# AdamW lr 1e-4, wd 0.05, batch 16, 12 epochs, per-stage output LayerNorm, no
# layer decay, FP16 on GPU via `tools/train.py --amp`).
# drop_path_rate: 0.3 for Tiny is the author's; 0.3 for Tiny is our choice
# (the paper does not give it).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/tta/det_tta.py'
]
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

# ImageNet weights of the official release (mambaout_tiny.pth from
# yuweihao/MambaOut, or timm's); downloaded by the user, never at run time.
pretrained = 'checkpoints/mambaout_tiny.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='MambaOut',
        arch='tiny',
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 576]))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=1e-4,
        betas=(0.9, 0.999),
        weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))
# 8 GPUs x 2 images
auto_scale_lr = dict(enable=False, base_batch_size=16)
