# UperNet 160k with MambaOut-Base on ADE20K: the Tiny recipe with the Base
# backbone. drop_path_rate 0.5 is our choice (the paper does not give it).
_base_ = './upernet_mambaout-tiny_4xb4-160k_ade20k-512x512.py'

pretrained = 'checkpoints/mambaout_base.pth'
model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.5,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[128, 256, 512, 768]),
    auxiliary_head=dict(in_channels=512))
