"""tools/test.py --show-dir draws every test image (or every
--show-interval-th) into a folder of the work dir, for the detection and
segmentation demos (neither needs a visualization hook in its config), and
--data-root re-roots a config whose data_root points nowhere.

Random-init checkpoints of the tiny demo models; 3-4 val images."""
import os
import os.path as osp

import pytest
import torch
from PIL import Image
from tiny_demo_configs import (DET_DEMO, ROOT, SEG_DEMO, build_model, det_cfg,
                               run_python, seg_cfg)

_run = run_python


def _checkpoint(cfg_path, scope, out):
    model = build_model(cfg_path, scope)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, out)
    return out


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    from mmssm.datasets import generate_all
    tmp = tmp_path_factory.mktemp('show_dir')
    generate_all(str(tmp / 'data'), seed=2, num_train=1, num_val=3)
    # the configs point at a root that does not exist: --data-root fixes it
    det = tmp / 'det.py'
    det.write_text(det_cfg(DET_DEMO, str(tmp / 'moved' / 'coco_shapes') +
                           '/'))
    seg = tmp / 'seg.py'
    seg.write_text(seg_cfg(SEG_DEMO, str(tmp / 'moved' / 'ade_shapes')))
    return dict(
        tmp=tmp,
        det=(det, _checkpoint(det, 'mmdet', tmp / 'det.pth'),
             tmp / 'data' / 'coco_shapes', 'val'),
        seg=(seg, _checkpoint(seg, 'mmseg', tmp / 'seg.pth'),
             tmp / 'data' / 'ade_shapes', 'images/validation'))


def _check_drawn(folder, images):
    """Every file of ``folder`` is a PNG/JPEG of the size of its image."""
    names = sorted(os.listdir(folder))
    assert names == sorted(osp.basename(p) for p in images), names
    for path in images:
        with Image.open(osp.join(folder, osp.basename(path))) as drawn:
            assert drawn.format in ('PNG', 'JPEG')
            drawn.load()
            with Image.open(path) as orig:
                assert drawn.size == orig.size, (path, drawn.size, orig.size)


@pytest.mark.parametrize('task', ['det', 'seg'])
def test_show_dir_draws_every_test_image(setup, task):
    cfg, ckpt, data, img_dir = setup[task]
    work = setup['tmp'] / f'work_{task}'
    images = sorted(
        str(data / img_dir / n) for n in os.listdir(data / img_dir))
    assert len(images) == 3
    res, out = _run([
        osp.join(ROOT, 'tools', 'test.py'), str(cfg), str(ckpt),
        '--work-dir', str(work), '--show-dir', 'vis', '--data-root',
        str(data)
    ], setup['tmp'])
    assert res.returncode == 0, out[-4000:]
    assert f'--data-root {data}: ' in out
    # relative to the work dir, every image drawn
    assert f'drawing every test image into {work / "vis"}' in out
    _check_drawn(work / 'vis', images)
    # every 2nd of the first 3 images (indices 0 and 2), absolute folder
    absdir = setup['tmp'] / f'abs_{task}'
    res, out = _run([
        osp.join(ROOT, 'tools', 'test.py'), str(cfg), str(ckpt),
        '--work-dir', str(work), '--show-dir', str(absdir),
        '--show-interval', '2', '--data-root', str(data)
    ], setup['tmp'])
    assert res.returncode == 0, out[-4000:]
    order = _test_order(out, images)
    _check_drawn(absdir, [order[0], order[2]])


def _test_order(out, images):
    """The images in the order the test loop saw them (dataset order)."""
    if images[0].endswith('.jpg') and 'ade_shapes' in images[0]:
        return images  # BaseSegDataset lists the folder sorted
    import json
    ann = json.load(
        open(osp.join(osp.dirname(osp.dirname(images[0])), 'annotations',
                      'instances_val.json')))
    folder = osp.dirname(images[0])
    return [osp.join(folder, im['file_name']) for im in ann['images']]


def test_show_dir_hook_classification(tmp_path):
    """mmpretrain: the hook draws the predicted class on each original
    image (every 2nd with interval=2), named as the images."""
    import types

    import numpy as np
    from mmengine.logging import MMLogger
    from mmpretrain.structures import DataSample
    from mmpretrain.visualization import UniversalVisualizer

    from mmssm.engine.hooks import ShowDirHook
    sizes = [(40, 30), (64, 48), (50, 70), (33, 33), (80, 20)]
    paths = []
    for i, (w, h) in enumerate(sizes):
        p = tmp_path / f'img{i}.png'
        Image.fromarray(np.full((h, w, 3), 40 * i, np.uint8)).save(p)
        paths.append(p)
    vis = UniversalVisualizer(name='cls_show_dir_test')
    vis.dataset_meta = dict(classes=('cat', 'dog'))
    runner = types.SimpleNamespace(
        visualizer=vis, work_dir=str(tmp_path / 'work'),
        logger=MMLogger.get_instance('cls_show_dir_test'))
    hook = ShowDirHook('vis', interval=2)
    hook.before_test(runner)
    for batch in ([0, 1], [2, 3], [4]):
        outputs = [
            DataSample(metainfo=dict(img_path=str(paths[i]))).set_pred_label(
                i % 2).set_pred_score(torch.tensor([0.3, 0.7]))
            for i in batch
        ]
        hook.after_test_iter(runner, 0, {}, outputs)
    _check_drawn(tmp_path / 'work' / 'vis',
                 [str(paths[i]) for i in (0, 2, 4)])


def test_show_dir_hook_needs_a_task_visualizer(tmp_path):
    import types

    from mmengine.visualization import Visualizer

    from mmssm.engine.hooks import ShowDirHook
    runner = types.SimpleNamespace(
        visualizer=Visualizer(name='plain_show_dir_test'),
        work_dir=str(tmp_path), logger=None)
    with pytest.raises(RuntimeError, match='cannot draw predictions'):
        ShowDirHook('vis').before_test(runner)
