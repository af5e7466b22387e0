# ViT-Adapter around Vim-Reg-B (Mamba-Reg-B: 768 wide, 24 layers, 12
# registers), the adapter of ShuffleMamba's Reg-Adapter-B (COCO and ADE20K):
# 12 deformable heads, 4 points, deform ratio 0.5, ConvFFN ratio 0.25,
# interactions [[0, 5], [6, 11], [12, 17], [18, 23]], SyncBN. The registers
# stay in the sequence (Mamba-Reg weights load with no missing key) and are
# dropped from the spatial maps. One drop path rate for Vim and the adapter:
# 0.3 in the COCO recipe, 0.2 in the ADE20K one. Taken from `_base_` by the
# leaf configs (`vim_reg_adapter['coco']`), which set the other sizes.

# Official Mamba-Reg weights, downloaded by the user from
# https://huggingface.co/Wangf3014/Mamba-Reg/resolve/main/mambar_base_patch16_224.pth  # noqa: E501
# (loaded as they are, or after tools/model_converters/vim2mmssm.py).


def _adapter(drop_path_rate):
    return dict(
        _delete_=True,
        type='PlainAdapter',
        backbone=dict(
            type='Vim',
            arch='reg-base',
            img_size=224,  # pos_embed kept at 14x14, resized online
            drop_path_rate=drop_path_rate,
            init_cfg=dict(
                type='Pretrained',
                checkpoint='checkpoints/mambar_base_patch16_224.pth')),
        conv_inplane=64,
        num_points=4,
        deform_num_heads=12,
        deform_ratio=0.5,
        cffn_ratio=0.25,
        init_values=0.,
        interaction_indexes=[[0, 5], [6, 11], [12, 17], [18, 23]],
        drop_path_rate=drop_path_rate,
        norm_cfg=dict(type='SyncBN', requires_grad=True))


vim_reg_adapter = dict(coco=_adapter(0.3), ade20k=_adapter(0.2))
