# CPU demo: UperNet (light heads) with a small Vim (96 wide, 8 layers,
# d_state 8) trained from scratch on the synthetic ADE20K-layout shapes; four
# layers [1, 3, 5, 7] tapped by PlainMultiLevelTaps (BN), layer-wise lr decay
# 0.9, SLWS hook (P_L 0.2). `python tools/train.py <this config>`.
_base_ = [
    '../_base_/models/upernet_demo.py', '../_base_/datasets/ade-shapes.py',
    '../_base_/demo_runtime_seg.py'
]
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

crop_size = (256, 256)
embed_dims = 96
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='Vim',
        arch=dict(embed_dims=embed_dims, num_layers=8, d_state=8),
        img_size=256,
        out_indices=(1, 3, 5, 7),
        drop_path_rate=0.0),
    neck=dict(
        type='PlainMultiLevelTaps',
        in_channels=embed_dims,
        rescales=(4, 2, 1, 0.5),
        norm_cfg=dict(type='BN', requires_grad=True)),
    decode_head=dict(in_channels=[embed_dims] * 4),
    auxiliary_head=dict(in_channels=embed_dims))

optim_wrapper = dict(
    constructor='SSMLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        _delete_=True,
        layer_decay_rate=0.9,
        norm_decay_mult=0.0,
        flat_decay_mult=0.0))
custom_hooks = [dict(type='SLWSHook', prob=0.2, log_interval=100),
                dict(type='NonFiniteGuardHook')]
tta_model = dict(type='SegTTAModel')
