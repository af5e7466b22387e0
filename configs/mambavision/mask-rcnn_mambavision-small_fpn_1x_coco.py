# Mask R-CNN 1x with MambaVision-S on COCO: the recipe of the Tiny config
# (mmssm's common 1x recipe, ours; the official detection configs are Cascade
# Mask R-CNN 3x) with the Small backbone, official detection windows
# (8, 8, 112, 56) and drop path 0.2 (the effective value of the official
# dense runs, _base_/models/mambavision-dense.py).
_base_ = [
    './mask-rcnn_mambavision-tiny_fpn_1x_coco.py',
    '../_base_/models/mambavision-dense.py'
]
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

model = _base_.mambavision_det['small']
