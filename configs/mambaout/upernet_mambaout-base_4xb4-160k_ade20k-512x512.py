# UperNet 160k with MambaOut-Base on ADE20K: the Tiny recipe with the Base
# backbone (_base_/models/mambaout-dense.py).
_base_ = './upernet_mambaout-tiny_4xb4-160k_ade20k-512x512.py'

model = dict(
    backbone=_base_.mambaout_sizes['base'],
    decode_head=dict(in_channels=_base_.mambaout_widths['base']),
    auxiliary_head=dict(in_channels=_base_.mambaout_widths['base'][2]))
