# CPU demo: UperNet (light heads) with a small GroupMamba trained from scratch
# on the synthetic ADE20K-layout shapes. `python tools/train.py <this config>`.
_base_ = [
    '../_base_/models/upernet_demo.py', '../_base_/datasets/ade-shapes.py',
    '../_base_/demo_runtime_seg.py'
]
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

crop_size = (256, 256)
demo_arch = dict(
    embed_dims=[32, 64, 96, 128],
    depths=[1, 1, 2, 1],
    mlp_ratios=[4, 4, 4, 4],
    stem_channels=16)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='GroupMamba',
        arch=demo_arch,
        drop_path_rate=0.0,
        out_indices=(0, 1, 2, 3)),
    decode_head=dict(in_channels=[32, 64, 96, 128]),
    auxiliary_head=dict(in_channels=96))
tta_model = dict(type='SegTTAModel')
