# Mask R-CNN 1x with MambaOut-Tiny on COCO (the author's dense recipe:
# AdamW lr 1e-4, wd 0.05, batch 16, 12 epochs, per-stage output LayerNorm, no
# layer decay, drop_path_rate 0.3; FP16 on GPU via `tools/train.py --amp`).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/schedules/adamw_1x.py',
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

# 8 GPUs x 2 images
auto_scale_lr = dict(enable=False, base_batch_size=16)
