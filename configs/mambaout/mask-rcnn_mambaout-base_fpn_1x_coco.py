# Mask R-CNN 1x with MambaOut-Base on COCO: the Tiny recipe with the Base
# backbone. drop_path_rate 0.5 is our choice (the paper does not give it).
_base_ = './mask-rcnn_mambaout-tiny_fpn_1x_coco.py'

pretrained = 'checkpoints/mambaout_base.pth'
model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.5,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 768]))
