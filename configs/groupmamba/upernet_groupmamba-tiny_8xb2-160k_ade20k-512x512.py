# UperNet 160k with GroupMamba-T on ADE20K, 512x512 crops: the Swin recipe the
# paper follows (mmseg's Swin-T config: AdamW lr 6e-5, wd 0.01, batch 16,
# linear warm-up 1500 iterations, poly decay). drop_path_rate 0.3 (Swin-T's
# value) is our choice; GroupMamba released no segmentation code. No weight
# decay on norms, A_logs, Ds and skip_scale.
_base_ = [
    'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',  # noqa
    '../_base_/models/groupmamba-dense.py'
]
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

model = dict(
    pretrained=None,
    backbone=_base_.groupmamba_backbone,
    decode_head=dict(
        in_channels=_base_.groupmamba_widths['tiny'], num_classes=150),
    auxiliary_head=dict(
        in_channels=_base_.groupmamba_widths['tiny'][2], num_classes=150))
optim_wrapper = _base_.groupmamba_optim_wrapper
tta_model = dict(type='SegTTAModel')
