# UperNet 160k with Vim-S on ADE20K, 512x512: the Vim-Ti recipe with a
# 384-wide backbone and decode head (the official small config). Measured:
# 45.4 M parameters (paper: 46 M).
_base_ = ['./upernet_vim-tiny_plain-taps_8xb2-160k_ade20k-512x512.py']
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

pretrained = 'checkpoints/vim_s_midclstok_80p5acc.pth'
embed_dims = 384
model = dict(
    backbone=dict(
        arch='small', init_cfg=dict(type='Pretrained',
                                    checkpoint=pretrained)),
    neck=dict(in_channels=embed_dims),
    decode_head=dict(in_channels=[embed_dims] * 4, channels=embed_dims),
    auxiliary_head=dict(in_channels=embed_dims))
