# Mask R-CNN 3x multi-scale with GroupMamba-T on COCO: mmdet's Swin-T
# ms-crop-3x recipe (multi-scale resize 480-800 with the DETR crop branch,
# 36 epochs, steps at 27 and 33, AdamW lr 1e-4, wd 0.05) with the backbone
# and optimizer settings of the 1x config.
_base_ = [
    'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py',
    '../_base_/tta/det_tta.py', '../_base_/models/groupmamba-dense.py'
]
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

model = dict(
    backbone=dict(_base_.groupmamba_backbone, drop_path_rate=0.2),
    neck=dict(in_channels=_base_.groupmamba_widths['tiny']))
optim_wrapper = _base_.groupmamba_optim_wrapper
auto_scale_lr = dict(enable=False, base_batch_size=16)
