# CPU demo: UperNet (light heads) with a small MambaVision trained from
# scratch on the synthetic ADE20K-layout shapes.
# `python tools/train.py <this config>`.
#
# The recipe of the MambaOut demo (crop 256, batch 4, 600 iterations) with
# the MambaVision of the detection demo (dims 48/96/192/384, depths 1/1/2/2,
# heads 2/2/4/8, 8x8 windows).
_base_ = ['../mambaout/upernet_mambaout-femto_demo_ade-shapes.py']

demo_arch = dict(
    dim=48, in_dim=24, depths=[1, 1, 2, 2], num_heads=[2, 2, 4, 8])
model = dict(
    backbone=dict(
        _delete_=True,
        type='MambaVision',
        arch=demo_arch,
        window_size=(8, 8, 8, 8),
        drop_path_rate=0.0,
        out_indices=(0, 1, 2, 3)),
    decode_head=dict(in_channels=[48, 96, 192, 384]),
    auxiliary_head=dict(in_channels=192))
