"""Tests of the synthetic shapes datasets and the data-root checks."""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pycocotools.mask as mask_utils
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mmssm.datasets import (ADE_SHAPES_CLASSES, ADE_SHAPES_METAINFO,
                            DATA_KINDS, SHAPES_CLASSES, SHAPES_METAINFO,
                            check_data_root, generate_ade_shapes, generate_all,
                            generate_coco_shapes, guess_data_kind,
                            make_ade_sample, make_shapes_sample,
                            mask_to_polygons)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SEED = 0
N_TRAIN, N_VAL = 6, 4


def _read_tree(root):
    """{relative path: bytes} of every file under ``root``."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = osp.join(dirpath, name)
            with open(path, 'rb') as f:
                out[osp.relpath(path, root)] = f.read()
    return out


def _mask_bbox(mask):
    """[x, y, w, h] of a binary mask, from its row/column extents."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return [cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1]


def _jpeg_close(saved, drawn):
    """Whether a decoded JPEG shows the drawn image (noise aside)."""
    blur = [cv2.blur(x, (5, 5)).astype(float) for x in (saved, drawn)]
    return np.abs(blur[0] - blur[1]).mean() < 2


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('synthetic'))
    generate_all(root, seed=SEED, num_train=N_TRAIN, num_val=N_VAL)
    return root


# --------------------------------------------------------------------------
# determinism
# --------------------------------------------------------------------------
def test_same_seed_gives_identical_bytes(data_root, tmp_path):
    generate_all(str(tmp_path), seed=SEED, num_train=N_TRAIN, num_val=N_VAL)
    first, second = _read_tree(data_root), _read_tree(str(tmp_path))
    # 2 json + (6 + 4) coco images + 2 x (6 + 4) ade images and labels
    assert len(first) == 2 + 10 + 20
    assert first.keys() == second.keys()
    for name in first:
        assert first[name] == second[name], name


def test_different_seed_differs(data_root, tmp_path):
    generate_coco_shapes(
        str(tmp_path / 'coco'),
        num_train=N_TRAIN,
        num_val=N_VAL,
        seed=SEED + 1)
    generate_ade_shapes(
        str(tmp_path / 'ade'), num_train=N_TRAIN, num_val=N_VAL, seed=SEED + 1)
    ours = _read_tree(osp.join(data_root, 'coco_shapes'))
    theirs = _read_tree(str(tmp_path / 'coco'))
    assert ours.keys() == theirs.keys()
    for name in ours:  # every image and both json files change
        assert ours[name] != theirs[name], name
    ours = _read_tree(osp.join(data_root, 'ade_shapes'))
    theirs = _read_tree(str(tmp_path / 'ade'))
    assert all(ours[name] != theirs[name] for name in ours)


def test_val_split_independent_of_num_train(data_root, tmp_path):
    generate_coco_shapes(str(tmp_path), num_train=2, num_val=N_VAL, seed=SEED)
    ours = osp.join(data_root, 'coco_shapes')
    for rel in ['annotations/instances_val.json'
                ] + [f'val/{i:012d}.jpg' for i in range(1, N_VAL + 1)]:
        with open(osp.join(ours, rel), 'rb') as a, \
                open(osp.join(str(tmp_path), rel), 'rb') as b:
            assert a.read() == b.read(), rel
    # Regenerating with fewer images removes the stale files.
    assert sorted(os.listdir(
        tmp_path / 'train')) == ['000000000001.jpg', '000000000002.jpg']
    generate_coco_shapes(str(tmp_path), num_train=1, num_val=1, seed=SEED)
    assert os.listdir(tmp_path / 'train') == ['000000000001.jpg']


# --------------------------------------------------------------------------
# coco_shapes
# --------------------------------------------------------------------------
def test_mask_to_polygons_rasterises_exactly():
    mask = np.zeros((40, 50), np.uint8)
    mask[2:12, 3:8] = 1  # 5 x 10 rectangle at x=3, y=2
    cv2.circle(mask, (30, 25), 9, 1, -1)  # second component
    mask[30:33, 5] = 1  # 1 px wide, 3 px tall sliver
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 3
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, 40, 50))
    np.testing.assert_array_equal(mask_utils.decode(rle), mask)
    rect = [p for p in polygons if max(p[1::2]) < 13][0]
    rect_rle = mask_utils.frPyObjects([rect], 40, 50)[0]
    assert mask_utils.toBbox(rect_rle).tolist() == [3, 2, 5, 10]
    assert mask_utils.area(rect_rle) == 50
    # The naive contour through pixel centres loses boundary pixels.
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    naive = [
        c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3
    ]
    naive_area = mask_utils.area(
        mask_utils.merge(mask_utils.frPyObjects(naive, 40, 50)))
    assert naive_area < 0.9 * mask.sum()


def test_coco_json_is_valid(data_root):
    root = osp.join(data_root, 'coco_shapes')
    for split, num in (('train', N_TRAIN), ('val', N_VAL)):
        coco = COCO(osp.join(root, 'annotations', f'instances_{split}.json'))
        cats = coco.loadCats(coco.getCatIds())
        assert [(c['id'], c['name'])
                for c in cats] == list(enumerate(SHAPES_CLASSES, 1))
        assert sorted(coco.getImgIds()) == list(range(1, num + 1))
        ann_ids = [a['id'] for a in coco.dataset['annotations']]
        assert ann_ids == list(range(1, len(ann_ids) + 1))
        assert len(ann_ids) >= num  # at least one shape per image
        for img in coco.dataset['images']:
            assert 128 <= img['height'] <= 320 and 128 <= img['width'] <= 320
            image = cv2.imread(osp.join(root, split, img['file_name']))
            assert image.shape == (img['height'], img['width'], 3)
            assert len(coco.getAnnIds(imgIds=img['id'])) >= 1
        for ann in coco.dataset['annotations']:
            assert ann['iscrowd'] == 0
            assert 1 <= ann['category_id'] <= len(SHAPES_CLASSES)
            assert ann['area'] >= 100
            assert ann['segmentation'] and all(
                len(p) >= 6 and len(p) % 2 == 0 for p in ann['segmentation'])
            x, y, w, h = ann['bbox']
            img = coco.imgs[ann['image_id']]
            assert w > 0 and h > 0
            assert x >= 0 and y >= 0
            assert x + w <= img['width'] and y + h <= img['height']


def test_coco_annotations_match_visible_masks(data_root):
    """Each annotation equals the visible mask of the shape it was made of."""
    root = osp.join(data_root, 'coco_shapes')
    occluded = 0
    for split, num in (('train', N_TRAIN), ('val', N_VAL)):
        coco = COCO(osp.join(root, 'annotations', f'instances_{split}.json'))
        for index in range(num):
            image, instances = make_shapes_sample(SEED, split, index)
            info = coco.imgs[index + 1]
            saved = cv2.imread(osp.join(root, split, info['file_name']))
            assert saved.shape == image.shape
            assert _jpeg_close(saved, image)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=index + 1))
            assert len(anns) == len(instances) >= 1
            union = np.zeros(image.shape[:2], int)
            for ann, inst in zip(anns, instances):
                visible, full = inst['mask'].astype(bool), inst['full_mask']
                assert ann['category_id'] == inst['label'] + 1
                raster = coco.annToMask(ann).astype(bool)
                iou = (raster & visible).sum() / (raster | visible).sum()
                assert iou >= 0.99
                assert ann['bbox'] == _mask_bbox(visible)
                assert ann['area'] == visible.sum()
                assert not (visible & ~full.astype(bool)).any()
                occluded += int(visible.sum() < full.sum())
                union += visible
            # Occlusion is reflected: visible masks never overlap.
            assert union.max() == 1
    assert occluded >= 1


def test_cocoeval_ground_truth_against_itself_is_perfect(data_root):
    ann_file = osp.join(data_root, 'coco_shapes', 'annotations',
                        'instances_train.json')
    gt = COCO(ann_file)
    results = []
    for ann in gt.dataset['annotations']:
        results.append(
            dict(
                image_id=ann['image_id'],
                category_id=ann['category_id'],
                bbox=ann['bbox'],
                segmentation=gt.annToRLE(ann),
                score=1.0))
    dt = gt.loadRes(results)
    for iou_type in ('bbox', 'segm'):
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        assert ev.stats[0] == pytest.approx(1.0)  # AP@[.5:.95]
        assert ev.stats[8] == pytest.approx(1.0)  # AR@100


def test_coco_shapes_loads_in_mmdet(data_root):
    from mmdet.datasets import CocoDataset
    root = osp.join(data_root, 'coco_shapes')
    ds = CocoDataset(
        data_root=root,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        metainfo=SHAPES_METAINFO,
        pipeline=[],
        test_mode=True)
    assert len(ds) == N_VAL
    assert ds.metainfo['classes'] == SHAPES_CLASSES
    with open(osp.join(root, 'annotations', 'instances_val.json')) as f:
        anns = json.load(f)['annotations']
    loaded = [inst for i in range(len(ds)) for inst in ds[i]['instances']]
    assert len(loaded) == len(anns)
    first = ds[0]
    assert first['img_path'] == osp.join(root, 'val', '000000000001.jpg')
    x, y, w, h = anns[0]['bbox']
    assert first['instances'][0]['bbox'] == [x, y, x + w, y + h]
    assert first['instances'][0]['bbox_label'] == anns[0]['category_id'] - 1


# --------------------------------------------------------------------------
# ade_shapes
# --------------------------------------------------------------------------
def test_ade_layout_and_labels(data_root):
    root = osp.join(data_root, 'ade_shapes')
    num_classes = len(ADE_SHAPES_CLASSES)
    seen = set()
    for split, folder, tag, num in (('train', 'training', 'train', N_TRAIN),
                                    ('val', 'validation', 'val', N_VAL)):
        imgs = sorted(os.listdir(osp.join(root, 'images', folder)))
        segs = sorted(os.listdir(osp.join(root, 'annotations', folder)))
        assert [osp.splitext(n)[0] for n in imgs] == [
            osp.splitext(n)[0] for n in segs
        ] == [f'ADE_{tag}_{i:08d}' for i in range(1, num + 1)]
        assert all(n.endswith('.jpg') for n in imgs)
        assert all(n.endswith('.png') for n in segs)
        for index, (img_name, seg_name) in enumerate(zip(imgs, segs)):
            image = cv2.imread(osp.join(root, 'images', folder, img_name))
            label = cv2.imread(
                osp.join(root, 'annotations', folder, seg_name),
                cv2.IMREAD_UNCHANGED)
            assert label.dtype == np.uint8 and label.ndim == 2
            assert label.shape == image.shape[:2]
            assert 128 <= min(label.shape) and max(label.shape) <= 320
            assert label.max() <= num_classes
            # Sky is on top: the top row is mostly sky.
            assert (label[0] == 1).mean() > 0.5
            seen.update(np.unique(label).tolist())
            ref_image, ref_label = make_ade_sample(SEED, split, index)
            np.testing.assert_array_equal(label, ref_label)
            assert _jpeg_close(image, ref_image)
    # Every class and the "other" label 0 occur.
    assert seen == set(range(num_classes + 1))


def test_ade_shapes_loads_in_mmseg(data_root):
    from mmseg.datasets import ADE20KDataset, BaseSegDataset
    from mmseg.datasets.transforms import LoadAnnotations
    root = osp.join(data_root, 'ade_shapes')
    prefix = dict(
        img_path='images/validation', seg_map_path='annotations/validation')
    ds = BaseSegDataset(
        data_root=root,
        data_prefix=prefix,
        img_suffix='.jpg',
        seg_map_suffix='.png',
        reduce_zero_label=True,
        metainfo=ADE_SHAPES_METAINFO,
        pipeline=[LoadAnnotations()])
    assert len(ds) == N_VAL
    assert ds.metainfo['classes'] == ADE_SHAPES_CLASSES
    assert ds.label_map is None
    for i in range(len(ds)):
        item = ds[i]
        raw = cv2.imread(item['seg_map_path'], cv2.IMREAD_UNCHANGED)
        loaded = item['gt_seg_map']
        # ADE20K convention: 0 -> ignore (255), k -> k - 1.
        np.testing.assert_array_equal(loaded == 255, raw == 0)
        np.testing.assert_array_equal(loaded[raw > 0], raw[raw > 0] - 1)
        assert osp.basename(item['img_path'])[:-4] == osp.basename(
            item['seg_map_path'])[:-4]
    # The real ADE20K dataset class finds every image of the layout ...
    ade = ADE20KDataset(
        data_root=root,
        data_prefix=prefix,
        reduce_zero_label=True,
        lazy_init=False)
    assert len(ade) == N_VAL
    # ... but refuses class names outside ADE20K's 150 (hence BaseSegDataset).
    with pytest.raises(ValueError, match='not a subset'):
        ADE20KDataset(
            data_root=root,
            data_prefix=prefix,
            reduce_zero_label=True,
            metainfo=ADE_SHAPES_METAINFO)


# --------------------------------------------------------------------------
# arguments, CLI, imports
# --------------------------------------------------------------------------
def test_bad_arguments_raise(tmp_path):
    with pytest.raises(ValueError, match='min_size'):
        make_shapes_sample(min_size=300, max_size=200)
    with pytest.raises(ValueError, match='min_size'):
        generate_ade_shapes(str(tmp_path), min_size=32)
    with pytest.raises(ValueError, match='min_instances'):
        make_shapes_sample(min_instances=3, max_instances=2)
    with pytest.raises(ValueError, match='unknown synthetic datasets'):
        generate_all(str(tmp_path), datasets=('coco_shapes', 'voc'))


def test_cli_writes_and_reports(tmp_path, capsys):
    path = osp.join(REPO, 'tools', 'misc', 'generate_synthetic_data.py')
    spec = importlib.util.spec_from_file_location('gen_synth_cli', path)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    root = str(tmp_path / 'syn')
    cli.main([
        '--root', root, '--num-train', '2', '--num-val', '1', '--seed', '3',
        '--only', 'coco_shapes'
    ])
    out = capsys.readouterr().out
    assert 'train: 2 images' in out and 'val: 1 images' in out
    assert 'seed 3' in out and 'ade_shapes' not in out
    assert sorted(os.listdir(root)) == ['coco_shapes']
    check_data_root(osp.join(root, 'coco_shapes'), 'coco_shapes')
    with pytest.raises(SystemExit):
        cli.parse_args(['--num-train', '0'])


def test_import_does_not_pull_mmdet_or_mmseg():
    code = ('import sys, mmssm.datasets; '
            "bad = [m for m in ('mmdet', 'mmseg') if m in sys.modules]; "
            'assert not bad, bad')
    subprocess.run([sys.executable, '-c', code], check=True, cwd=REPO)


# --------------------------------------------------------------------------
# data-root checks
# --------------------------------------------------------------------------
def test_check_data_root_accepts_generated_data(data_root):
    coco = osp.join(data_root, 'coco_shapes')
    checked = check_data_root(coco, 'coco_shapes')
    assert osp.join(coco, 'annotations', 'instances_val.json') in checked
    check_data_root(
        osp.join(data_root, 'ade_shapes'), 'ade_shapes', splits=('test', ))


def test_check_data_root_missing_root_messages(tmp_path):
    missing = str(tmp_path / 'nowhere')
    expected = {
        'coco': [
            'cocodataset.org', 'data/coco',
            'annotations/instances_train2017.json', 'train2017/',
            'generate_synthetic_data.py'
        ],
        'ade20k':
        ['ADEChallengeData2016', 'data/ade/', 'generate_synthetic_data.py'],
        'coco_shapes': ['python tools/misc/generate_synthetic_data.py'],
        'ade_shapes': ['python tools/misc/generate_synthetic_data.py'],
    }
    assert set(expected) == set(DATA_KINDS)
    for kind, needles in expected.items():
        with pytest.raises(FileNotFoundError) as err:
            check_data_root(missing, kind)
        msg = str(err.value)
        assert f"folder {missing!r} does not exist" in msg
        for needle in needles:
            assert needle in msg, (kind, needle)


def test_check_data_root_names_first_missing_file(tmp_path):
    root = tmp_path / 'coco'
    (root / 'annotations').mkdir(parents=True)
    (root / 'train2017').mkdir()
    (root / 'annotations' / 'instances_train2017.json').write_text('{}')
    # train is complete; val lacks its annotation file.
    check_data_root(str(root), 'coco', splits=('train', ))
    with pytest.raises(FileNotFoundError) as err:
        check_data_root(str(root), 'coco')
    assert repr(str(root / 'annotations' / 'instances_val2017.json')) in str(
        err.value)
    assert 'the file' in str(err.value)
    (root / 'annotations' / 'instances_val2017.json').write_text('{}')
    with pytest.raises(FileNotFoundError, match='val2017'):
        check_data_root(str(root), 'coco', splits=('test', ))
    (root / 'val2017').mkdir()
    assert len(check_data_root(str(root), 'coco')) == 5

    ade = tmp_path / 'ADEChallengeData2016'
    (ade / 'images' / 'training').mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as err:
        check_data_root(str(ade), 'ade20k')
    assert repr(str(ade / 'annotations' / 'training')) in str(err.value)


def test_check_data_root_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match='unknown data kind'):
        check_data_root(str(tmp_path), 'voc')
    with pytest.raises(ValueError, match='unknown splits'):
        check_data_root(str(tmp_path), 'coco', splits=('training', ))


def test_guess_data_kind():
    assert guess_data_kind('data/coco/') == 'coco'
    assert guess_data_kind('data/x', 'mmdet.CocoDataset') == 'coco'
    assert guess_data_kind('data/ade/ADEChallengeData2016') == 'ade20k'
    assert guess_data_kind('data/x', 'ADE20KDataset') == 'ade20k'
    assert guess_data_kind('data/synthetic/coco_shapes',
                           'CocoDataset') == 'coco_shapes'
    assert guess_data_kind('data/synthetic/ade_shapes/',
                           'BaseSegDataset') == 'ade_shapes'
    assert guess_data_kind('data/imagenet', 'ImageNet') is None
