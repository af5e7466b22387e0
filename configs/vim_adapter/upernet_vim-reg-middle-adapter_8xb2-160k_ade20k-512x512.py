# UperNet 160k on ADE20K with ViT-Adapter around Vim-Reg-M (ShuffleMamba-Reg-M
# size, 576 wide, 32 layers, 12 registers): the Reg-Adapter-B recipe with the
# middle adapter settings of the ShuffleMamba detector (12 heads, ratio 0.5,
# 8-layer interactions) and drop path 0.3 (our choice; no released middle
# segmentation config). Measured: 114.4 M parameters with the auxiliary
# head.
_base_ = ['./upernet_vim-reg-base-adapter_8xb2-160k_ade20k-512x512.py']
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

pretrained = 'checkpoints/shufflemamba_reg_middle.pth'
embed_dims = 576
model = dict(
    backbone=dict(
        backbone=dict(
            arch='reg-middle',
            drop_path_rate=0.3,
            init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
        interaction_indexes=[[0, 7], [8, 15], [16, 23], [24, 31]],
        drop_path_rate=0.3),
    decode_head=dict(in_channels=[embed_dims] * 4),
    auxiliary_head=dict(in_channels=embed_dims))
