# Mask R-CNN 1x with GroupMamba-T on COCO, the Swin recipe of the paper
# (AdamW lr 1e-4, wd 0.05, batch 16, 12 epochs, steps at 8 and 11, warm-up
# 1000 iterations; the training pipeline and schedule are mmdet's Swin-T
# config). GroupMamba released no detection code: drop_path_rate 0.2 (Swin-T's
# value) is our choice. No weight decay on norms, A_logs, Ds and skip_scale.
_base_ = [
    'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
    '../_base_/tta/det_tta.py'
]
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

# Official ImageNet EMA weights (groupmamba_tiny from Amshaker/GroupMamba),
# downloaded by the user; converted on the fly (or use
# tools/model_converters/groupmamba2mmssm.py).
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
# 8 GPUs x 2 images
auto_scale_lr = dict(enable=False, base_batch_size=16)
