# CPU demo: UperNet (light heads) with MambaOut-Femto trained from scratch on
# the synthetic ADE20K-layout shapes. `python tools/train.py <this config>`.
_base_ = [
    '../_base_/models/upernet_demo.py', '../_base_/datasets/ade-shapes.py',
    '../_base_/demo_runtime_seg.py'
]
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

crop_size = (256, 256)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='MambaOut',
        arch='femto',
        drop_path_rate=0.0,
        out_indices=(0, 1, 2, 3)),
    decode_head=dict(in_channels=[48, 96, 192, 288]),
    auxiliary_head=dict(in_channels=192))
tta_model = dict(type='SegTTAModel')
