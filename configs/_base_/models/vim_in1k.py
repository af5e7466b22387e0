# ImageNet-1k classifier around a plain Vim: the class-token feature, a linear
# head (trunc-normal 0.02 init, label smoothing 0.1) and Mixup 0.8 / CutMix
# 1.0, as in the DeiT-based recipes of Vim and ShuffleMamba. The leaf config
# sets the backbone's arch, drop path and class-token position, and the
# head's in_channels.
model = dict(
    type='ImageClassifier',
    backbone=dict(type='Vim', out_type='cls_token'),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=.02)),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]))
