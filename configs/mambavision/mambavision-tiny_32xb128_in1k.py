# MambaVision-T on ImageNet-1k, the official recipe as recorded in the
# released run arguments (NVlabs/MambaVision mambavision/configs/
# mambavision_tiny_1k.yaml): LAMB lr 5e-3, wd 0.05, 128 images per GPU, 300
# epochs of cosine decay to 5e-6 after 20 warm-up epochs from 1e-6, then 10
# cool-down epochs at 5e-6 (310 in all), grad clipping 5, RandAugment
# m9-mstd0.5, random erasing 0.25, Mixup 0.8, CutMix 1.0, label smoothing 0.1,
# drop path 0.2, EMA 0.9998; evaluation at 224 with crop_pct 1.0. The GPU
# count is not in the yaml: 32 (a batch of 4096) is our reading of the paper,
# not checked against the code. Not reproduced: the run's MESA
# self-distillation (mesa 0.5 from 25 % of training), and timm's LAMB differs
# from mmpretrain's in details (bias correction, trust-ratio clipping).
# No weight decay on norms, biases, A_log and D (mmssm's optimizer
# constructor, _base_/schedules/imagenet_adamw_300e.py).
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    '../_base_/schedules/imagenet_adamw_300e.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='MambaVision',
        arch='tiny',
        out_type='avgpool',  # the official final BatchNorm + average pooling
        out_indices=(3, ),
        drop_path_rate=0.2),
    neck=None,
    head=dict(
        type='LinearClsHead',  # the official `head`; keys head.fc.*
        num_classes=1000,
        in_channels=640,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=.02, bias=0.)),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]))

# crop_pct 1.0 (the official T evaluation): resize the short side to 224
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='ResizeEdge',
        scale=224,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

train_dataloader = dict(batch_size=128)
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='Lamb', lr=5e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=2e-4,  # 1e-6 / 5e-3
        by_epoch=True,
        end=20,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=5e-6,
        by_epoch=True,
        begin=20,
        end=300,
        convert_to_iter_based=True),
    # epochs 300-310: no scheduler, the lr stays at eta_min (the cool-down)
]
train_cfg = dict(by_epoch=True, max_epochs=310, val_interval=1)
custom_hooks = [dict(type='EMAHook', momentum=2e-4, priority='ABOVE_NORMAL')]
auto_scale_lr = dict(base_batch_size=4096)
