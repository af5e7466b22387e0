# ShuffleMamba-B (plain Vim, 768 wide, 24 layers) with SLWS P_L = 0.5: the
# ShuffleMamba-M recipe (batch 2048, 300 epochs, drop path 0.5).
_base_ = ['./shufflemamba-middle_slws_16xb128_in1k.py']
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

model = dict(backbone=dict(arch='base'), head=dict(in_channels=768))
custom_hooks = [
    dict(type='SLWSHook', prob=0.5),
    dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL')
]
