# Mask R-CNN 1x with GroupMamba-T on COCO, the Swin recipe of the paper
# (AdamW lr 1e-4, wd 0.05, batch 16, 12 epochs, steps at 8 and 11, warm-up
# 1000 iterations; the training pipeline and schedule are mmdet's Swin-T
# config). GroupMamba released no detection code: drop_path_rate 0.2 (Swin-T's
# value) is our choice. No weight decay on norms, A_logs, Ds and skip_scale
# (_base_/models/groupmamba-dense.py holds the GroupMamba pieces).
_base_ = [
    'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
    '../_base_/tta/det_tta.py', '../_base_/models/groupmamba-dense.py'
]
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

model = dict(
    backbone=dict(_base_.groupmamba_backbone, drop_path_rate=0.2),
    neck=dict(in_channels=_base_.groupmamba_widths['tiny']))
optim_wrapper = _base_.groupmamba_optim_wrapper
# 8 GPUs x 2 images
auto_scale_lr = dict(enable=False, base_batch_size=16)
