"""--data-root re-roots every dataloader and evaluator of the demo configs;
the data checks say what is missing (root, annotation file, image folder)
with their own hints; image loading names the unreadable file; a training
set whose images all lack annotations gets a message naming the file."""
import json
import os.path as osp

import pytest
from mmengine.config import Config
from tiny_demo_configs import DET_DEMO, SEG_DEMO, det_cfg, run_tool

from mmssm.apis import check_data_roots, reroot_data



def test_reroot_det_demo():
    cfg = Config.fromfile(DET_DEMO)
    changes = reroot_data(cfg, '/mnt/shapes')
    for split in ('train', 'val', 'test'):
        ds = cfg[f'{split}_dataloader'].dataset
        assert ds.data_root == '/mnt/shapes/', split
    assert cfg.train_dataloader.dataset.ann_file == \
        'annotations/instances_train.json'
    for split in ('val', 'test'):
        assert cfg[f'{split}_evaluator'].ann_file == \
            '/mnt/shapes/annotations/instances_val.json'
    assert cfg.data_root == '/mnt/shapes'
    assert any('val_evaluator[0].ann_file: data/synthetic/coco_shapes/'
               'annotations/instances_val.json -> /mnt/shapes/annotations/'
               'instances_val.json' in c for c in changes), changes


def test_reroot_seg_demo_and_wrapped_datasets():
    cfg = Config.fromfile(SEG_DEMO)
    cfg.train_dataloader.dataset = dict(
        type='RepeatDataset', times=2, dataset=cfg.train_dataloader.dataset)
    reroot_data(cfg, 'elsewhere/ade')
    assert cfg.train_dataloader.dataset.dataset.data_root == 'elsewhere/ade'
    assert cfg.val_dataloader.dataset.data_root == 'elsewhere/ade'
    assert cfg.test_dataloader.dataset.data_root == 'elsewhere/ade'
    # data_prefix stays relative to the new root
    assert cfg.val_dataloader.dataset.data_prefix.img_path == \
        'images/validation'


def test_train_py_data_root_in_resolved_config(tmp_path):
    """The flag reaches the config the runner dumps in its work dir."""
    from mmssm.datasets import generate_all
    generate_all(str(tmp_path / 'd'), seed=1, num_train=2, num_val=2,
                 datasets=('coco_shapes', ))
    data = str(tmp_path / 'd' / 'coco_shapes')
    work = tmp_path / 'w'
    cfg = tmp_path / 'tiny_det.py'  # its data_root does not exist
    cfg.write_text(det_cfg(DET_DEMO, str(tmp_path / 'gone') + '/'))
    out = run_tool('train.py', [str(cfg), '--data-root', data, '--work-dir',
                                str(work), '--max-iters', '1'], tmp_path)
    assert f'--data-root {data}: train_dataloader dataset[0].data_root' \
        in out, out[-3000:]
    dumped = Config.fromfile(str(work / 'tiny_det.py'))
    for split in ('train', 'val', 'test'):
        assert dumped[f'{split}_dataloader'].dataset.data_root.rstrip(
            '/') == data
    assert dumped.test_evaluator.ann_file == osp.join(
        data, 'annotations/instances_val.json')


def _det_cfg(root):
    cfg = Config.fromfile(DET_DEMO)
    reroot_data(cfg, str(root))
    return cfg


def test_missing_root_ann_file_and_image_folder(tmp_path):
    from mmssm.datasets import generate_all
    generate_all(str(tmp_path), seed=1, num_train=1, num_val=1,
                 datasets=('coco_shapes', ))
    root = tmp_path / 'coco_shapes'
    # a root that does not exist: named, with --data-root and the hint
    with pytest.raises(FileNotFoundError) as err:
        check_data_roots(_det_cfg(tmp_path / 'nope'), ('train', ),
                         root_flag='--data-root')
    msg = str(err.value)
    assert f"--data-root {str(tmp_path / 'nope')!r} does not exist" in msg
    assert 'generate_synthetic_data.py' in msg
    # the root exists, the annotation file does not: no "generate" advice
    cfg = _det_cfg(root)
    cfg.train_dataloader.dataset.ann_file = 'annotations/train.json'
    with pytest.raises(FileNotFoundError) as err:
        check_data_roots(cfg, ('train', ))
    msg = str(err.value)
    assert repr(str(root / 'annotations' / 'train.json')) in msg
    assert "ann_file='annotations/train.json'" in msg
    assert 'instances_train.json' in msg  # what the folder holds
    assert 'generate' not in msg.lower()
    # the image folder is missing
    cfg = _det_cfg(root)
    cfg.val_dataloader.dataset.data_prefix.img = 'val2017/'
    with pytest.raises(FileNotFoundError) as err:
        check_data_roots(cfg, ('val', ))
    msg = str(err.value)
    assert repr(str(root / 'val2017')) in msg
    assert "data_prefix.img='val2017/'" in msg
    assert 'generate' not in msg.lower()
    # the evaluator's annotation file (not re-rooted by hand)
    cfg = _det_cfg(root)
    cfg.test_evaluator.ann_file = str(root / 'annotations' / 'x.json')
    with pytest.raises(FileNotFoundError) as err:
        check_data_roots(cfg, ('test', ))
    assert 'test_evaluator (CocoMetric) annotation file' in str(err.value)
    assert 'x.json' in str(err.value)
    # all present
    check_data_roots(_det_cfg(root))


def test_image_loading_names_the_file(tmp_path):
    import cv2
    import numpy as np
    from mmcv.transforms import LoadImageFromFile

    from mmssm.datasets.loading import ImageLoadError, patch_data_errors
    patch_data_errors()
    load = LoadImageFromFile()
    empty = tmp_path / 'empty.jpg'
    empty.write_bytes(b'')
    junk = tmp_path / 'junk.jpg'
    junk.write_bytes(b'not an image at all' * 10)
    good = tmp_path / 'good.png'
    cv2.imwrite(str(good), np.zeros((5, 7, 3), np.uint8))
    cases = {
        empty: 'is empty (0 bytes)',
        junk: 'is not a readable image',
        tmp_path / 'gone.jpg': 'does not exist',
    }
    for path, words in cases.items():
        with pytest.raises(ImageLoadError) as err:
            load(dict(img_path=str(path)))
        assert repr(str(path)) in str(err.value) and words in str(err.value)
    assert load(dict(img_path=str(good)))['img'].shape == (5, 7, 3)


def test_unannotated_training_set_is_named(tmp_path):
    from mmengine.registry import init_default_scope

    from mmssm.datasets import generate_all
    from mmssm.datasets.loading import EmptyDatasetError, patch_data_errors
    patch_data_errors()
    generate_all(str(tmp_path), seed=1, num_train=2, num_val=1,
                 datasets=('coco_shapes', ))
    root = tmp_path / 'coco_shapes'
    ann = root / 'annotations' / 'instances_train.json'
    coco = json.loads(ann.read_text())
    coco['annotations'] = []
    ann.write_text(json.dumps(coco))
    cfg = _det_cfg(root)
    init_default_scope('mmdet')
    from mmdet.registry import DATASETS
    with pytest.raises(EmptyDatasetError) as err:
        DATASETS.build(cfg.train_dataloader.dataset)
    msg = str(err.value)
    assert 'no training sample left' in msg
    assert repr(str(ann)) in msg and 'filter_empty_gt' in msg
