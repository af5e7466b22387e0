# Mask R-CNN 1x with MambaOut-Tiny on COCO (the author's dense recipe:
# AdamW lr 1e-4, wd 0.05, batch 16 = 8 GPUs x 2, 12 epochs, per-stage output
# LayerNorm, no layer decay, drop_path_rate 0.3; FP16 on GPU via
# `tools/train.py --amp`).
_base_ = [
    '../_base_/recipe_mask-rcnn_fpn_adamw-1x_coco.py',
    '../_base_/models/mambaout-dense.py'
]
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

model = dict(
    backbone=_base_.mambaout_backbone,
    neck=dict(in_channels=_base_.mambaout_widths['tiny']))
