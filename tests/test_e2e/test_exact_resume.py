"""Exact resume after ``kill -9``: the resumed run logs the losses of an
uninterrupted run, because checkpoints carry every random state
(``RNGStateHook``, added by ``tools/train.py``) and the data workers are
seeded from the run's seed and replayed by mmengine's fast-forward.

The tiny UperNet demo with drop path 0.3 (the model draws random numbers
every iteration) and random crops in two DataLoader workers.
"""
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time

import torch
from tiny_demo_configs import ROOT, run_train, write_seg_cfg

TRAIN = osp.join(ROOT, 'tools', 'train.py')
OPTIONS = [
    '--cfg-options', 'train_dataloader.num_workers=2',
    'train_dataloader.persistent_workers=True', 'randomness.seed=0',
    'randomness.deterministic=True', 'model.backbone.drop_path_rate=0.3'
]
LOSS = re.compile(r'Iter\(train\) \[\s*(\d+)/8\].*?(loss: [0-9.]+.*)$')


def _losses(text):
    """{iteration: the logged loss terms} of a log."""
    out = {}
    for line in text.splitlines():
        m = LOSS.search(line)
        if m:
            out[int(m.group(1))] = re.sub(r'\s+', ' ', m.group(2)).strip()
    return out


def _cmd(cfg, work, *extra):
    return [sys.executable, TRAIN, cfg, '--work-dir', str(work), *extra,
            *OPTIONS]


def test_kill_and_resume_continues_the_run(tmp_path, data_root):
    cfg = write_seg_cfg(tmp_path, data_root, max_iters=8)
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    full = run_train(_cmd(cfg, tmp_path / 'full')[2:], tmp_path,
                     env=dict(OMP_NUM_THREADS='1'))
    want = _losses(full)
    assert sorted(want) == list(range(1, 9)), want

    work = tmp_path / 'killed'
    proc = subprocess.Popen(_cmd(cfg, work), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            # iter_4.pth is complete once it has its final name (atomic
            # writes) and last_checkpoint names it
            if (work / 'iter_4.pth').is_file() and \
                    (work / 'last_checkpoint').is_file() and \
                    (work / 'last_checkpoint').read_text().strip().endswith(
                        'iter_4.pth'):
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert not (work / 'iter_8.pth').exists(), 'killed too late'
    ckpt = torch.load(work / 'iter_4.pth', map_location='cpu',
                      weights_only=True)
    assert 'mmssm_rng_state' in ckpt
    time.sleep(0.5)

    log = run_train(_cmd(cfg, work, '--resume')[2:], tmp_path,
                    env=dict(OMP_NUM_THREADS='1'))
    assert 'resuming from' in log and 'iter_4.pth' in log
    assert 'random states restored' in log
    got = _losses(log)
    assert sorted(got) == [5, 6, 7, 8], got
    for it in (5, 6, 7, 8):
        assert got[it] == want[it], (it, got[it], want[it])
