# Mask R-CNN 3x multi-scale with GroupMamba-B on COCO: the recipe of the Tiny config with the
# Base backbone (drop_path_rate 0.3 is our choice).
_base_ = ['./mask-rcnn_groupmamba-tiny_fpn_ms-3x_coco.py']
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

model = _base_.groupmamba_det['base']
