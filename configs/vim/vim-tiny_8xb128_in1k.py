# Vim-Ti on ImageNet-1k, the official recipe (hustvl/Vim scripts/pt-vim-t.sh
# on the DeiT code base): 300 epochs, batch 1024 (8 x 128), AdamW lr
# 5e-4 * 1024 / 512 = 1e-3, wd 0.05, 5 warm-up epochs, cosine decay, drop path
# 0.1, RandAugment / Random Erasing / Mixup 0.8 / CutMix 1.0, label smoothing
# 0.1, EMA, fp32 (--no_amp). Middle class token. No weight decay on A_log,
# A_b_log, D, D_b, pos_embed, cls_token, norms and biases. Measured: 7.15 M
# parameters (paper: 7 M).
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    '../_base_/schedules/imagenet_adamw_300e.py',
    'mmpretrain::_base_/default_runtime.py', '../_base_/models/vim_in1k.py'
]
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

model = dict(
    backbone=dict(arch='tiny', drop_path_rate=0.1),
    head=dict(in_channels=192))

train_dataloader = dict(batch_size=128)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5)
]
custom_hooks = [dict(type='EMAHook', momentum=4e-5, priority='ABOVE_NORMAL')]
