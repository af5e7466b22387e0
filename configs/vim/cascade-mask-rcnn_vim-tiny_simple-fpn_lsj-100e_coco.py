# Cascade Mask R-CNN, ViTDet style, with Vim-Ti on COCO: large-scale jitter
# (LSJ) 1024x1024 crops, the "100 epoch" schedule of mmdet's lsj-100e base,
# AdamW lr 1e-4, wd 0.1, batch 64, layer-wise lr decay 0.837 (the official Vim
# detection recipe, whose decay never applied because of a name mismatch; here
# it applies to `backbone.layers`). The plain backbone's last layer
# (residual stream, no final norm, no class token, as the official
# `last_layer_process='add'`) feeds a simple feature pyramid (scales 4, 2, 1,
# 0.5 + an extra max-pooled level, LayerNorm, 256 channels); RPN with 2 convs,
# 4conv1fc box heads and mask head with LayerNorm.
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py',
    'mmdet::common/lsj-100e_coco-instance.py',
    '../_base_/tta/det_tta.py'
]
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

# Official ImageNet weights (hustvl/Vim-tiny-midclstok), downloaded by the
# user; the class-token row is dropped from the middle of pos_embed and the
# 14x14 grid resized to 64x64 while loading.
pretrained = 'checkpoints/vim_t_midclstok_76p1acc.pth'
embed_dims = 192
image_size = (1024, 1024)
norm_cfg = dict(type='LN2d', eps=1e-6, requires_grad=True)


def _box_head(stds):
    return dict(
        type='Shared4Conv1FCBBoxHead',
        in_channels=256,
        conv_out_channels=256,
        fc_out_channels=1024,
        roi_feat_size=7,
        num_classes=80,
        norm_cfg=norm_cfg,
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[0., 0., 0., 0.],
            target_stds=stds),
        reg_class_agnostic=True,
        loss_cls=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))


model = dict(
    data_preprocessor=dict(
        pad_size_divisor=32,
        batch_augments=[
            dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)
        ]),
    backbone=dict(
        _delete_=True,
        type='Vim',
        arch='tiny',
        img_size=image_size,
        out_indices=(23, ),
        with_cls_token=False,
        final_norm=False,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(
        _delete_=True,
        type='SimpleFeaturePyramid',
        in_channels=embed_dims,
        out_channels=256,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        num_outs=5,
        norm_cfg=norm_cfg),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=[
            _box_head([0.1, 0.1, 0.2, 0.2]),
            _box_head([0.05, 0.05, 0.1, 0.1]),
            _box_head([0.033, 0.033, 0.067, 0.067])
        ],
        mask_head=dict(norm_cfg=norm_cfg)))

test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
# 16 GPUs x 4 images = 64
train_dataloader = dict(batch_size=4, num_workers=4)
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=1e-4,
        betas=(0.9, 0.999),
        weight_decay=0.1),
    constructor='SSMLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.837, norm_decay_mult=0.0, flat_decay_mult=0.0))
auto_scale_lr = dict(enable=False, base_batch_size=64)
