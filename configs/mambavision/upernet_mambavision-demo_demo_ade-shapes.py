# CPU demo: UperNet (light heads) with a small MambaVision trained from
# scratch on the synthetic ADE20K-layout shapes.
# `python tools/train.py <this config>`.
#
# The recipe of the MambaOut demo (crop 256, batch 4, 600 iterations) with
# the demos' small MambaVision (`_base_/models/mambavision-demo.py`).
_base_ = [
    '../mambaout/upernet_mambaout-femto_demo_ade-shapes.py',
    '../_base_/models/mambavision-demo.py'
]

model = dict(
    backbone=dict(_base_.mambavision_demo_backbone, out_indices=(0, 1, 2, 3)),
    decode_head=dict(in_channels=[48, 96, 192, 384]),
    auxiliary_head=dict(in_channels=192))
