# Vim-Ti + SE (seed 002, papers/improving-ssm-vim-mambavision.txt; issue #17):
# the Vim-Ti ImageNet-1k recipe with a Squeeze-and-Excitation block of
# reduction 4 at the end of every Vim layer, before the residual add
# (Vim(se_ratio=4): mean over all tokens -> Linear(192, 48) -> ReLU ->
# Linear(48, 192) -> sigmoid, scaling the mixer output). An official Vim-Ti
# checkpoint (init_cfg Pretrained) loads strictly for every other parameter;
# the 24 SE blocks (24 x 18,672 parameters) are reported as newly initialised.
_base_ = ['./vim-tiny_8xb128_in1k.py']
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

model = dict(backbone=dict(se_ratio=4))
