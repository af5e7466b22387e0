# Mask R-CNN 1x with GroupMamba-S on COCO: the recipe of the Tiny config with the
# Small backbone (drop_path_rate 0.3, Swin-S's value, is our choice).
_base_ = ['./mask-rcnn_groupmamba-tiny_fpn_1x_coco.py']
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

model = _base_.groupmamba_det['small']
