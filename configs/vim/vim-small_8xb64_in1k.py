# Vim-S on ImageNet-1k, the official recipe (hustvl/Vim scripts/pt-vim-s.sh):
# batch 512 (8 x 64), lr 1e-3, wd 0.05, drop path 0.05; otherwise as Vim-Ti.
# Measured: 25.8 M parameters (paper: 26 M).
_base_ = ['./vim-tiny_8xb128_in1k.py']
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

model = dict(
    backbone=dict(arch='small', drop_path_rate=0.05),
    head=dict(in_channels=384))
train_dataloader = dict(batch_size=64)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
auto_scale_lr = dict(base_batch_size=512)
