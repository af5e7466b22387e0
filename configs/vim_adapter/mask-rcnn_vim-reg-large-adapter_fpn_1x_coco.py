# Mask R-CNN 1x on COCO with ViT-Adapter around Vim-Reg-L (Mamba-Reg-L: 1024
# wide, 48 layers, 16 registers), the ShuffleMamba large adapter recipe: 16
# deformable heads, deform ratio 0.5, drop path 0.5, interactions
# [[0, 11], [12, 23], [24, 35], [36, 47]]. Measured: 383.2 M parameters
# (ViT-Adapter-L Mask R-CNN: 348 M; Vim-Reg-L 339.0 M vs ViT-L 303.3 M).
_base_ = ['./mask-rcnn_vim-reg-base-adapter_fpn_1x_coco.py']
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

# https://huggingface.co/Wangf3014/Mamba-Reg/resolve/main/mambar_large_patch16_224.pth  # noqa: E501
pretrained = 'checkpoints/mambar_large_patch16_224.pth'
embed_dims = 1024
model = dict(
    backbone=dict(
        backbone=dict(
            arch='reg-large',
            drop_path_rate=0.5,
            init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
        deform_num_heads=16,
        deform_ratio=0.5,
        interaction_indexes=[[0, 11], [12, 23], [24, 35], [36, 47]],
        drop_path_rate=0.5),
    neck=dict(in_channels=[embed_dims] * 4))
