# CPU demo: UperNet (light heads) with ViT-Adapter around a small Vim with
# registers (96 wide, 4 layers, d_state 8, 4 registers) trained from scratch
# on the synthetic ADE20K-layout shapes, 256x256 crops.
# `python tools/train.py <this config>`.
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
        type='PlainAdapter',
        backbone=dict(
            type='Vim',
            arch=dict(embed_dims=embed_dims, num_layers=4, d_state=8),
            img_size=256,
            num_registers=4),
        conv_inplane=16,
        deform_num_heads=4,
        norm_cfg=dict(type='BN', requires_grad=True)),
    decode_head=dict(in_channels=[embed_dims] * 4),
    auxiliary_head=dict(in_channels=embed_dims))
tta_model = dict(type='SegTTAModel')
