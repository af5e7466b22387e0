# GroupMamba-T on ImageNet-1k with hard distillation from RegNetY-16G, the
# official recipe (Amshaker/GroupMamba classification/train.py and config.py):
# 300 epochs, batch 1024 (8 x 128), AdamW lr 1e-3 wd 0.05, 20 warm-up epochs,
# cosine decay, grad clip 5, RandAugment/Random Erasing/Mixup 0.8/CutMix 1.0,
# label smoothing 0.1, drop path 0.05, EMA 0.9999, 224x224.
#
# How the teacher is wired: `DistillImageClassifier` (mmssm.cls) builds the
# `teacher` config from mmpretrain's registry -- here `TimmClassifier`, which
# wraps timm's `regnety_160` (so this config needs `pip install timm`) -- and
# loads `teacher_checkpoint` (DeiT's RegNetY-16G teacher, the file the
# official code uses: regnety_160-a5fe301d.pth, downloaded by the user). The
# teacher is frozen, kept out of the state dict and the optimizer, and sees
# the same normalised, Mixup/CutMix-ed batch as the student. The student has
# a class head and a distillation head (`GroupMambaDistHead`); the loss is
# `HardDistillationLoss`: (1 - alpha) * CE(class head, labels)
# + alpha * CE(distillation head, teacher arg-max), alpha 0.5; inference
# averages the two heads' logits.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    '../_base_/schedules/imagenet_adamw_300e.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(
    imports=['mmssm', 'mmssm.cls'], allow_failed_imports=False)

model = dict(
    type='DistillImageClassifier',
    backbone=dict(
        type='GroupMamba',
        arch='tiny',
        out_type='cls_token',
        out_indices=(3, ),
        drop_path_rate=0.05),
    head=dict(
        type='GroupMambaDistHead',
        num_classes=1000,
        in_channels=448,
        loss=dict(
            type='HardDistillationLoss', alpha=0.5, label_smoothing=0.1)),
    teacher=dict(
        type='TimmClassifier', model_name='regnety_160', pretrained=False),
    teacher_checkpoint='checkpoints/regnety_160-a5fe301d.pth',
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]))

train_dataloader = dict(batch_size=128)
# no weight decay on norms, biases and 1-D parameters, A_logs and Ds (the
# optimizer constructor of _base_/schedules/imagenet_adamw_300e.py)
optim_wrapper = dict(clip_grad=dict(max_norm=5.0))
custom_hooks = [dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL')]
