"""Fixtures shared by the test files.

* Test isolation: a test that sets mmengine's default scope
  (``init_default_scope``, runners) must not change which registry later
  tests build from.
* ``data_root``: the synthetic COCO-shapes and ADE-shapes sets, generated once
  per session.
* ``tiny_demo_runs``: the tiny MambaOut demos (``tiny_demo_configs``) trained
  by ``tools/train.py`` with resumes, once per session, for the end-to-end
  test of the tools and the multi-scale evaluation tool.
"""
import re

import pytest
from mmengine.registry import DefaultScope


@pytest.fixture(autouse=True)
def _restore_default_scope():
    saved = DefaultScope._instance_dict.copy()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)


@pytest.fixture(scope='session')
def data_root(tmp_path_factory):
    """The synthetic COCO-shapes and ADE-shapes sets (6 train / 4 val
    images each, seed 3), generated once per test session; read only."""
    from mmssm.datasets import generate_all
    root = tmp_path_factory.mktemp('synthetic')
    generate_all(str(root), seed=3, num_train=6, num_val=4)
    return root


class TinyDemoRuns:
    """Each tiny demo (``'det'``: Mask R-CNN, ``'seg'``: UperNet) trained on
    ``data_root`` with seed 0, the first time it is asked for:

    1. ``tools/train.py`` for 4 iterations (checkpoints at 2 and 4);
    2. ``--resume WORK/iter_2.pth`` with ``train_cfg.max_iters=6``;
    3. ``--resume`` (the latest checkpoint) with
       ``train_cfg.max_iters=LENGTH``;
    4. ``tools/test.py`` on ``WORK/iter_LENGTH.pth``.

    Each is a dict: ``cfg`` (the config file), ``length`` (``LENGTH``),
    ``work`` (the work dir), ``logs`` (the three training runs' outputs),
    ``ckpts`` (the names of the ``iter_*.pth`` files in ``work`` after each
    run; the demos keep the last two), ``losses`` ({iteration: total loss}
    over the three runs; a resumed run's own losses replace those of the
    iterations it repeats) and ``test_log`` (the output of ``tools/test.py``).
    """
    LENGTH = 30

    def __init__(self, data_root, tmp_path_factory):
        self.data_root = data_root
        self.tmp_path_factory = tmp_path_factory
        self.runs = {}

    def get(self, kind):
        if kind not in self.runs:
            self.runs[kind] = self._train(kind)
        return self.runs[kind]

    def _train(self, kind):
        from tiny_demo_configs import (DET_DEMO, SEG_DEMO, det_cfg,
                                       run_tool, run_train, seg_cfg)
        if kind == 'det':
            text = det_cfg(DET_DEMO, str(self.data_root / 'coco_shapes') + '/')
        elif kind == 'seg':
            text = seg_cfg(SEG_DEMO, str(self.data_root / 'ade_shapes'))
        else:
            raise ValueError(f"tiny_demo_runs: kind {kind!r}, expected 'det' "
                             "or 'seg'")
        tmp = self.tmp_path_factory.mktemp(f'tiny_{kind}')
        cfg = tmp / 'cfg.py'
        cfg.write_text(text)
        work = tmp / 'work'
        common = [str(cfg), '--work-dir', str(work)]
        runs = [
            [],
            ['--resume', str(work / 'iter_2.pth'), '--cfg-options',
             'train_cfg.max_iters=6'],
            # no validation, one checkpoint at the end
            ['--resume', '--cfg-options', f'train_cfg.max_iters={self.LENGTH}',
             f'train_cfg.val_interval={self.LENGTH + 1}',
             f'default_hooks.checkpoint.interval={self.LENGTH}'],
        ]
        logs, ckpts = [], []
        for args in runs:
            logs.append(run_train(common + args, tmp))
            ckpts.append(sorted((p.name for p in work.glob('iter_*.pth')),
                               key=lambda n: int(n[5:-4])))
        losses = {}
        for log in logs:
            for it, loss in re.findall(
                    r'Iter\(train\) \[\s*(\d+)/\d+\].*?\bloss: ([0-9.]+)',
                    log):
                losses[int(it)] = float(loss)
        test_log = run_tool('test.py', [
            cfg, work / f'iter_{self.LENGTH}.pth', '--work-dir', tmp / 'test'
        ], tmp)
        return dict(cfg=cfg, work=work, logs=logs, ckpts=ckpts, losses=losses,
                    length=self.LENGTH, test_log=test_log)


@pytest.fixture(scope='session')
def tiny_demo_runs(data_root, tmp_path_factory):
    """A ``TinyDemoRuns``: ``tiny_demo_runs.get('det' or 'seg')``."""
    return TinyDemoRuns(data_root, tmp_path_factory)
