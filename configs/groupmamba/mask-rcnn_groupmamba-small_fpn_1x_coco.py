# Mask R-CNN 1x with GroupMamba-S on COCO (recipe of the Tiny config;
# drop_path_rate 0.3, Swin-S's value, is our choice).
_base_ = ['./mask-rcnn_groupmamba-tiny_fpn_1x_coco.py']
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

pretrained = 'checkpoints/groupmamba_small.pth'
model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 348, 512]))
