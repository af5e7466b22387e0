# Mask R-CNN 1x with the VMamba-like variant of GroupMamba-T (mixer='ss2d4':
# every channel scanned in all four directions, summed) for a comparison with
# the grouped design on the same recipe. No official ImageNet weights exist
# for this variant: pre-train it with
# configs/groupmamba/groupmamba-ss2d4-tiny_distill-regnety160_8xb128_in1k.py
# and point `pretrained` at the result.
_base_ = ['./mask-rcnn_groupmamba-tiny_fpn_1x_coco.py']
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

pretrained = 'checkpoints/groupmamba-ss2d4-tiny_in1k.pth'
model = dict(
    backbone=dict(
        mixer='ss2d4',
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
