# UperNet 160k on ADE20K with ViT-Adapter around Vim-Reg-L (Mamba-Reg-L, 1024
# wide, 48 layers, 16 registers): lr 3e-5 for the large model (the
# ShuffleMamba paper), 16 deformable heads, ratio 0.5, 12-layer interactions,
# drop path 0.4 (our choice; no released large adapter segmentation config).
# Measured: 399.1 M parameters with the auxiliary head (ViT-Adapter-L
# UperNet: 364 M; Vim-Reg-L 339.0 M vs ViT-L 303.3 M).
_base_ = ['./upernet_vim-reg-base-adapter_8xb2-160k_ade20k-512x512.py']
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

# https://huggingface.co/Wangf3014/Mamba-Reg/resolve/main/mambar_large_patch16_224.pth  # noqa: E501
pretrained = 'checkpoints/mambar_large_patch16_224.pth'
embed_dims = 1024
model = dict(
    backbone=dict(
        backbone=dict(
            arch='reg-large',
            drop_path_rate=0.4,
            init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
        deform_num_heads=16,
        interaction_indexes=[[0, 11], [12, 23], [24, 35], [36, 47]],
        drop_path_rate=0.4),
    decode_head=dict(in_channels=[embed_dims] * 4),
    auxiliary_head=dict(in_channels=embed_dims))
optim_wrapper = dict(optimizer=dict(lr=3e-5))
