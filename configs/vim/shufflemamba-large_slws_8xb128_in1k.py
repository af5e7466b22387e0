# ShuffleMamba-L (plain Vim, 1024 wide, 48 layers) with SLWS P_L = 0.6: 200
# epochs, batch 1024 (8 x 128), drop path 0.6; otherwise the ShuffleMamba-M
# recipe.
_base_ = ['./shufflemamba-middle_slws_16xb128_in1k.py']
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

model = dict(
    backbone=dict(arch='large', drop_path_rate=0.6),
    head=dict(in_channels=1024))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=20,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=20)
]
train_cfg = dict(max_epochs=200)
custom_hooks = [
    dict(type='SLWSHook', prob=0.6),
    dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL')
]
auto_scale_lr = dict(base_batch_size=1024)
