# Vim-B on ImageNet-1k: the Vim-Ti recipe with a 768-wide backbone. The drop
# path rate 0.3 is our choice (no official Vim-B training script).
# Measured: 97.6 M parameters (paper: 98 M).
_base_ = ['./vim-tiny_8xb128_in1k.py']
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

model = dict(
    backbone=dict(arch='base', drop_path_rate=0.3),
    head=dict(in_channels=768))
