# Multi-scale + flip test-time augmentation of boxes AND masks for the
# synthetic COCO shapes demo: configs/_base_/tta/det_tta.py with the scales of
# the demo's fixed-size (not aspect-preserving) test resize: 256, 320 and 384
# square resizes x {no flip, horizontal flip} = 6 views.
# A config using it must list 'mmssm.det' in its custom_imports.
_base_ = ['./det_tta.py']

tta_img_scales = [(256, 256), (320, 320), (384, 384)]
tta_pipeline = [
    _base_.tta_pipeline[0],
    dict(
        _base_.tta_pipeline[1],
        transforms=[[
            dict(type='Resize', scale=s, keep_ratio=False)
            for s in tta_img_scales
        ]] + _base_.tta_pipeline[1].transforms[1:])
]
