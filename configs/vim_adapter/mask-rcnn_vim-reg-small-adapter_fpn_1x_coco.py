# Mask R-CNN 1x on COCO with ViT-Adapter around Vim-Reg-S (Mamba-Reg-S: 384
# wide, 24 layers, 12 registers): the Reg-Adapter-B recipe with the adapter
# settings of ViT-Adapter-S (6 deformable heads, deform ratio 1.0, drop path
# 0.2). Measured: 51.6 M parameters (ViT-Adapter-S Mask R-CNN: 48 M;
# Vim-Reg-S is 25.4 M, DeiT-S 21.7 M).
_base_ = ['./mask-rcnn_vim-reg-base-adapter_fpn_1x_coco.py']
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

# https://huggingface.co/Wangf3014/Mamba-Reg/resolve/main/mambar_small_patch16_224.pth  # noqa: E501
pretrained = 'checkpoints/mambar_small_patch16_224.pth'
embed_dims = 384
model = dict(
    backbone=dict(
        backbone=dict(
            arch='reg-small',
            drop_path_rate=0.2,
            init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
        deform_num_heads=6,
        deform_ratio=1.0,
        drop_path_rate=0.2),
    neck=dict(in_channels=[embed_dims] * 4))
