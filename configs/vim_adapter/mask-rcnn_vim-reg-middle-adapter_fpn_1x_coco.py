# Mask R-CNN 1x on COCO with ViT-Adapter around Vim-Reg-M (ShuffleMamba-Reg-M
# size: 576 wide, 32 layers, 12 registers), the ShuffleMamba middle adapter
# recipe: 12 deformable heads, deform ratio 0.5, drop path 0.4, interactions
# [[0, 7], [8, 15], [16, 23], [24, 31]]. No public Mamba-Reg-M weights: point
# `pretrained` at a ShuffleMamba-Reg-M (or Mamba-Reg layout) checkpoint.
# Measured: 102.8 M parameters.
_base_ = ['./mask-rcnn_vim-reg-base-adapter_fpn_1x_coco.py']
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

pretrained = 'checkpoints/shufflemamba_reg_middle.pth'
embed_dims = 576
model = dict(
    backbone=dict(
        backbone=dict(
            arch='reg-middle',
            drop_path_rate=0.4,
            init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
        deform_num_heads=12,
        deform_ratio=0.5,
        interaction_indexes=[[0, 7], [8, 15], [16, 23], [24, 31]],
        drop_path_rate=0.4),
    neck=dict(in_channels=[embed_dims] * 4))
