# CPU demo: UperNet with a small GMambaVision (papers/improving-ssm-vim-
# mambavision.txt, seed 002) trained from scratch on the synthetic ADE20K-
# layout shapes: the MambaVision demo segmentor
# (upernet_mambavision-demo_demo_ade-shapes.py: same data, heads, schedule
# and seed) with the three GMambaVision options on: relative attention (a
# learned per-head relative position bias over each 8x8 window), 4 register
# tokens per hybrid stage (dropped from the outputs) and attention pooling
# in place of the strided convs between the levels.
# `python tools/train.py <this config>`.
_base_ = ['./upernet_mambavision-demo_demo_ade-shapes.py']

model = dict(
    backbone=dict(
        attn_type='relative', num_registers=4, downsample='attn_pool'))
