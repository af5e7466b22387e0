# Mask R-CNN 3x multi-scale with GroupMamba-S on COCO (see the Tiny config).
_base_ = ['./mask-rcnn_groupmamba-tiny_fpn_ms-3x_coco.py']
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

pretrained = 'checkpoints/groupmamba_small.pth'
model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 348, 512]))
