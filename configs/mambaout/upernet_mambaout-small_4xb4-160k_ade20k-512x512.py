# UperNet 160k with MambaOut-Small on ADE20K: the Tiny recipe with the Small
# backbone (_base_/models/mambaout-dense.py).
_base_ = './upernet_mambaout-tiny_4xb4-160k_ade20k-512x512.py'

model = dict(
    backbone=_base_.mambaout_sizes['small'],
    decode_head=dict(in_channels=_base_.mambaout_widths['small']),
    auxiliary_head=dict(in_channels=_base_.mambaout_widths['small'][2]))
