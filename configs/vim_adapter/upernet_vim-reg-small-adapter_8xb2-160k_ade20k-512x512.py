# UperNet 160k on ADE20K with ViT-Adapter around Vim-Reg-S (Mamba-Reg-S): the
# Reg-Adapter-B recipe with ViT-Adapter-S adapter settings (6 deformable
# heads, deform ratio 1.0). Measured: 61.4 M parameters with the
# auxiliary head (ViT-Adapter-S UperNet: 58 M; Vim-Reg-S 25.4 M vs DeiT-S
# 21.7 M).
_base_ = ['./upernet_vim-reg-base-adapter_8xb2-160k_ade20k-512x512.py']
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

# https://huggingface.co/Wangf3014/Mamba-Reg/resolve/main/mambar_small_patch16_224.pth  # noqa: E501
pretrained = 'checkpoints/mambar_small_patch16_224.pth'
embed_dims = 384
model = dict(
    backbone=dict(
        backbone=dict(
            arch='reg-small',
            init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
        deform_num_heads=6,
        deform_ratio=1.0),
    decode_head=dict(in_channels=[embed_dims] * 4),
    auxiliary_head=dict(in_channels=embed_dims))
