# Recipe: Mask R-CNN with FPN on COCO, the common 1x recipe of the mmssm
# detectors (_base_/schedules/adamw_1x.py) and the multi-scale + flip TTA;
# the leaf config sets the backbone, the neck's inputs and its custom_imports
# (['mmssm', 'mmssm.det']).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    './schedules/adamw_1x.py',
    'mmdet::_base_/default_runtime.py',
    './tta/det_tta.py',
]
