# UperNet 160k with MambaOut-Tiny on ADE20K (the author's recipe: AdamW lr
# 1e-4, batch 16, 160k iterations, per-stage output LayerNorm, no layer decay,
# drop_path_rate 0.3). No weight decay on norms and biases (mmssm's optimizer
# constructor, layer decay 1).
_base_ = [
    'mmseg::_base_/models/upernet_swin.py', 'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_160k.py',
    '../_base_/models/mambaout-dense.py',
    '../_base_/schedules/upernet_160k_warmup.py'
]
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

crop_size = (512, 512)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=_base_.mambaout_backbone,
    decode_head=dict(
        in_channels=_base_.mambaout_widths['tiny'], num_classes=150),
    auxiliary_head=dict(
        in_channels=_base_.mambaout_widths['tiny'][2], num_classes=150))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='SSMLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=1.0, norm_decay_mult=0.0, flat_decay_mult=0.0))
param_scheduler = _base_.upernet_160k_param_scheduler
# 4 GPUs x 4 images
train_dataloader = dict(batch_size=4)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
tta_model = dict(type='SegTTAModel')
