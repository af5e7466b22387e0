# MambaOut pieces of the COCO (Mask R-CNN) and ADE20K (UperNet) configs,
# taken from `_base_` by the leaf configs: the Tiny backbone (all four stages,
# the author's drop path 0.3), the stage widths, and what the other sizes
# change (drop path 0.4 / 0.5: our choice, the paper does not give them).

# ImageNet weights of the official release (yuweihao/MambaOut, or timm's),
# downloaded by the user, never at run time; converted while loading.
mambaout_pretrained = dict(
    tiny='checkpoints/mambaout_tiny.pth',
    small='checkpoints/mambaout_small.pth',
    base='checkpoints/mambaout_base.pth')
mambaout_widths = dict(
    tiny=[96, 192, 384, 576],
    small=[96, 192, 384, 576],
    base=[128, 256, 512, 768])
mambaout_backbone = dict(
    _delete_=True,
    type='MambaOut',
    arch='tiny',
    drop_path_rate=0.3,
    out_indices=(0, 1, 2, 3),
    init_cfg=dict(type='Pretrained', checkpoint=mambaout_pretrained['tiny']))
# What the backbone of each other size changes in the Tiny one.
mambaout_sizes = dict(
    small=dict(
        arch='small',
        drop_path_rate=0.4,
        init_cfg=dict(
            type='Pretrained', checkpoint=mambaout_pretrained['small'])),
    base=dict(
        arch='base',
        drop_path_rate=0.5,
        init_cfg=dict(
            type='Pretrained', checkpoint=mambaout_pretrained['base'])))
