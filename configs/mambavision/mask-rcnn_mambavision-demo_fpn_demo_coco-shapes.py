# CPU demo: Mask R-CNN (light heads) with a small MambaVision trained from
# scratch on the synthetic COCO shapes. `python tools/train.py <this config>`.
#
# The recipe of the MambaOut demo (256x256 inputs, batch 2, P3-P6 pyramid,
# 64-channel FPN and heads, seed 0) with the demos' small MambaVision
# (`_base_/models/mambavision-demo.py`) and 2000 iterations.
#
# Output norms: BatchNorm (`out_norm='bn'`), not the official detection
# default LayerNorm over channels: with LayerNorm this from-scratch demo did
# not learn (box mAP 0.005, mask loss flat at ln 2 = 0.69 from iteration
# ~150; README, MambaVision): the LayerNorm'd maps kept large per-channel
# constant offsets (channel means up to ~2 over the map), the FPN's 1x1 and
# 3x3 convolutions summed them into outputs with a standard deviation of
# ~200, and the mask head's second conv stopped firing (0.3 % of its ReLU
# outputs positive). A BatchNorm centres every channel over the batch and
# the map, so the mask loss falls as with MambaOut (0.35 at iteration 270).
_base_ = [
    '../mambaout/mask-rcnn_mambaout-femto_fpn_demo_coco-shapes.py',
    '../_base_/models/mambavision-demo.py'
]

model = dict(
    backbone=dict(
        _base_.mambavision_demo_backbone, out_norm='bn',
        out_indices=(1, 2, 3)),
    neck=dict(in_channels=[96, 192, 384]))

# 2000 iterations instead of the MambaOut demo's 1400: this MambaVision's
# classification loss turns down ~300 iterations later (0.74 at 1400 against
# MambaOut's 0.39; box mAP 0.311 after a 1400-iteration schedule)
# (the MambaOut demo's warm-up, then its cosine decay stretched to the end)
max_iters = 2000
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    _base_.param_scheduler[0],
    dict(_base_.param_scheduler[1], end=max_iters)
]
