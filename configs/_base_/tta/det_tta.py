# Multi-scale + flip test-time augmentation of boxes AND masks for COCO
# (`tools/test.py CONFIG CKPT --tta`): three scales of the 1333x800 test
# scale (shorter side 640, 800, 960, longer side <= 1333) x {no flip,
# horizontal flip} = 6 views per image, merged by mmssm's
# DetTTAModelWithMasks (class-wise NMS of the un-flipped boxes; the kept
# instance's mask is the mean of the soft masks of every view's detections
# clustered to it, binarised at the detector's mask_thr_binary).
# A config using it must list 'mmssm.det' in its custom_imports.
tta_model = dict(
    type='DetTTAModelWithMasks',
    tta_cfg=dict(
        nms=dict(type='nms', iou_threshold=0.5),
        max_per_img=100,
        mask_merge='mean'))
tta_img_scales = [(1333, 640), (1333, 800), (1333, 960)]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale=s, keep_ratio=True)
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
