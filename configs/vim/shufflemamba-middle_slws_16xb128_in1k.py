# ShuffleMamba-M (plain Vim, 576 wide, 32 layers) on ImageNet-1k with the
# stochastic layer-wise shuffle, the paper's recipe: 300 epochs, batch 2048
# (16 x 128), AdamW lr 1e-3, betas (0.9, 0.95), wd 0.1, 20 warm-up epochs,
# cosine decay, drop path 0.5, RandAugment / Random Erasing / Mixup / CutMix,
# bf16 autocast, EMA 0.9999. SLWSHook with P_L = 0.5: layer l shuffles its
# tokens with probability linspace(0, 0.5, 32)[l] in training.
# The class token sits at the head of the sequence (ShuffleMamba follows
# VideoMamba there), not in the middle as in Vim.
# Measured: 74.2 M parameters (B 97.6 M, L 340.0 M).
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    '../_base_/schedules/imagenet_adamw_300e.py',
    'mmpretrain::_base_/default_runtime.py', '../_base_/models/vim_in1k.py'
]
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

model = dict(
    backbone=dict(arch='middle', cls_position='head', drop_path_rate=0.5),
    head=dict(in_channels=576))

train_dataloader = dict(batch_size=128)
optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1))
custom_hooks = [
    dict(type='SLWSHook', prob=0.5),
    dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL')
]
auto_scale_lr = dict(base_batch_size=2048)
