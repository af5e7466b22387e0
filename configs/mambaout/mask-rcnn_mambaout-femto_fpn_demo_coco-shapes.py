# CPU demo: Mask R-CNN (light heads) with MambaOut-Femto trained from scratch
# on the synthetic COCO shapes. `python tools/train.py <this config>`.
_base_ = [
    '../_base_/models/mask-rcnn_fpn_demo.py',
    '../_base_/datasets/coco-shapes_instance.py',
    '../_base_/demo_runtime_det.py',
    '../_base_/tta/det_tta_coco-shapes.py'
]
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='MambaOut',
        arch='femto',
        drop_path_rate=0.0,
        out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[48, 96, 192, 288]))
