# CPU demo of the VMamba-like variant (mixer='ss2d4'), otherwise the same as
# mask-rcnn_groupmamba-demo_fpn_demo_coco-shapes.py, for a side-by-side run.
_base_ = ['./mask-rcnn_groupmamba-demo_fpn_demo_coco-shapes.py']
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

model = dict(backbone=dict(mixer='ss2d4'))
