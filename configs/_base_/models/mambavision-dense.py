# MambaVision pieces of the COCO (Cascade Mask R-CNN 3x, Mask R-CNN 1x) and
# ADE20K (UperNet 160k) configs, taken from `_base_` by the leaf configs: the
# official ImageNet-1k checkpoints, the stage widths, the windows of each
# task and size, and the weight-decay rules of the official dense configs.
#
# Drop path: the official dense configs (NVlabs/MambaVision object_detection/
# and semantic_segmentation/) write drop_path_rate 0.2 (Cascade T), 0.3
# (Cascade S), 0.5 (Cascade B), 0.3 / 0.7 / 0.4 (UperNet T / S / B), but
# their backbone wrapper (`MM_mamba_vision`) does not pass drop_path_rate on
# to `MambaVision`, whose default (0.2) is what every published dense run
# trained with. These configs use that effective 0.2; set
# `model.backbone.drop_path_rate` for the written values.

# The official ImageNet-1k releases (.pth.tar, or the Hugging Face
# model.safetensors copies), downloaded by the user, never at run time;
# converted and loaded strictly (head and final norm dropped, output norms
# initialised).
mambavision_pretrained = dict(
    tiny='checkpoints/mambavision_tiny_1k.pth.tar',
    small='checkpoints/mambavision_small_1k.pth.tar',
    base='checkpoints/mambavision_base_1k.pth.tar')
mambavision_widths = dict(
    tiny=[80, 160, 320, 640],
    small=[96, 192, 384, 768],
    base=[128, 256, 512, 1024])
# Windows of stages 1-4 (stages 1-2 are convolutional and ignore theirs). A
# map smaller than the window is zero padded up to it: with the detection
# windows, stages 3-4 of a 1333x800 image (42x25 and 21x13 positions) run as
# one 112x112 / 56x56 window each.
mambavision_windows = dict(
    det=(8, 8, 112, 56),
    seg=dict(tiny=(8, 8, 64, 32), small=(8, 8, 160, 56), base=(8, 8, 64, 32)))

mambavision_backbone = dict(
    _delete_=True,
    type='MambaVision',
    arch='tiny',
    window_size=mambavision_windows['det'],
    drop_path_rate=0.2,  # the effective official value (see above)
    out_indices=(0, 1, 2, 3),  # each output through its LayerNorm outnorm{i}
    init_cfg=dict(
        type='Pretrained', checkpoint=mambavision_pretrained['tiny']))


def _pretrained(name):
    return dict(type='Pretrained', checkpoint=mambavision_pretrained[name])


# What a COCO config of each size changes in the Tiny one.
mambavision_det = dict(
    small=dict(
        backbone=dict(arch='small', init_cfg=_pretrained('small')),
        neck=dict(in_channels=mambavision_widths['small'])),
    base=dict(
        backbone=dict(arch='base', init_cfg=_pretrained('base')),
        neck=dict(in_channels=mambavision_widths['base'])))
# What an UperNet config of each size changes in the Tiny one.
mambavision_seg = {
    size: dict(
        backbone=dict(
            arch=size,
            window_size=mambavision_windows['seg'][size],
            init_cfg=_pretrained(size)),
        decode_head=dict(in_channels=mambavision_widths[size]),
        auxiliary_head=dict(in_channels=mambavision_widths[size][2]))
    for size in ('small', 'base')
}

# The official dense configs exempt from weight decay every parameter whose
# name contains 'norm' (mmengine's custom_keys): the backbone's block norms
# and output norms; the stem's BatchNorms (patch_embed.conv_down.1/.4) and
# the heads' BatchNorms (named `bn`) decay, and so do biases and layer
# scales. The same with mmssm's constructor (norms exempt, 1-D parameters
# decaying, the two named exceptions decaying again), except that A_log and D
# never decay (mmssm's one no-weight-decay rule; the official constructor
# decays them).
# (The leaf configs replace the whole optim_wrapper.)
mambavision_dense_paramwise_cfg = dict(
    layer_decay_rate=1.0,
    norm_decay_mult=0.0,
    flat_decay_mult=1.0,
    custom_keys={
        'patch_embed.conv_down': dict(decay_mult=1.0),
        '.bn.': dict(decay_mult=1.0)
    })
