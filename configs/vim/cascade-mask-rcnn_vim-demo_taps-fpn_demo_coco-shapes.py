# CPU demo: Cascade Mask R-CNN with the small Vim of the simple-pyramid demo
# (96 wide, 6 layers, d_state 8, 16x16 patches at stride 8, SLWS P_L 0.2,
# layer-wise lr decay 0.9) trained from scratch on the synthetic COCO shapes,
# but fed to the heads through four tapped layers [1, 3, 4, 5]
# (PlainMultiLevelTaps, LN; rescales 2, 1, 0.5, 0.25 of the stride-8 maps give
# strides 4-32) and an FPN, as the Vim UperNet demo taps its backbone. From
# random init in a CPU budget this learns where the ViTDet simple pyramid,
# built from the last map alone, does not (README: Vim).
# `python tools/train.py <this config>`.
_base_ = ['./cascade-mask-rcnn_vim-demo_simple-fpn_demo_coco-shapes.py']
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

embed_dims = 96
channels = 128
model = dict(
    backbone=dict(out_indices=(1, 3, 4, 5)),
    # A list of necks is built as an nn.Sequential: taps, then FPN.
    neck=[
        dict(
            type='PlainMultiLevelTaps',
            in_channels=embed_dims,
            rescales=(2, 1, 0.5, 0.25),
            norm_cfg=dict(type='LN2d', eps=1e-6, requires_grad=True)),
        dict(
            type='FPN',
            in_channels=[embed_dims] * 4,
            out_channels=channels,
            num_outs=5)
    ])
