# Mask R-CNN 1x with GroupMamba-B on COCO (recipe of the Tiny config;
# drop_path_rate 0.3 is our choice).
_base_ = ['./mask-rcnn_groupmamba-tiny_fpn_1x_coco.py']
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

pretrained = 'checkpoints/groupmamba_base.pth'
model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 424, 512]))
