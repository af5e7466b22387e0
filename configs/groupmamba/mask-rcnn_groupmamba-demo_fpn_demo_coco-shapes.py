# CPU demo: Mask R-CNN (light heads) with a small GroupMamba trained from
# scratch on the synthetic COCO shapes. `python tools/train.py <this config>`.
_base_ = [
    '../_base_/models/mask-rcnn_fpn_demo.py',
    '../_base_/datasets/coco-shapes_instance.py',
    '../_base_/demo_runtime_det.py',
    '../_base_/tta/det_tta_coco-shapes.py'
]
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

demo_arch = dict(
    embed_dims=[32, 64, 96, 128],
    depths=[1, 1, 2, 1],
    mlp_ratios=[4, 4, 4, 4],
    stem_channels=16)
model = dict(
    backbone=dict(
        _delete_=True,
        type='GroupMamba',
        arch=demo_arch,
        drop_path_rate=0.0,
        out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[32, 64, 96, 128]))
