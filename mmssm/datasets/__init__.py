"""Synthetic demo datasets and data-root checks (no mmdet/mmseg imports)."""
from .checks import (DATA_KINDS, check_data_root, check_dataset_paths,
                     data_hint, guess_data_kind)
from .synthetic import (ADE_SHAPES_CLASSES, ADE_SHAPES_METAINFO,
                        ADE_SHAPES_PALETTE, SHAPES_CLASSES, SHAPES_METAINFO,
                        SHAPES_PALETTE, generate_ade_shapes, generate_all,
                        generate_coco_shapes, make_ade_sample,
                        make_shapes_sample, mask_to_polygons)

__all__ = [
    'DATA_KINDS', 'check_data_root', 'check_dataset_paths', 'data_hint',
    'guess_data_kind',
    'SHAPES_CLASSES', 'SHAPES_PALETTE', 'SHAPES_METAINFO',
    'ADE_SHAPES_CLASSES', 'ADE_SHAPES_PALETTE', 'ADE_SHAPES_METAINFO',
    'generate_coco_shapes', 'generate_ade_shapes', 'generate_all',
    'make_shapes_sample', 'make_ade_sample', 'mask_to_polygons'
]
