# UperNet 160k with MambaOut-Small on ADE20K: the Tiny recipe with the Small
# backbone. drop_path_rate 0.4 is our choice (the paper does not give it).
_base_ = './upernet_mambaout-tiny_4xb4-160k_ade20k-512x512.py'

pretrained = 'checkpoints/mambaout_small.pth'
model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 576]),
    auxiliary_head=dict(in_channels=384))
