# UperNet 160k with GroupMamba-T on ADE20K, 512x512 crops: the Swin recipe the
# paper follows (mmseg's Swin-T config: AdamW lr 6e-5, wd 0.01, batch 16,
# linear warm-up 1500 iterations, poly decay). drop_path_rate 0.3 (Swin-T's
# value) is our choice; GroupMamba released no segmentation code.
_base_ = [
    'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'  # noqa
]
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

# Official ImageNet EMA weights, downloaded by the user, converted on the fly.
pretrained = 'checkpoints/groupmamba_tiny.pth'
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='GroupMamba',
        arch='tiny',
        drop_path_rate=0.3,
        norm_eval=True,  # stem BatchNorms keep their ImageNet statistics
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[64, 128, 348, 448], num_classes=150),
    auxiliary_head=dict(in_channels=348, num_classes=150))

optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'norm': dict(decay_mult=0.),
            'A_logs': dict(decay_mult=0.),
            '.Ds': dict(decay_mult=0.),
            'skip_scale': dict(decay_mult=0.),
        }))
tta_model = dict(type='SegTTAModel')
