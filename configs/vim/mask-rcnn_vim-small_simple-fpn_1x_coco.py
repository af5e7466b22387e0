# Mask R-CNN 1x with Vim-S on COCO: the Vim-Ti recipe with a 384-wide backbone.
_base_ = ['./mask-rcnn_vim-tiny_simple-fpn_1x_coco.py']
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

pretrained = 'checkpoints/vim_s_midclstok_80p5acc.pth'
model = dict(
    backbone=dict(
        arch='small', init_cfg=dict(type='Pretrained',
                                    checkpoint=pretrained)),
    neck=dict(in_channels=384))
