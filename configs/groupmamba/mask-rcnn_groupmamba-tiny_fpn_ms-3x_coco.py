# Mask R-CNN 3x multi-scale with GroupMamba-T on COCO: mmdet's Swin-T
# ms-crop-3x recipe (multi-scale resize 480-800 with the DETR crop branch,
# 36 epochs, steps at 27 and 33, AdamW lr 1e-4, wd 0.05).
_base_ = [
    'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py',
    '../_base_/tta/det_tta.py'
]
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

pretrained = 'checkpoints/groupmamba_tiny.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='GroupMamba',
        arch='tiny',
        drop_path_rate=0.2,
        norm_eval=True,  # stem BatchNorms keep their ImageNet statistics
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 348, 448]))

optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'norm': dict(decay_mult=0.),
            'A_logs': dict(decay_mult=0.),
            '.Ds': dict(decay_mult=0.),
            'skip_scale': dict(decay_mult=0.),
        }))
auto_scale_lr = dict(enable=False, base_batch_size=16)
