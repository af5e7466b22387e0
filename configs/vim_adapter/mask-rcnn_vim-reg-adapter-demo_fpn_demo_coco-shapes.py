# CPU demo: Mask R-CNN (light heads) with ViT-Adapter around a small Vim with
# registers (96 wide, 4 layers, d_state 8, 4 registers) trained from scratch
# on the synthetic COCO shapes at 320x320: adapter stem 16 wide, 4
# deformable heads, one layer per interaction, BN; SLWS hook with P_L 0.1
# (the registers value). `python tools/train.py <this config>`.
_base_ = [
    '../_base_/models/mask-rcnn_fpn_demo.py',
    '../_base_/datasets/coco-shapes_instance.py',
    '../_base_/demo_runtime_det.py',
    '../_base_/tta/det_tta_coco-shapes.py'
]
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

embed_dims = 96
model = dict(
    backbone=dict(
        _delete_=True,
        type='PlainAdapter',
        backbone=dict(
            type='Vim',
            arch=dict(embed_dims=embed_dims, num_layers=4, d_state=8),
            img_size=320,
            num_registers=4),
        conv_inplane=16,
        deform_num_heads=4,
        deform_ratio=1.0,
        norm_cfg=dict(type='BN', requires_grad=True)),
    neck=dict(in_channels=[embed_dims] * 4))
custom_hooks = [dict(type='SLWSHook', prob=0.1, log_interval=100),
                dict(type='NonFiniteGuardHook')]
