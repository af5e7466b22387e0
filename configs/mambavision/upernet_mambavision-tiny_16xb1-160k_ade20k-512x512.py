# UperNet 160k with MambaVision-T on ADE20K, 512x512 crops: the official
# segmentation recipe (NVlabs/MambaVision semantic_segmentation/configs/
# mamba_vision/mamba_vision_160k_ade20k-512x512_tiny.py, on mmseg's Swin
# UperNet bases): AdamW lr 5e-5, wd 0.01, batch 16 (16 GPUs x 1), linear
# warm-up 1500 iterations then poly decay to 0, windows (8, 8, 64, 32) (a
# 512x512 crop's stage-3/4 maps, 32x32 and 16x16, are zero padded up to one
# window each), a LayerNorm per output, drop path 0.2 (the official config
# writes 0.3, which never reached the backbone: see
# _base_/models/mambavision-dense.py). Departures: A_log and D do not decay
# (see the fragment), fp32 by default (the official runs used AMP:
# tools/train.py --amp). Published: mIoU 46.0.
_base_ = [
    'mmseg::_base_/models/upernet_swin.py', 'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_160k.py',
    '../_base_/models/mambavision-dense.py',
    '../_base_/schedules/upernet_160k_warmup.py'
]
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

crop_size = (512, 512)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _base_.mambavision_backbone,
        window_size=_base_.mambavision_windows['seg']['tiny']),
    decode_head=dict(
        in_channels=_base_.mambavision_widths['tiny'], num_classes=150),
    auxiliary_head=dict(
        in_channels=_base_.mambavision_widths['tiny'][2], num_classes=150))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=5e-5, betas=(0.9, 0.999), weight_decay=0.01),
    constructor='SSMLayerDecayOptimWrapperConstructor',
    paramwise_cfg=_base_.mambavision_dense_paramwise_cfg)
param_scheduler = _base_.upernet_160k_param_scheduler
# 16 GPUs x 1 image
train_dataloader = dict(batch_size=1)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
tta_model = dict(type='SegTTAModel')
