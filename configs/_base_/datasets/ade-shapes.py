# Synthetic ADE20K-layout semantic segmentation (mmssm demo): label 0 is
# "other" and is ignored (reduce_zero_label=True), as in ADE20K.
# Generate it with `python tools/misc/generate_synthetic_data.py`.
# mmseg's ADE20KDataset only accepts ADE20K's own class names, so the generic
# BaseSegDataset is used with the same file layout and label convention.
_base_ = ['mmseg::_base_/datasets/ade20k.py']
dataset_type = 'BaseSegDataset'

data_root = 'data/synthetic/ade_shapes'
metainfo = dict(  # = mmssm.datasets.ADE_SHAPES_METAINFO (a test checks it)
    classes=('sky', 'grass', 'water', 'sand', 'circle', 'rectangle',
             'triangle'),
    palette=[(135, 206, 235), (34, 139, 34), (0, 70, 160), (238, 214, 175),
             (220, 20, 60), (255, 140, 0), (145, 30, 180)])
crop_size = (256, 256)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(
        type='RandomResize',
        scale=(512, 256),
        ratio_range=(0.75, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(512, 256), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[[
            dict(type='Resize', scale_factor=r, keep_ratio=True)
            for r in img_ratios
        ],
                    [
                        dict(type='RandomFlip', prob=0., direction='horizontal'),
                        dict(type='RandomFlip', prob=1., direction='horizontal')
                    ], [dict(type='LoadAnnotations')],
                    [dict(type='PackSegInputs')]])
]
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        img_suffix='.jpg',
        seg_map_suffix='.png',
        reduce_zero_label=True,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        img_suffix='.jpg',
        seg_map_suffix='.png',
        reduce_zero_label=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
