# Cascade Mask R-CNN 3x with MambaVision-T on COCO, the official detection
# recipe (NVlabs/MambaVision object_detection/configs/mamba_vision/
# cascade_mask_rcnn_mamba_vision_tiny_3x_coco.py), which is mmdet's ConvNeXt
# Cascade recipe taken here as the base: four-conv-one-fc box heads with
# SyncBN and GIoU loss (weight 10, class-specific, decoded boxes), multi-scale
# 480-800 training with the DETR crop branch, 36 epochs, steps at 27 and 33,
# 1000-iteration linear warm-up, AdamW lr 1e-4, wd 0.05, batch 16 (8 GPUs x
# 2). The backbone is the official detection one: windows (8, 8, 112, 56)
# (global attention and scan over the stage-3/4 maps of a 1333x800 image,
# zero padded up to the window), a LayerNorm per output, BatchNorms trained,
# no frozen stages, drop path 0.2 (the effective official value, see
# _base_/models/mambavision-dense.py). Departures: no layer-wise lr decay (the
# ConvNeXt base's is removed, as in the official config), A_log and D do not
# decay (see the fragment), fp32 by default (the official runs used AMP:
# tools/train.py --amp). Published: box AP 51.1, mask AP 44.3.
_base_ = [
    'mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py',  # noqa
    '../_base_/tta/det_tta.py', '../_base_/models/mambavision-dense.py'
]
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

model = dict(
    backbone=_base_.mambavision_backbone,
    neck=dict(in_channels=_base_.mambavision_widths['tiny']))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='SSMLayerDecayOptimWrapperConstructor',
    paramwise_cfg=_base_.mambavision_dense_paramwise_cfg)
# 8 GPUs x 2 images
auto_scale_lr = dict(enable=False, base_batch_size=16)
