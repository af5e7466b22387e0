# MambaOut-Small on ImageNet-1k: the paper's recipe (Table 5, see the Tiny
# config) with peak drop path 0.4.
_base_ = './mambaout-tiny_32xb128_in1k.py'

model = dict(
    backbone=dict(arch='small', drop_path_rate=0.4),
    head=dict(in_channels=576))
