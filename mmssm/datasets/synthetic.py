"""Deterministic synthetic datasets of simple shapes.

Two small datasets let every mmssm detector and segmentor be trained and
evaluated end to end on a CPU without downloading COCO or ADE20K:

* ``coco_shapes``: COCO-format instance segmentation. Each image holds 1-4
  shapes (:data:`SHAPES_CLASSES`) of random size, rotation and colour on a
  smooth, noisy background. Later shapes occlude earlier ones; every
  annotation (polygon, ``bbox``, ``area``) is derived from the *visible* part
  of its shape, so the masks of one image never overlap. Layout::

      coco_shapes/
          train/000000000001.jpg ...
          val/000000000001.jpg ...
          annotations/instances_train.json
          annotations/instances_val.json

* ``ade_shapes``: ADE20K-layout semantic segmentation. Each image is a
  landscape of textured "stuff" bands (sky over one or two of grass / water /
  sand) with a few shapes and unlabeled clutter on top. Labels follow the
  ADE20K convention: ``uint8`` PNGs, 0 = "other" (ignored with
  ``reduce_zero_label=True``), classes ``1..K`` in the order of
  :data:`ADE_SHAPES_CLASSES`. Layout::

      ade_shapes/
          images/{training,validation}/ADE_{train,val}_00000001.jpg ...
          annotations/{training,validation}/ADE_{train,val}_00000001.png ...

  Load it with mmseg's ``BaseSegDataset`` (``img_suffix='.jpg'``,
  ``seg_map_suffix='.png'``, ``reduce_zero_label=True``,
  ``metainfo=ADE_SHAPES_METAINFO``). mmseg's ``ADE20KDataset`` cannot be used
  with these class names: it only accepts a subset of the 150 ADE20K names
  and then remaps pixel values by their ADE20K index.

Everything is a pure function of the seed: the image ``i`` of a split is
drawn from its own generator seeded with ``(seed, dataset, split, i)``, so the
same seed gives byte-identical files, and changing the number of training
images leaves the validation images unchanged.
"""
import json
import os
import os.path as osp
import re
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

__all__ = [
    'SHAPES_CLASSES', 'SHAPES_PALETTE', 'SHAPES_METAINFO',
    'ADE_SHAPES_CLASSES', 'ADE_SHAPES_PALETTE', 'ADE_SHAPES_METAINFO',
    'COCO_SHAPES_DEFAULTS', 'ADE_SHAPES_DEFAULTS', 'make_shapes_sample',
    'make_ade_sample', 'mask_to_polygons', 'generate_coco_shapes',
    'generate_ade_shapes', 'generate_all'
]

#: Instance classes of ``coco_shapes`` (category ids ``1..5`` in this order).
SHAPES_CLASSES = ('circle', 'rectangle', 'triangle', 'star', 'cross')
#: RGB display colours of :data:`SHAPES_CLASSES`.
SHAPES_PALETTE = [(220, 20, 60), (0, 130, 200), (60, 180, 75), (255, 200, 0),
                  (145, 30, 180)]
#: ``metainfo`` for mmdet's ``CocoDataset`` on ``coco_shapes``.
SHAPES_METAINFO = dict(classes=SHAPES_CLASSES, palette=SHAPES_PALETTE)

#: Semantic classes of ``ade_shapes``; pixel value ``i + 1`` is class ``i``.
ADE_SHAPES_CLASSES = ('sky', 'grass', 'water', 'sand', 'circle', 'rectangle',
                      'triangle')
#: RGB display colours of :data:`ADE_SHAPES_CLASSES`.
ADE_SHAPES_PALETTE = [(135, 206, 235), (34, 139, 34), (0, 70, 160),
                      (238, 214, 175), (220, 20, 60), (255, 140, 0),
                      (145, 30, 180)]
#: ``metainfo`` for mmseg's ``BaseSegDataset`` on ``ade_shapes``.
ADE_SHAPES_METAINFO = dict(
    classes=ADE_SHAPES_CLASSES, palette=ADE_SHAPES_PALETTE)

#: Default sizes of the two datasets (images per split).
COCO_SHAPES_DEFAULTS = dict(num_train=200, num_val=50)
ADE_SHAPES_DEFAULTS = dict(num_train=150, num_val=40)

# Integer tags that separate the random streams of datasets and splits.
_STREAM = {
    ('coco', 'train'): 1,
    ('coco', 'val'): 2,
    ('ade', 'train'): 3,
    ('ade', 'val'): 4
}
_JPEG_QUALITY = 95
_ADE_SKY, _ADE_GRASS, _ADE_WATER, _ADE_SAND = 1, 2, 3, 4
_ADE_SHAPE_LABELS = {'circle': 5, 'rectangle': 6, 'triangle': 7}


def _rng(seed: int, dataset: str, split: str,
         index: int) -> np.random.Generator:
    """Independent generator of one image of one split."""
    return np.random.default_rng([int(seed), _STREAM[(dataset, split)], index])


def _check_sizes(min_size: int, max_size: int) -> None:
    if not 64 <= min_size <= max_size:
        raise ValueError('image sides need 64 <= min_size <= max_size, got '
                         f'min_size={min_size}, max_size={max_size}')


# --------------------------------------------------------------------------
# Drawing helpers
# --------------------------------------------------------------------------
def _shape_vertices(kind: str, center: Tuple[float, float], radius: float,
                    angle: float, rng: np.random.Generator) -> np.ndarray:
    """Vertices (V, 2) in (x, y) of a shape inscribed in a circle.

    Args:
        kind (str): One of :data:`SHAPES_CLASSES`.
        center (tuple[float, float]): Centre (x, y) in pixels.
        radius (float): Radius of the circumscribed circle in pixels.
        angle (float): Rotation in radians.
        rng (numpy.random.Generator): Source of the shape's own proportions.
    """
    if kind == 'circle':
        theta = np.linspace(0, 2 * np.pi, 72, endpoint=False)
        pts = np.stack([np.cos(theta), np.sin(theta)], 1)
    elif kind == 'rectangle':
        # Aspect between 1:1 and 1:2, corners on the circumscribed circle.
        half = np.arctan(rng.uniform(0.5, 1.0))
        theta = np.array([half, np.pi - half, np.pi + half, -half])
        pts = np.stack([np.cos(theta), np.sin(theta)], 1)
    elif kind == 'triangle':
        # Near-equilateral: apex angles jittered by at most 12 degrees.
        theta = np.array([0., 2 * np.pi / 3, 4 * np.pi / 3]) - np.pi / 2
        theta = theta + rng.uniform(-0.2, 0.2, size=3)
        pts = np.stack([np.cos(theta), np.sin(theta)], 1)
    elif kind == 'star':
        inner = rng.uniform(0.42, 0.5)
        theta = np.arange(10) * np.pi / 5 - np.pi / 2
        r = np.where(np.arange(10) % 2 == 0, 1.0, inner)
        pts = np.stack([r * np.cos(theta), r * np.sin(theta)], 1)
    elif kind == 'cross':
        w = rng.uniform(0.28, 0.38)  # half arm width relative to the radius
        a = np.sqrt(1 -
                    w * w)  # arm length so that the arm tips touch the circle
        pts = np.array([[w, -a], [w, -w], [a, -w], [a, w], [w, w], [w, a],
                        [-w, a], [-w, w], [-a, w], [-a, -w], [-w, -w],
                        [-w, -a]])
    else:
        raise ValueError(f'unknown shape {kind!r}')
    rot = np.array([[np.cos(angle), -np.sin(angle)],
                    [np.sin(angle), np.cos(angle)]])
    return pts @ rot.T * radius + np.asarray(center)


def _fill_mask(vertices: np.ndarray, height: int, width: int) -> np.ndarray:
    """Binary ``uint8`` mask of a polygon, with sub-pixel vertex precision."""
    mask = np.zeros((height, width), np.uint8)
    shift = 4
    pts = np.round(vertices * (1 << shift)).astype(np.int32)
    cv2.fillPoly(mask, [pts], 1, lineType=cv2.LINE_8, shift=shift)
    return mask


def _smooth_field(rng: np.random.Generator,
                  height: int,
                  width: int,
                  grid: int,
                  low: float,
                  high: float,
                  channels: int = 3) -> np.ndarray:
    """Low-frequency random field: a coarse random grid, bicubic upsampled."""
    coarse = rng.uniform(
        low, high, size=(grid, grid, channels)).astype(np.float32)
    field = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return field.reshape(height, width, channels)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated BGR colour of random hue (float32, 0-255)."""
    hsv = np.array(
        [[[rng.uniform(0, 180),
           rng.uniform(140, 255),
           rng.uniform(110, 255)]]], np.float32)
    hsv = np.clip(np.round(hsv), 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _contrast_colour(rng: np.random.Generator,
                     canvas: np.ndarray,
                     mask: np.ndarray,
                     tries: int = 12) -> np.ndarray:
    """Random colour that stands out from ``canvas`` inside ``mask``.

    The score is the 10th percentile of the per-pixel L1 colour distance, so a
    shape is not lost where it lies on a similar colour; the first colour that
    scores >= 150 is taken, else the best of ``tries``.
    """
    under = canvas[mask.astype(bool)].astype(np.float32)
    best, best_score = None, -1.
    for _ in range(tries):
        colour = _random_colour(rng)
        score = float(np.percentile(np.abs(under - colour).sum(1), 10))
        if score > best_score:
            best, best_score = colour, score
        if score >= 150:
            break
    return best


def _paint(canvas: np.ndarray,
           mask: np.ndarray,
           colour: np.ndarray,
           rng: np.random.Generator,
           noise: float = 6.) -> None:
    """Paint ``colour`` with linear shading and pixel noise where ``mask``."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    gx, gy = rng.uniform(-0.25, 0.25, size=2)
    shade = gx * (xs - xs.mean()) + gy * (ys - ys.mean())
    values = colour[None] + shade[:, None] + rng.normal(
        0, noise, size=(len(ys), 3))
    canvas[ys, xs] = np.clip(values, 0, 255)


def _holes_or_slivers(mask: np.ndarray, min_component: int) -> bool:
    """Whether ``mask`` has a hole or a connected part < ``min_component``."""
    num, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if num > 1 and stats[1:, cv2.CC_STAT_AREA].min() < min_component:
        return True
    _, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP,
                                    cv2.CHAIN_APPROX_SIMPLE)
    return hierarchy is not None and bool((hierarchy[0, :, 3] >= 0).any())


def mask_to_polygons(mask: np.ndarray) -> List[List[float]]:
    """COCO polygons whose rasterisation equals a binary mask.

    COCO (and pycocotools) put pixel ``(x, y)`` on the square
    ``[x, x + 1] x [y, y + 1]``; contours traced through pixel centres, as
    ``cv2.findContours`` returns them, would drop half of every boundary pixel
    (IoU ~0.9 for a 20 px disk). Tracing the 2x nearest-upsampled mask and
    mapping back puts every vertex within 1/4 px of the pixel edges, which
    ``pycocotools.mask.frPyObjects`` rasterises to exactly the input mask
    (holes excepted: the generators never produce masks with holes).

    Args:
        mask (numpy.ndarray): ``(H, W)`` array, non-zero = inside.

    Returns:
        list[list[float]]: One ``[x0, y0, x1, y1, ...]`` list per outer contour
        with at least 3 vertices.
    """
    mask = (np.asarray(mask) > 0).astype(np.uint8)
    up = cv2.resize(mask, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        pts = (contour.reshape(-1, 2).astype(np.float64) + 0.5) / 2
        if len(pts) >= 3:
            polygons.append([round(float(v), 2) for v in pts.reshape(-1)])
    return polygons


def _encode(image: np.ndarray, ext: str) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY] if ext == '.jpg' else []
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise RuntimeError(f'OpenCV could not encode a {ext} image')
    return buf.tobytes()


def _prepare_dir(path: str, pattern: str) -> None:
    """Create ``path``; delete stale generated files matching ``pattern``."""
    os.makedirs(path, exist_ok=True)
    regex = re.compile(pattern)
    for name in os.listdir(path):
        if regex.fullmatch(name):
            os.remove(osp.join(path, name))


# --------------------------------------------------------------------------
# coco_shapes
# --------------------------------------------------------------------------
def make_shapes_sample(
        seed: int = 0,
        split: str = 'train',
        index: int = 0,
        min_size: int = 128,
        max_size: int = 320,
        min_instances: int = 1,
        max_instances: int = 4,
        min_shape: int = 32,
        max_shape: int = 120,
        min_area: int = 100,
        min_visible: float = 0.35,
        min_component: int = 30,
        placement_tries: int = 30) -> Tuple[np.ndarray, List[dict]]:
    """One image of ``coco_shapes`` with its instances, in memory.

    Shapes are placed one after the other, each fully inside the image and on
    top of the earlier ones. A placement is rejected (and redrawn) when it
    would leave an earlier shape with a visible area below
    ``max(min_area, min_visible * full area)``, cut a hole into it or leave a
    visible part smaller than ``min_component`` pixels; after
    ``placement_tries`` rejections the shape is skipped. Shapes whose visible
    area ends below ``min_area`` are dropped.

    Args:
        seed (int): Dataset seed.
        split (str): ``'train'`` or ``'val'``.
        index (int): Index of the image in its split (0-based).
        min_size (int): Smallest image side in pixels.
        max_size (int): Largest image side in pixels.
        min_instances (int): Fewest shapes drawn per image.
        max_instances (int): Most shapes drawn per image.
        min_shape (int): Smallest shape diameter (circumscribed circle) in
            pixels.
        max_shape (int): Largest shape diameter in pixels; also capped to 70%
            of the shorter image side.
        min_area (int): Smallest visible area (pixels) of a kept instance.
        min_visible (float): Smallest visible fraction of an occluded shape.
        min_component (int): Smallest connected visible part (pixels).
        placement_tries (int): Placements tried per shape.

    Returns:
        tuple[numpy.ndarray, list[dict]]: The BGR ``uint8`` image and, in
        drawing order, one dict per kept instance with ``label`` (0-based
        index into :data:`SHAPES_CLASSES`), ``mask`` (visible part) and
        ``full_mask`` (``uint8`` arrays of the image size).
    """
    _check_sizes(min_size, max_size)
    if not 1 <= min_instances <= max_instances:
        raise ValueError('need 1 <= min_instances <= max_instances, got '
                         f'{min_instances} and {max_instances}')
    rng = _rng(seed, 'coco', split, index)
    height, width = (int(v) for v in rng.integers(min_size, max_size + 1, 2))
    # Background: smooth brightness with a weaker colour tint plus pixel
    # noise, so that the saturated shapes stand out by colour and edges.
    grid = int(rng.integers(2, 5))
    canvas = _smooth_field(rng, height, width, grid, 50, 200, channels=1)
    canvas = canvas + _smooth_field(rng, height, width, grid, -40, 40)
    canvas += rng.normal(0, 8, size=canvas.shape)

    hi = min(float(max_shape), 0.7 * min(height, width))
    lo = min(float(min_shape), hi)
    instances = []
    for _ in range(int(rng.integers(min_instances, max_instances + 1))):
        label = int(rng.integers(len(SHAPES_CLASSES)))
        for _ in range(placement_tries):
            radius = rng.uniform(lo, hi) / 2
            center = (rng.uniform(radius, width - radius),
                      rng.uniform(radius, height - radius))
            verts = _shape_vertices(SHAPES_CLASSES[label], center, radius,
                                    rng.uniform(0, 2 * np.pi), rng)
            full = _fill_mask(verts, height, width)
            if full.sum() < min_area:
                continue
            keep = 1 - full
            ok = True
            for inst in instances:
                visible = inst['mask'] * keep
                need = max(min_area, min_visible * inst['full_mask'].sum())
                if visible.sum() < need or _holes_or_slivers(
                        visible, min_component):
                    ok = False
                    break
            if not ok:
                continue
            for inst in instances:
                inst['mask'] = inst['mask'] * keep
            colour = _contrast_colour(rng, canvas, full)
            _paint(canvas, full, colour, rng)
            instances.append(
                dict(label=label, mask=full.copy(), full_mask=full))
            break
    image = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    instances = [i for i in instances if i['mask'].sum() >= min_area]
    return image, instances


def _coco_annotation(mask: np.ndarray, label: int, ann_id: int,
                     image_id: int) -> Optional[dict]:
    polygons = mask_to_polygons(mask)
    if not polygons:
        return None
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return dict(
        id=ann_id,
        image_id=image_id,
        category_id=label + 1,
        segmentation=polygons,
        area=float(mask.sum()),
        bbox=[
            float(x0),
            float(y0),
            float(xs.max() - x0 + 1),
            float(ys.max() - y0 + 1)
        ],
        iscrowd=0)


def generate_coco_shapes(out_dir: str,
                         num_train: int = COCO_SHAPES_DEFAULTS['num_train'],
                         num_val: int = COCO_SHAPES_DEFAULTS['num_val'],
                         seed: int = 0,
                         min_size: int = 128,
                         max_size: int = 320,
                         **sample_kwargs) -> Dict[str, dict]:
    """Write the COCO-format ``coco_shapes`` dataset.

    Annotation and image ids start at 1 (pycocotools treats id 0 as
    "unmatched"), ``bbox`` is ``[x, y, w, h]`` of the visible mask, ``area``
    its pixel count and ``segmentation`` its polygons (see
    :func:`mask_to_polygons`).

    Args:
        out_dir (str): Dataset root, e.g. ``data/synthetic/coco_shapes``.
        num_train (int): Images in the train split. Defaults to 200.
        num_val (int): Images in the val split. Defaults to 50.
        seed (int): Seed; the same seed writes byte-identical files.
        min_size (int): Smallest image side. Defaults to 128.
        max_size (int): Largest image side. Defaults to 320.
        **sample_kwargs: Further arguments of :func:`make_shapes_sample`.

    Returns:
        dict: Per split, ``ann_file``, ``img_dir``, ``num_images`` and
        ``num_annotations``.
    """
    _check_sizes(min_size, max_size)
    ann_dir = osp.join(out_dir, 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    categories = [
        dict(id=i + 1, name=name, supercategory='shape')
        for i, name in enumerate(SHAPES_CLASSES)
    ]
    summary = {}
    for split, num in (('train', num_train), ('val', num_val)):
        img_dir = osp.join(out_dir, split)
        _prepare_dir(img_dir, r'\d{12}\.jpg')
        images, annotations = [], []
        for index in range(int(num)):
            image, instances = make_shapes_sample(
                seed,
                split,
                index,
                min_size=min_size,
                max_size=max_size,
                **sample_kwargs)
            image_id = index + 1
            file_name = f'{image_id:012d}.jpg'
            with open(osp.join(img_dir, file_name), 'wb') as f:
                f.write(_encode(image, '.jpg'))
            images.append(
                dict(
                    id=image_id,
                    file_name=file_name,
                    height=image.shape[0],
                    width=image.shape[1]))
            for inst in instances:
                ann = _coco_annotation(inst['mask'], inst['label'],
                                       len(annotations) + 1, image_id)
                if ann is not None:
                    annotations.append(ann)
        coco = dict(
            info=dict(
                description=f'mmssm synthetic shapes ({split})',
                version='1.0',
                year=2024,
                contributor='mmssm',
                seed=int(seed)),
            licenses=[],
            images=images,
            annotations=annotations,
            categories=categories)
        ann_file = osp.join(ann_dir, f'instances_{split}.json')
        with open(ann_file, 'w') as f:
            json.dump(coco, f, separators=(',', ':'))
        summary[split] = dict(
            ann_file=ann_file,
            img_dir=img_dir,
            num_images=len(images),
            num_annotations=len(annotations))
    return summary


# --------------------------------------------------------------------------
# ade_shapes
# --------------------------------------------------------------------------
def _wavy_boundary(rng: np.random.Generator, width: int, level: float,
                   amplitude: float) -> np.ndarray:
    """Row of a wavy band boundary for every column."""
    x = np.arange(width, dtype=np.float64)
    y = np.full(width, level)
    for _ in range(2):
        period = rng.uniform(0.3, 1.5) * width
        y += rng.uniform(0.3,
                         1.) * amplitude * np.sin(2 * np.pi * x / period +
                                                  rng.uniform(0, 2 * np.pi))
    return y


def _stuff_texture(kind: int, rng: np.random.Generator, height: int,
                   width: int) -> np.ndarray:
    """Full-image BGR float texture of one stuff class."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == _ADE_SKY:
        top = np.array([225, 165, 95]) + rng.uniform(-20, 20, 3)
        bottom = np.array([250, 230, 205]) + rng.uniform(-10, 5, 3)
        t = (yy / max(height - 1, 1))[..., None]
        tex = top * (1 - t) + bottom * t + rng.normal(0, 3, (height, width, 3))
    elif kind == _ADE_GRASS:
        base = np.array([45, 140, 65]) + rng.uniform(-15, 15, 3)
        noise = rng.normal(0, 40, (height, width)).astype(np.float32)
        noise = cv2.blur(noise, (1, 7))  # vertical blades
        tex = base + noise[..., None] * np.array([0.4, 1., 0.5])
    elif kind == _ADE_WATER:
        base = np.array([140, 80, 20]) + rng.uniform(-15, 15, 3)
        period = rng.uniform(6, 12)
        phase = 3 * np.sin(2 * np.pi * xx / rng.uniform(40, 90))
        stripes = 25 * np.sin(2 * np.pi * yy / period + phase)
        tex = base + stripes[..., None] + rng.normal(0, 4, (height, width, 3))
    elif kind == _ADE_SAND:
        base = np.array([125, 190, 220]) + rng.uniform(-12, 12, 3)
        tex = base + rng.normal(0, 14, (height, width, 1))
        dots = rng.random((height, width)) < 0.02
        tex[dots] -= 70
    else:
        raise ValueError(f'no texture for label {kind}')
    return tex.astype(np.float32)


def make_ade_sample(
        seed: int = 0,
        split: str = 'train',
        index: int = 0,
        min_size: int = 128,
        max_size: int = 320,
        max_shapes: int = 3,
        min_shape: int = 24,
        max_shape: int = 110,
        clutter_prob: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
    """One image of ``ade_shapes`` and its label map, in memory.

    Sky fills the top of the image down to a wavy horizon, below which lie one
    or two bands of grass, water or sand; then 0-2 blobs of unlabeled clutter
    (label 0) and 1-``max_shapes`` shapes of random colour are drawn on top.

    Args:
        seed (int): Dataset seed.
        split (str): ``'train'`` or ``'val'``.
        index (int): Index of the image in its split (0-based).
        min_size (int): Smallest image side in pixels.
        max_size (int): Largest image side in pixels.
        max_shapes (int): Most shapes per image.
        min_shape (int): Smallest shape diameter in pixels.
        max_shape (int): Largest shape diameter in pixels; also capped to half
            the shorter image side.
        clutter_prob (float): Probability of each of two clutter blobs.

    Returns:
        tuple[numpy.ndarray, numpy.ndarray]: The BGR ``uint8`` image and the
        ``uint8`` label map (0 = other, ``i + 1`` = ``ADE_SHAPES_CLASSES[i]``).
    """
    _check_sizes(min_size, max_size)
    rng = _rng(seed, 'ade', split, index)
    height, width = (int(v) for v in rng.integers(min_size, max_size + 1, 2))
    label = np.full((height, width), _ADE_SKY, np.uint8)
    canvas = _stuff_texture(_ADE_SKY, rng, height, width)
    rows = np.arange(height)[:, None]

    grounds = [_ADE_GRASS, _ADE_WATER, _ADE_SAND]
    num_bands = int(rng.integers(1, 3))
    order = rng.permutation(len(grounds))[:num_bands]
    level = rng.uniform(0.3, 0.55) * height
    for band, k in enumerate(order):
        if band:
            level = rng.uniform(level + 0.15 * height, 0.85 * height)
        below = rows >= _wavy_boundary(rng, width, level, 0.05 * height)[None]
        kind = grounds[k]
        label[below] = kind
        canvas[below] = _stuff_texture(kind, rng, height, width)[below]

    for _ in range(2):
        if rng.random() >= clutter_prob:
            continue
        n = int(rng.integers(6, 11))
        theta = np.sort(rng.uniform(0, 2 * np.pi, n))
        radius = rng.uniform(0.06, 0.15) * min(height, width)
        r = radius * rng.uniform(0.5, 1., n)
        center = rng.uniform([radius, radius],
                             [width - radius, height - radius])
        verts = np.stack([r * np.cos(theta), r * np.sin(theta)], 1) + center
        blob = _fill_mask(verts, height, width).astype(bool)
        checker = (
            (np.arange(height)[:, None] // 4 + np.arange(width)[None] // 4) %
            2).astype(np.float32)
        colours = rng.uniform(0, 255, (2, 3))
        tex = colours[0] + checker[..., None] * (colours[1] - colours[0])
        canvas[blob] = tex[blob]
        label[blob] = 0

    hi = min(float(max_shape), 0.5 * min(height, width))
    lo = min(float(min_shape), hi)
    names = list(_ADE_SHAPE_LABELS)
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        kind = names[int(rng.integers(len(names)))]
        radius = rng.uniform(lo, hi) / 2
        center = (rng.uniform(radius, width - radius),
                  rng.uniform(radius, height - radius))
        verts = _shape_vertices(kind, center, radius,
                                rng.uniform(0, 2 * np.pi), rng)
        mask = _fill_mask(verts, height, width)
        _paint(canvas, mask, _contrast_colour(rng, canvas, mask), rng)
        label[mask.astype(bool)] = _ADE_SHAPE_LABELS[kind]

    image = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    return image, label


def generate_ade_shapes(out_dir: str,
                        num_train: int = ADE_SHAPES_DEFAULTS['num_train'],
                        num_val: int = ADE_SHAPES_DEFAULTS['num_val'],
                        seed: int = 0,
                        min_size: int = 128,
                        max_size: int = 320,
                        **sample_kwargs) -> Dict[str, dict]:
    """Write the ADE20K-layout ``ade_shapes`` dataset.

    Images are JPEGs, labels ``uint8`` PNGs of the same basename (ADE20K's
    ``ADE_train_00000001`` naming), 0 = other, ``1..K`` =
    :data:`ADE_SHAPES_CLASSES`.

    Args:
        out_dir (str): Dataset root, e.g. ``data/synthetic/ade_shapes``.
        num_train (int): Images in ``training``. Defaults to 150.
        num_val (int): Images in ``validation``. Defaults to 40.
        seed (int): Seed; the same seed writes byte-identical files.
        min_size (int): Smallest image side. Defaults to 128.
        max_size (int): Largest image side. Defaults to 320.
        **sample_kwargs: Further arguments of :func:`make_ade_sample`.

    Returns:
        dict: Per split (``training``/``validation``), ``img_dir``, ``ann_dir``
        and ``num_images``.
    """
    _check_sizes(min_size, max_size)
    summary = {}
    for split, folder, tag, num in (('train', 'training', 'train', num_train),
                                    ('val', 'validation', 'val', num_val)):
        img_dir = osp.join(out_dir, 'images', folder)
        ann_dir = osp.join(out_dir, 'annotations', folder)
        _prepare_dir(img_dir, rf'ADE_{tag}_\d{{8}}\.jpg')
        _prepare_dir(ann_dir, rf'ADE_{tag}_\d{{8}}\.png')
        for index in range(int(num)):
            image, label = make_ade_sample(
                seed,
                split,
                index,
                min_size=min_size,
                max_size=max_size,
                **sample_kwargs)
            stem = f'ADE_{tag}_{index + 1:08d}'
            with open(osp.join(img_dir, stem + '.jpg'), 'wb') as f:
                f.write(_encode(image, '.jpg'))
            with open(osp.join(ann_dir, stem + '.png'), 'wb') as f:
                f.write(_encode(label, '.png'))
        summary[folder] = dict(
            img_dir=img_dir, ann_dir=ann_dir, num_images=int(num))
    return summary


def generate_all(
    root: str = 'data/synthetic',
    seed: int = 0,
    num_train: Optional[int] = None,
    num_val: Optional[int] = None,
    datasets: Sequence[str] = ('coco_shapes', 'ade_shapes')
) -> Dict[str, dict]:
    """Write ``root/coco_shapes`` and ``root/ade_shapes``.

    Args:
        root (str): Parent folder. Defaults to ``data/synthetic``.
        seed (int): Seed of both datasets. Defaults to 0.
        num_train (int, optional): Training images of each dataset; None keeps
            the defaults (200 for coco_shapes, 150 for ade_shapes).
        num_val (int, optional): Validation images of each dataset; None keeps
            the defaults (50 and 40).
        datasets (Sequence[str]): Which of ``'coco_shapes'``, ``'ade_shapes'``.

    Returns:
        dict: The summaries of :func:`generate_coco_shapes` and
        :func:`generate_ade_shapes`, keyed by dataset name.
    """
    unknown = set(datasets) - {'coco_shapes', 'ade_shapes'}
    if unknown:
        raise ValueError(f'unknown synthetic datasets {sorted(unknown)}; '
                         "choose from 'coco_shapes', 'ade_shapes'")
    out = {}
    for name, fn, defaults in (('coco_shapes', generate_coco_shapes,
                                COCO_SHAPES_DEFAULTS),
                               ('ade_shapes', generate_ade_shapes,
                                ADE_SHAPES_DEFAULTS)):
        if name not in datasets:
            continue
        out[name] = fn(
            osp.join(root, name),
            num_train=defaults['num_train']
            if num_train is None else num_train,
            num_val=defaults['num_val'] if num_val is None else num_val,
            seed=seed)
    return out
