"""End to end: tools/train.py trains the demo Mask R-CNN and UperNet a few
iterations on generated data, saves a checkpoint, resumes from it, and
tools/test.py reports COCO box/mask AP and mIoU.

The tools run in subprocesses exactly as a user runs them. Tiny MambaOut and
small images keep each run to seconds.
"""
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
from tiny_demo_configs import det_cfg, seg_cfg

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
def _run(args, cwd):
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    res = subprocess.run([sys.executable] + args, cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=900)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    return out


def _train_resume_test(tmp_path, cfg_text, metric_keys):
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(cfg_text)
    work = tmp_path / 'work'
    train = osp.join(ROOT, 'tools', 'train.py')
    out = _run([train, str(cfg), '--work-dir', str(work)], tmp_path)
    # progress is shown: iterations, ETA and losses
    assert re.search(r'Iter\(train\) \[\s*4/4\].*eta.*loss', out), out[-3000:]
    for it in (2, 4):
        assert (work / f'iter_{it}.pth').is_file()
    assert (work / 'last_checkpoint').read_text().strip().endswith(
        'iter_4.pth')

    # resume from an explicit checkpoint: training continues at iteration 3
    # (loading goes through torch.load with weights_only=True)
    out = _run([
        train, str(cfg), '--work-dir', str(work), '--resume',
        str(work / 'iter_2.pth'), '--cfg-options', 'train_cfg.max_iters=6'
    ], tmp_path)
    assert 'resumed' in out.lower()
    assert re.search(r'Iter\(train\) \[\s*3/6\]', out), out[-3000:]
    assert not re.search(r'Iter\(train\) \[\s*1/6\]', out)
    assert (work / 'iter_6.pth').is_file()

    # resume from the latest checkpoint in the work dir (no path)
    out = _run([
        train, str(cfg), '--work-dir', str(work), '--resume',
        '--cfg-options', 'train_cfg.max_iters=7'
    ], tmp_path)
    assert re.search(r'Iter\(train\) \[\s*7/7\]', out), out[-3000:]

    out = _run([
        osp.join(ROOT, 'tools', 'test.py'), str(cfg),
        str(work / 'iter_7.pth'), '--work-dir', str(tmp_path / 'test')
    ], tmp_path)
    values = {}
    for key in metric_keys:
        m = re.search(re.escape(key) + r': (-?[0-9.]+)', out)
        assert m, f'{key} not reported:\n{out[-3000:]}'
        values[key] = float(m.group(1))
    return values


def test_mask_rcnn_train_resume_test(tmp_path, data_root):
    cfg = det_cfg(osp.join(ROOT, 'configs', 'mambaout',
                      'mask-rcnn_mambaout-femto_fpn_demo_coco-shapes.py'), str(data_root / 'coco_shapes') + '/')
    values = _train_resume_test(tmp_path, cfg,
                                ['coco/bbox_mAP', 'coco/segm_mAP'])
    for v in values.values():
        assert 0.0 <= v <= 1.0 or v == -1.0


def test_upernet_train_resume_test(tmp_path, data_root):
    cfg = seg_cfg(osp.join(ROOT, 'configs', 'mambaout',
                      'upernet_mambaout-femto_demo_ade-shapes.py'), str(data_root / 'ade_shapes'))
    values = _train_resume_test(tmp_path, cfg, ['mIoU'])
    assert 0.0 <= values['mIoU'] <= 100.0


def test_missing_data_root_gives_instructions(tmp_path):
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(
        det_cfg(osp.join(ROOT, 'configs', 'mambaout',
                          'mask-rcnn_mambaout-femto_fpn_demo_coco-shapes.py'), str(tmp_path / 'nowhere' / 'coco_shapes') + '/'))
    res = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'train.py'), str(cfg)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode != 0
    assert 'FileNotFoundError' in res.stderr
    assert 'nowhere' in res.stderr
    assert 'generate_synthetic_data.py' in res.stderr


def test_amp_is_refused_clearly_on_cpu(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip('refusal only applies without a GPU')
    res = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'train.py'),
        osp.join(ROOT, 'configs', 'mambaout',
                 'mask-rcnn_mambaout-femto_fpn_demo_coco-shapes.py'), '--amp'
    ], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode != 0
    assert '--amp needs a CUDA GPU' in res.stderr


def test_dist_train_two_cpu_processes(tmp_path, data_root):
    """tools/dist_train.sh (torchrun, --launcher pytorch) on the CPU: a gloo
    group of two processes with CPUDistributedDataParallel."""
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(
        seg_cfg(osp.join(ROOT, 'configs', 'mambaout',
                          'upernet_mambaout-femto_demo_ade-shapes.py'), str(data_root / 'ade_shapes')))
    env = dict(os.environ, PORT='29571', OMP_NUM_THREADS='1',
               PYTHON=sys.executable)
    res = subprocess.run([
        'bash', osp.join(ROOT, 'tools', 'dist_train.sh'), str(cfg), '2',
        '--work-dir', str(tmp_path / 'work')
    ], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert 'Distributed training: True' in out
    assert 'GPU number: 2' in out  # mmengine's name for the world size
    assert "type='CPUDistributedDataParallel'" in out
    assert re.search(r'Iter\(train\) \[\s*4/4\]', out)
    assert (tmp_path / 'work' / 'iter_4.pth').is_file()
