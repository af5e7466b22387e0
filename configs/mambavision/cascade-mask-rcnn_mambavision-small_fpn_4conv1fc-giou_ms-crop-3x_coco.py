# Cascade Mask R-CNN 3x with MambaVision-S on COCO: the official recipe of the
# Tiny config with the Small backbone (official config
# cascade_mask_rcnn_mamba_vision_small_3x_coco.py: same schedule and lr 1e-4;
# its written drop_path_rate 0.3 never reached the backbone, 0.2 here).
# Published: box AP 52.3, mask AP 45.2.
_base_ = ['./cascade-mask-rcnn_mambavision-tiny_fpn_4conv1fc-giou_ms-crop-3x_coco.py']  # noqa
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

model = _base_.mambavision_det['small']
