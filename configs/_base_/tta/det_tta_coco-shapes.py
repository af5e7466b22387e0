# Multi-scale + flip test-time augmentation of boxes AND masks for the
# synthetic COCO shapes demo (single-scale test: fixed 320x320 resize):
# 256, 320 and 384 square resizes x {no flip, horizontal flip} = 6 views,
# merged by mmssm's DetTTAModelWithMasks (see configs/_base_/tta/det_tta.py).
# A config using it must list 'mmssm.det' in its custom_imports.
tta_model = dict(
    type='DetTTAModelWithMasks',
    tta_cfg=dict(
        nms=dict(type='nms', iou_threshold=0.5),
        max_per_img=100,
        mask_merge='mean'))
tta_img_scales = [(256, 256), (320, 320), (384, 384)]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale=s, keep_ratio=False)
             for s in tta_img_scales],
            [
                dict(type='RandomFlip', prob=0.),
                dict(type='RandomFlip', prob=1., direction='horizontal')
            ],
            [
                dict(
                    type='PackDetInputs',
                    meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                               'scale_factor', 'flip', 'flip_direction'))
            ]
        ])
]
