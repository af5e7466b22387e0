# UperNet 160k with Vim-Ti on ADE20K, 512x512 crops: the Vim paper recipe
# (AdamW lr 6e-5, wd 0.01, batch 16 = 8 GPUs x 2, linear warm-up 1500
# iterations, poly decay; mmseg's Swin-T UperNet config gives the pipeline and
# the schedule) with layer-wise lr decay 0.92 (the official segmentation code;
# here it really applies to `backbone.layers`). Four layers [5, 11, 17, 23] are
# tapped and made into strides 4/8/16/32 by PlainMultiLevelTaps (deconv x4,
# deconv x2, identity, max-pool). Sliding-window test 512/341. Measured:
# 12.3 M parameters with the official head widths (paper: 13 M).
_base_ = [
    'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'  # noqa
]
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

# Official ImageNet weights (hustvl/Vim-tiny-midclstok), downloaded by the
# user; loaded as they are (the class-token row of pos_embed is found in the
# middle and the embedding is resized from 14x14 to 32x32).
pretrained = 'checkpoints/vim_t_midclstok_76p1acc.pth'
embed_dims = 192
crop_size = (512, 512)
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='Vim',
        arch='tiny',
        img_size=512,
        out_indices=(5, 11, 17, 23),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(
        type='PlainMultiLevelTaps',
        in_channels=embed_dims,
        rescales=(4, 2, 1, 0.5),
        norm_cfg=dict(type='SyncBN', requires_grad=True)),
    decode_head=dict(
        in_channels=[embed_dims] * 4, channels=embed_dims, num_classes=150),
    auxiliary_head=dict(in_channels=embed_dims, num_classes=150),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

optim_wrapper = dict(
    constructor='SSMLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        _delete_=True,
        layer_decay_rate=0.92,
        norm_decay_mult=0.0,
        flat_decay_mult=0.0))
tta_model = dict(type='SegTTAModel')
