"""Generate mmssm's synthetic demo datasets.

Writes, deterministically from ``--seed``:

* ``<root>/coco_shapes``: COCO-format instance segmentation of simple shapes
  (``train/``, ``val/``, ``annotations/instances_{train,val}.json``);
* ``<root>/ade_shapes``: ADE20K-layout semantic segmentation
  (``images/{training,validation}/*.jpg``,
  ``annotations/{training,validation}/*.png``).

Examples::

    python tools/misc/generate_synthetic_data.py
    python tools/misc/generate_synthetic_data.py --root data/synthetic --seed 0
    python tools/misc/generate_synthetic_data.py --only coco_shapes
"""
import argparse
import os.path as osp
import sys
import time

sys.path.insert(0,
                osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmssm.datasets.synthetic import (  # noqa: E402
    ADE_SHAPES_CLASSES, ADE_SHAPES_DEFAULTS, COCO_SHAPES_DEFAULTS,
    SHAPES_CLASSES, generate_all)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Generate the synthetic coco_shapes / ade_shapes datasets')
    parser.add_argument(
        '--root',
        default='data/synthetic',
        help='parent folder of coco_shapes/ and ade_shapes/ '
        '(default: data/synthetic)')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument(
        '--num-train',
        type=int,
        default=None,
        help='training images per dataset (default: '
        f'{COCO_SHAPES_DEFAULTS["num_train"]} coco_shapes, '
        f'{ADE_SHAPES_DEFAULTS["num_train"]} ade_shapes)')
    parser.add_argument(
        '--num-val',
        type=int,
        default=None,
        help='validation images per dataset (default: '
        f'{COCO_SHAPES_DEFAULTS["num_val"]} coco_shapes, '
        f'{ADE_SHAPES_DEFAULTS["num_val"]} ade_shapes)')
    parser.add_argument(
        '--only',
        choices=['coco_shapes', 'ade_shapes'],
        default=None,
        help='generate only this dataset')
    args = parser.parse_args(argv)
    for name in ('num_train', 'num_val'):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(
                f'--{name.replace("_", "-")} must be >= 1, got {value}')
    return args


def main(argv=None):
    args = parse_args(argv)
    datasets = (args.only, ) if args.only else ('coco_shapes', 'ade_shapes')
    start = time.perf_counter()
    summary = generate_all(
        args.root,
        seed=args.seed,
        num_train=args.num_train,
        num_val=args.num_val,
        datasets=datasets)
    elapsed = time.perf_counter() - start
    if 'coco_shapes' in summary:
        print(f'coco_shapes ({len(SHAPES_CLASSES)} classes: '
              f'{", ".join(SHAPES_CLASSES)})')
        for split, info in summary['coco_shapes'].items():
            print(f'  {split}: {info["num_images"]} images in '
                  f'{info["img_dir"]}, {info["num_annotations"]} instances in '
                  f'{info["ann_file"]}')
    if 'ade_shapes' in summary:
        print(f'ade_shapes ({len(ADE_SHAPES_CLASSES)} classes: '
              f'{", ".join(ADE_SHAPES_CLASSES)}; label 0 = other)')
        for split, info in summary['ade_shapes'].items():
            print(f'  {split}: {info["num_images"]} images in '
                  f'{info["img_dir"]}, labels in {info["ann_dir"]}')
    print(f'seed {args.seed}, done in {elapsed:.1f} s')
    return summary


if __name__ == '__main__':
    main()
