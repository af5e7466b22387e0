# Cascade Mask R-CNN, ViTDet style, with Vim-S on COCO: the Vim-Ti recipe
# (LSJ 1024, AdamW lr 1e-4, wd 0.1, batch 64, layer decay 0.837) with a
# 384-wide backbone.
_base_ = ['./cascade-mask-rcnn_vim-tiny_simple-fpn_lsj-100e_coco.py']
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

pretrained = 'checkpoints/vim_s_midclstok_80p5acc.pth'
model = dict(
    backbone=dict(
        arch='small', init_cfg=dict(type='Pretrained',
                                    checkpoint=pretrained)),
    neck=dict(in_channels=384))
