# Vim-Ti + MobileNetV2 patch embedding (seed 002,
# papers/improving-ssm-vim-mambavision.txt; issue #17): the Vim-Ti ImageNet-1k
# recipe with the dense 16x16 patch convolution replaced by a depthwise-
# separable MobileNetV2 stem of the same stride (16) and width (192)
# (Vim(patch_embed='mbv2'): conv 3x3 s2 -> 32, then inverted residuals of
# expansion 6 and stride 2 to 24, 32 and 192 channels; 70,112 parameters
# instead of 147,648). An official Vim-Ti checkpoint (init_cfg Pretrained)
# loads strictly for every other parameter: its patch_embed.proj.* weights
# are dropped with a warning and the stem is reported as newly initialised.
_base_ = ['./vim-tiny_8xb128_in1k.py']
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

model = dict(backbone=dict(patch_embed='mbv2'))
