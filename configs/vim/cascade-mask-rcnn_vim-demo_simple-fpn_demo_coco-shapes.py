# CPU demo: Cascade Mask R-CNN, ViTDet style (simple feature pyramid, LN in
# the pyramid and mask head), with a small Vim (96 wide, 6 layers, d_state 8,
# 16x16 patches at stride 8) trained from scratch on the synthetic COCO shapes,
# with the SLWS hook (P_L 0.2) and layer-wise lr decay 0.9. Light heads for the
# CPU: 128-channel pyramid (rescales 2, 1, 0.5, 0.25 of the stride-8 map give
# strides 4-32), fewer proposals and sampled RoIs, 2-fc box heads.
# `python tools/train.py <this config>`.
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py',
    '../_base_/datasets/coco-shapes_instance.py',
    '../_base_/demo_runtime_det.py',
    '../_base_/tta/det_tta_coco-shapes.py'
]
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

num_classes = 5
channels = 128
norm_cfg = dict(type='LN2d', eps=1e-6, requires_grad=True)


def _box_head(stds):
    # Light 2-fc box heads (mmdet's Cascade Mask R-CNN) for the CPU; the
    # COCO configs use ViTDet's 4conv1fc heads with LN.
    return dict(
        type='Shared2FCBBoxHead',
        in_channels=channels,
        fc_out_channels=256,
        roi_feat_size=7,
        num_classes=num_classes,
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[0., 0., 0., 0.],
            target_stds=stds),
        reg_class_agnostic=True,
        loss_cls=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))


model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(
        _delete_=True,
        type='Vim',
        arch=dict(embed_dims=96, num_layers=6, d_state=8),
        img_size=320,
        stride=8,
        out_indices=(5, ),
        with_cls_token=False,
        final_norm=False,
        drop_path_rate=0.0),
    neck=dict(
        _delete_=True,
        type='SimpleFeaturePyramid',
        in_channels=96,
        out_channels=channels,
        scale_factors=(2.0, 1.0, 0.5, 0.25),
        num_outs=5,
        norm_cfg=norm_cfg),
    rpn_head=dict(
        num_convs=2,
        in_channels=channels,
        feat_channels=channels,
        anchor_generator=dict(scales=[4], strides=[4, 8, 16, 32, 64])),
    roi_head=dict(
        bbox_roi_extractor=dict(
            out_channels=channels, roi_layer=dict(sampling_ratio=2)),
        bbox_head=[
            _box_head([0.1, 0.1, 0.2, 0.2]),
            _box_head([0.05, 0.05, 0.1, 0.1]),
            _box_head([0.033, 0.033, 0.067, 0.067])
        ],
        mask_roi_extractor=dict(
            out_channels=channels, roi_layer=dict(sampling_ratio=2)),
        mask_head=dict(
            num_convs=2,
            in_channels=channels,
            conv_out_channels=channels,
            num_classes=num_classes,
            norm_cfg=norm_cfg)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=128)),
        rpn_proposal=dict(nms_pre=600, max_per_img=300),
        rcnn=[
            dict(
                assigner=dict(
                    type='MaxIoUAssigner',
                    pos_iou_thr=thr,
                    neg_iou_thr=thr,
                    min_pos_iou=thr,
                    match_low_quality=False,
                    ignore_iof_thr=-1),
                sampler=dict(
                    type='RandomSampler',
                    num=64,
                    pos_fraction=0.25,
                    neg_pos_ub=-1,
                    add_gt_as_proposals=True),
                mask_size=28,
                pos_weight=-1,
                debug=False) for thr in (0.5, 0.6, 0.7)
        ]),
    test_cfg=dict(
        rpn=dict(nms_pre=300, max_per_img=100),
        rcnn=dict(max_per_img=20)))

optim_wrapper = dict(
    constructor='SSMLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        _delete_=True,
        layer_decay_rate=0.9,
        norm_decay_mult=0.0,
        flat_decay_mult=0.0))
custom_hooks = [dict(type='SLWSHook', prob=0.2, log_interval=100),
                dict(type='NonFiniteGuardHook')]
