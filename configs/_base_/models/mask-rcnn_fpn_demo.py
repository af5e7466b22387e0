# Mask R-CNN with light heads for CPU demos on small images: a 128-channel
# FPN, fewer proposals and sampled RoIs, narrow box/mask heads. The backbone
# is set by the leaf config.
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py']

num_classes = 5
model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    neck=dict(out_channels=128),
    rpn_head=dict(
        in_channels=128,
        feat_channels=128,
        anchor_generator=dict(scales=[4], strides=[4, 8, 16, 32, 64])),
    roi_head=dict(
        # a fixed 2x2 sampling grid bounds CPU RoIAlign cost on large RoIs
        bbox_roi_extractor=dict(
            out_channels=128, roi_layer=dict(sampling_ratio=2)),
        bbox_head=dict(
            in_channels=128, fc_out_channels=256, num_classes=num_classes),
        mask_roi_extractor=dict(
            out_channels=128, roi_layer=dict(sampling_ratio=2)),
        mask_head=dict(
            num_convs=2,
            in_channels=128,
            conv_out_channels=128,
            num_classes=num_classes)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=128)),
        rpn_proposal=dict(nms_pre=600, max_per_img=300),
        rcnn=dict(sampler=dict(num=128), mask_size=28)),
    test_cfg=dict(
        rpn=dict(nms_pre=300, max_per_img=100),
        rcnn=dict(max_per_img=20)))
