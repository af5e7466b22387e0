# UperNet 160k on ADE20K (512x512 crops) with ViT-Adapter around Vim-Reg-B
# (Mamba-Reg-B), the ShuffleMamba Reg-Adapter-B segmentation recipe
# (ShuffleMamba paper, Table 3): AdamW lr 6e-5, wd 0.01 (no decay
# on norms, embeddings, registers, SSM A/D), batch 16 (8 GPUs x 2), linear
# warm-up 1500 iterations then poly decay, backbone drop path 0.2, no layer
# decay, no SLWS; adapter with 12 deformable heads, deform ratio 0.5, SyncBN;
# UperNet head 512 channels on the 4 maps, FCN auxiliary head on the
# stride-32 map (in_index 3, as the reference config). Sliding-window test
# 512/341. Measured: 144.7 M parameters with the auxiliary head, 142.9 M
# without (ViT-Adapter-B UperNet: 134 M; Vim-Reg-B 96.9 M vs DeiT-B 85.8 M).
_base_ = [
    'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',  # noqa
    '../_base_/models/vim-reg-adapter.py'
]
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

embed_dims = 768
crop_size = (512, 512)
model = dict(
    pretrained=None,
    backbone=_base_.vim_reg_adapter['ade20k'],
    decode_head=dict(
        in_channels=[embed_dims] * 4, channels=512, num_classes=150),
    auxiliary_head=dict(in_channels=embed_dims, in_index=3, num_classes=150),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=6e-5,
        betas=(0.9, 0.999),
        weight_decay=0.01),
    constructor='SSMLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        _delete_=True,
        layer_decay_rate=1.0,
        norm_decay_mult=0.0,
        flat_decay_mult=0.0))
tta_model = dict(type='SegTTAModel')
