# GroupMamba pieces of the COCO (Mask R-CNN) and ADE20K (UperNet) configs,
# taken from `_base_` by the leaf configs: the Tiny backbone, what each size
# changes (stage widths feed the FPN / UperNet heads), and the optimizer
# settings. GroupMamba released no dense code: the configs follow the Swin
# recipes of mmdet and mmseg (the paper's choice), with drop path rates of
# Swin (Tiny 0.2 on COCO, 0.3 otherwise: our choice).

# Official ImageNet EMA weights (Amshaker/GroupMamba), downloaded by the user
# and converted while loading (or with tools/model_converters/
# groupmamba2mmssm.py). No official weights exist for the ss2d4 variant:
# pre-train it with groupmamba-ss2d4-tiny_distill-regnety160_8xb128_in1k.py.
groupmamba_pretrained = dict(
    tiny='checkpoints/groupmamba_tiny.pth',
    small='checkpoints/groupmamba_small.pth',
    base='checkpoints/groupmamba_base.pth',
    ss2d4_tiny='checkpoints/groupmamba-ss2d4-tiny_in1k.pth')
groupmamba_widths = dict(
    tiny=[64, 128, 348, 448],
    small=[64, 128, 348, 512],
    base=[96, 192, 424, 512])

groupmamba_backbone = dict(
    _delete_=True,
    type='GroupMamba',
    arch='tiny',
    drop_path_rate=0.3,
    norm_eval=True,  # stem BatchNorms keep their ImageNet statistics
    out_indices=(0, 1, 2, 3),
    init_cfg=dict(type='Pretrained', checkpoint=groupmamba_pretrained['tiny']))


def _pretrained(name):
    return dict(type='Pretrained', checkpoint=groupmamba_pretrained[name])


# What a Mask R-CNN config of each size changes in the Tiny one.
groupmamba_det = dict(
    small=dict(
        backbone=dict(
            arch='small', drop_path_rate=0.3, init_cfg=_pretrained('small')),
        neck=dict(in_channels=groupmamba_widths['small'])),
    base=dict(
        backbone=dict(
            arch='base', drop_path_rate=0.3, init_cfg=_pretrained('base')),
        neck=dict(in_channels=groupmamba_widths['base'])),
    ss2d4_tiny=dict(
        backbone=dict(mixer='ss2d4', init_cfg=_pretrained('ss2d4_tiny'))))
# What an UperNet config of each size changes in the Tiny one.
groupmamba_seg = dict(
    small=dict(
        backbone=dict(arch='small', init_cfg=_pretrained('small')),
        decode_head=dict(in_channels=groupmamba_widths['small']),
        auxiliary_head=dict(in_channels=groupmamba_widths['small'][2])),
    base=dict(
        backbone=dict(arch='base', init_cfg=_pretrained('base')),
        decode_head=dict(in_channels=groupmamba_widths['base']),
        auxiliary_head=dict(in_channels=groupmamba_widths['base'][2])),
    ss2d4_tiny=dict(
        backbone=dict(mixer='ss2d4', init_cfg=_pretrained('ss2d4_tiny'))))

# mmssm's optimizer constructor (no layer decay): no weight decay on norms,
# A_logs, Ds and skip_scale; biases decay, as in the Swin recipes. Those
# recipes exempt parameters whose name contains 'norm', which leaves the
# BatchNorms (named 'bn': the stem's, UperNet's heads) decaying; kept so that
# the recipe is the one these configs always had.
groupmamba_optim_wrapper = dict(
    constructor='SSMLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        _delete_=True,
        layer_decay_rate=1.0,
        norm_decay_mult=0.0,
        flat_decay_mult=1.0,
        custom_keys={'.bn.': dict(decay_mult=1.0)}))
