# Mask R-CNN 1x with Vim-Ti on COCO (1333x800, 12 epochs, steps at 8 and 11,
# AdamW lr 1e-4, wd 0.05, batch 16: _base_/schedules/adamw_1x.py), the
# plain backbone's last layer made into a pyramid by the ViTDet simple
# feature pyramid (5 levels for the RPN), layer-wise lr decay 0.837 as in the
# Vim detection recipe. The paper has no Mask R-CNN 1x result for Vim: this is
# the comparison setting of the hierarchical backbones of mmssm.
_base_ = ['../_base_/recipe_mask-rcnn_fpn_adamw-1x_coco.py']
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

pretrained = 'checkpoints/vim_t_midclstok_76p1acc.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='Vim',
        arch='tiny',
        img_size=(800, 1344),
        out_indices=(23, ),
        with_cls_token=False,
        final_norm=False,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(
        _delete_=True,
        type='SimpleFeaturePyramid',
        in_channels=192,
        out_channels=256,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        num_outs=5,
        norm_cfg=dict(type='LN2d', eps=1e-6)))

optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.837))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=1000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True,
         milestones=[8, 11], gamma=0.1)
]
# 8 GPUs x 2 images
auto_scale_lr = dict(enable=False, base_batch_size=16)
