# Mask R-CNN 1x with MambaOut-Small on COCO: the Tiny recipe with the Small
# backbone (_base_/models/mambaout-dense.py).
_base_ = './mask-rcnn_mambaout-tiny_fpn_1x_coco.py'

model = dict(
    backbone=_base_.mambaout_sizes['small'],
    neck=dict(in_channels=_base_.mambaout_widths['small']))
