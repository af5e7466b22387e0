# Mask R-CNN 1x with MambaVision-T on COCO: mmssm's common 1x recipe
# (_base_/recipe_mask-rcnn_fpn_adamw-1x_coco.py: AdamW lr 1e-4, wd 0.05,
# batch 16, 12 epochs, single-scale 1333x800 training), so that the family
# sits in the same table as the others. The backbone is the official
# detection one (NVlabs/MambaVision object_detection: windows (8, 8, 112, 56),
# i.e. global attention and scan over the stage-3/4 maps of a 1333x800
# image, zero padded up to the window; a LayerNorm per output; drop path 0.2;
# BatchNorms trained, as there). The official detection configs are Cascade
# Mask R-CNN 3x; this Mask R-CNN 1x config is ours.
_base_ = ['../_base_/recipe_mask-rcnn_fpn_adamw-1x_coco.py']
custom_imports = dict(
    imports=['mmssm', 'mmssm.det'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='MambaVision',
        arch='tiny',
        window_size=(8, 8, 112, 56),
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        # the official ImageNet-1k release (.pth.tar or the Hugging Face
        # model.safetensors), downloaded by the user; converted and loaded
        # strictly (head and final norm dropped, output norms initialised)
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/mambavision_tiny_1k.pth.tar')),
    neck=dict(in_channels=[80, 160, 320, 640]))
