# Mask R-CNN 1x with the VMamba-like variant of GroupMamba-T (mixer='ss2d4':
# every channel scanned in all four directions, summed) for a comparison with
# the grouped design on the same recipe. No official ImageNet weights exist
# for this variant: pre-train it with
# configs/groupmamba/groupmamba-ss2d4-tiny_distill-regnety160_8xb128_in1k.py
# and point groupmamba_pretrained["ss2d4_tiny"] (_base_/models/groupmamba-dense.py)
# at the result.
_base_ = ['./mask-rcnn_groupmamba-tiny_fpn_1x_coco.py']
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

model = _base_.groupmamba_det['ss2d4_tiny']
