# MambaOut-Tiny on ImageNet-1k, the paper's recipe (Table 5): 300 epochs,
# batch 4096 (32 x 128), AdamW lr 4e-3 (batch/1024 x 1e-3), wd 0.05, 20 warm-up
# epochs, cosine decay, RandAugment 9/0.5, Mixup 0.8, CutMix 1.0, random
# erasing 0.25, label smoothing 0.1, peak drop path 0.2, no EMA, no clipping;
# no weight decay on norms and biases.

_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    '../_base_/schedules/imagenet_adamw_300e.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['mmssm', 'mmssm.cls'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='MambaOut',
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(3, ),
        gap_before_final_norm=True),
    neck=None,
    head=dict(
        type='MambaOutHead',
        num_classes=1000,
        in_channels=576,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]))

train_dataloader = dict(batch_size=128)
optim_wrapper = dict(
    optimizer=dict(lr=4e-3, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=20,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=20)
]
auto_scale_lr = dict(base_batch_size=4096)
