"""End to end: a tiny demo Mask R-CNN and UperNet trained for 2 iterations
by tools/train.py, then tools/analysis_tools/ms_eval.py runs tools/test.py
single-scale and with --tta (DetTTAModelWithMasks / SegTTAModel, the configs'
own multi-scale + flip pipelines) and reports both side by side, including
coco/segm_mAP for the TTA run (mmdet's own DetTTAModel refuses masks)."""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
from tiny_demo_configs import det_cfg, seg_cfg

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
def _load_tool():
    spec = importlib.util.spec_from_file_location(
        'ms_eval', osp.join(ROOT, 'tools', 'analysis_tools', 'ms_eval.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    from mmssm.datasets import generate_all
    root = tmp_path_factory.mktemp('synthetic')
    generate_all(str(root), seed=5, num_train=4, num_val=2)
    return root


def _train(tmp_path, text):
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(text)
    work = tmp_path / 'work'
    res = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'train.py'), str(cfg),
         '--work-dir', str(work)], cwd=tmp_path, capture_output=True,
        text=True, env=dict(os.environ, PYTHONUNBUFFERED='1'), timeout=900)
    assert res.returncode == 0, (res.stdout + res.stderr)[-5000:]
    ckpt = work / 'iter_2.pth'
    assert ckpt.is_file()
    return cfg, ckpt


def test_parse_metrics_reads_the_final_test_line():
    ms = _load_tool()
    log = ('Iter(test) [1/2]    eta: 0:00:01  time: 0.5  data_time: 0.1\n'
           'Iter(test) [2/2]    coco/bbox_mAP: 0.1250  coco/segm_mAP: '
           '0.0500  data_time: 0.0100  time: 0.4000\n')
    assert ms.parse_metrics(log) == {
        'coco/bbox_mAP': 0.125,
        'coco/segm_mAP': 0.05
    }
    with pytest.raises(ValueError, match='Iter\\(test\\)'):
        ms.parse_metrics('nothing here')
    table = ms.side_by_side({'mIoU': 40.0, 'aAcc': 80.0}, {'mIoU': 41.5})
    assert '| mIoU   | 40.0000 | 41.5000 | +1.5000 |' in table
    assert 'aAcc' not in table


def test_det_single_and_multi_scale_with_masks(tmp_path, data_root, capsys):
    text = det_cfg(
        osp.join(ROOT, 'configs', 'mambaout',
                 'mask-rcnn_mambaout-femto_fpn_demo_coco-shapes.py'),
        str(data_root / 'coco_shapes') + '/', max_iters=2, val_interval=100)
    cfg, ckpt = _train(tmp_path, text)
    ms = _load_tool()
    out = tmp_path / 'ms.json'
    res = ms.main([str(cfg), str(ckpt), '--work-dir', str(tmp_path / 'ev'),
                   '--out', str(out)])
    for run in ('single_scale', 'multi_scale'):
        for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
            assert 0.0 <= res[run][key] <= 1.0, (run, key, res[run])
    assert json.loads(out.read_text())['multi_scale'] == res['multi_scale']
    printed = capsys.readouterr().out
    assert 'coco/segm_mAP' in printed and 'multi-scale (TTA)' in printed


def test_seg_single_and_multi_scale(tmp_path, data_root):
    text = seg_cfg(
        osp.join(ROOT, 'configs', 'mambaout',
                 'upernet_mambaout-femto_demo_ade-shapes.py'),
        str(data_root / 'ade_shapes'), max_iters=2, val_interval=100)
    cfg, ckpt = _train(tmp_path, text)
    res = _load_tool().main(
        [str(cfg), str(ckpt), '--work-dir', str(tmp_path / 'ev')])
    for run in ('single_scale', 'multi_scale'):
        assert 0.0 <= res[run]['mIoU'] <= 100.0
        assert 'aAcc' in res[run]
