# Mask R-CNN 1x on COCO with ViT-Adapter around Vim-Reg-B (Mamba-Reg-B: 768
# wide, 24 layers, 12 registers), the recipe of ShuffleMamba's
# Reg-Adapter-B detector (ShuffleMamba paper, Table 4): 1333x800,
# 12 epochs, steps at 8 and 11, AdamW lr 1e-4 wd 0.05, batch 16 (8 GPUs x 2),
# 1000-iteration linear warm-up, layer-wise lr decay 0.9, backbone drop path
# 0.3, no SLWS in fine-tuning; adapter with 12 deformable heads, 4 points,
# deform ratio 0.5, ConvFFN ratio 0.25, interactions [[0, 5], [6, 11],
# [12, 17], [18, 23]], SyncBN; FPN (SyncBN) on the 4 maps.
# The registers are kept in the sequence (Mamba-Reg weights load with no
# missing key) and dropped from the spatial maps. Measured: 131.2 M
# parameters (ViT-Adapter-B Mask R-CNN: 120 M; the difference is Vim-Reg-B
# 96.9 M vs DeiT-B 85.8 M: the adapter and heads are the same size).
_base_ = [
    '../_base_/recipe_mask-rcnn_fpn_adamw-1x_coco.py',
    '../_base_/models/vim-reg-adapter.py'
]
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

embed_dims = 768
model = dict(
    backbone=_base_.vim_reg_adapter['coco'],
    neck=dict(
        type='FPN',
        in_channels=[embed_dims] * 4,
        out_channels=256,
        num_outs=5,
        norm_cfg=dict(type='SyncBN', requires_grad=True)))

optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.9))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=1000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True,
         milestones=[8, 11], gamma=0.1)
]
train_dataloader = dict(batch_size=2, num_workers=4)
# 8 GPUs x 2 images
auto_scale_lr = dict(enable=False, base_batch_size=16)
