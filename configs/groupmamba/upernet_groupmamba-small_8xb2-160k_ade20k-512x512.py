# UperNet 160k with GroupMamba-S on ADE20K (recipe of the Tiny config).
_base_ = ['./upernet_groupmamba-tiny_8xb2-160k_ade20k-512x512.py']
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

pretrained = 'checkpoints/groupmamba_small.pth'
model = dict(
    backbone=dict(
        arch='small', init_cfg=dict(type='Pretrained',
                                    checkpoint=pretrained)),
    decode_head=dict(in_channels=[64, 128, 348, 512]),
    auxiliary_head=dict(in_channels=348))
