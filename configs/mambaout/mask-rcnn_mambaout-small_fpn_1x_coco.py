# Mask R-CNN 1x with MambaOut-Small on COCO: the Tiny recipe with the Small
# backbone. drop_path_rate 0.4 is our choice (the paper does not give it).
_base_ = './mask-rcnn_mambaout-tiny_fpn_1x_coco.py'

pretrained = 'checkpoints/mambaout_small.pth'
model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 576]))
