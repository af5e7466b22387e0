"""tools/train.py --max-iters / --max-epochs rescale the whole schedule
(train length, param schedulers, val and checkpoint intervals) and say so;
--cfg-options train_cfg.max_iters=N alone warns that the schedulers kept
their old ends."""
import copy
import glob
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from tiny_demo_configs import ROOT, SEG_DEMO, run_train, seg_cfg

from mmssm.apis import rescale_schedule, unscaled_schedule_warning

DEMOS = sorted(glob.glob(osp.join(ROOT, 'configs', '*', '*demo*.py')))


def test_demo_schedules_rescale():
    assert len(DEMOS) >= 8
    cfg = Config.fromfile(DEMOS[0])
    assert cfg.train_cfg.max_iters == 600  # the demo schedule this expects
    for path in DEMOS[:3]:
        cfg = Config.fromfile(path)
        before = copy.deepcopy(cfg)
        changes = rescale_schedule(cfg, max_iters=30)
        s = cfg.param_scheduler
        assert cfg.train_cfg.max_iters == 30
        # LinearLR warm-up 0..50 -> 0..round(2.5)=2; cosine 50..600 -> 2..30
        assert (s[0].begin, s[0].end) == (0, 2), path
        assert (s[1].begin, s[1].end) == (2, 30), path
        assert cfg.train_cfg.val_interval == 30
        assert cfg.default_hooks.checkpoint.interval == 30
        assert 'param_scheduler[1] (CosineAnnealingLR).end 600 -> 30' in \
            changes
        assert 'train_cfg.max_iters 600 -> 30' in changes
        # nothing else of the config changed
        for key in ('train_cfg', 'param_scheduler', 'default_hooks'):
            cfg.pop(key), before.pop(key)
        assert cfg.to_dict() == before.to_dict()


def test_rescale_every_kind_of_scheduler_field():
    cfg = Config(dict(
        train_cfg=dict(by_epoch=True, max_epochs=12, val_interval=1,
                       val_begin=10),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                           interval=4)),
        param_scheduler=[
            dict(type='LinearLR', by_epoch=False, begin=0, end=500),
            dict(type='MultiStepLR', by_epoch=True, begin=0, end=12,
                 milestones=[8, 11]),
            dict(type='CosineAnnealingLR', T_max=12, by_epoch=True,
                 begin=0),  # open end stays open
            dict(type='StepLR', step_size=3, begin=0, end=int(1e9)),
        ]))
    changes = rescale_schedule(cfg, max_epochs=24)
    s = cfg.param_scheduler
    assert cfg.train_cfg.max_epochs == 24
    assert s[0].end == 1000  # iteration-counted warm-up scales too
    assert s[1].milestones == [16, 22] and s[1].end == 24
    assert s[2].T_max == 24 and 'end' not in s[2]
    assert s[3].step_size == 6 and s[3].end == int(1e9)
    assert cfg.train_cfg.val_interval == 1 and cfg.train_cfg.val_begin == 10
    assert cfg.default_hooks.checkpoint.interval == 4  # not above 24
    assert len(changes) == 6
    # shorter: intervals clipped, values never below 1 where 0 is invalid
    changes = rescale_schedule(cfg, max_epochs=2)
    assert s[1].milestones == [1, 2] and s[2].T_max == 2
    assert cfg.train_cfg.val_begin == 2
    assert cfg.default_hooks.checkpoint.interval == 2
    assert 'default_hooks.checkpoint.interval 4 -> 2' in changes
    with pytest.raises(SystemExit, match='no train_cfg.max_iters.*'
                       '--max-epochs'):
        rescale_schedule(cfg, max_iters=10)
    with pytest.raises(SystemExit, match='>= 1'):
        rescale_schedule(cfg, max_epochs=0)


def test_unscaled_warning():
    cfg_file = Config.fromfile(DEMOS[0])
    cfg = copy.deepcopy(cfg_file)
    cfg.merge_from_dict({'train_cfg.max_iters': 30})
    msg = unscaled_schedule_warning(cfg_file, cfg,
                                    {'train_cfg.max_iters': 30})
    assert 'not rescaled' in msg and 'use --max-iters 30' in msg
    assert '(CosineAnnealingLR).end 600 -> 30' in msg
    # the schedulers set as well, or the length unchanged: no warning
    assert unscaled_schedule_warning(cfg_file, cfg, {
        'train_cfg.max_iters': 30, 'param_scheduler': []}) is None
    assert unscaled_schedule_warning(cfg_file, cfg_file,
                                     {'train_cfg.val_interval': 5}) is None
    # a length that cannot be rescaled to (0) is not this check's to refuse
    zero = copy.deepcopy(cfg_file)
    zero.merge_from_dict({'train_cfg.max_iters': 0})
    assert unscaled_schedule_warning(cfg_file, zero,
                                     {'train_cfg.max_iters': 0}) is None


TAIL = """
train_cfg = dict(max_iters=20, val_interval=20)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=4),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=4,
         end=20)]
default_hooks = dict(checkpoint=dict(interval=10), logger=dict(interval=1))
"""


@pytest.fixture(scope='module')
def cfg_file(tmp_path_factory):
    from mmssm.datasets import generate_all
    tmp = tmp_path_factory.mktemp('max_iters')
    generate_all(str(tmp / 'data'), seed=2, num_train=2, num_val=1,
                 datasets=('ade_shapes', ))
    path = tmp / 'cfg.py'
    path.write_text(seg_cfg(SEG_DEMO, str(tmp / 'data' / 'ade_shapes')) + TAIL)
    return path


def test_train_py_max_iters(cfg_file, tmp_path):
    work = tmp_path / 'work'
    out = run_train([str(cfg_file), '--work-dir', str(work), '--max-iters',
                  '3'], tmp_path)
    line = [ln for ln in out.splitlines() if 'rescaled the schedule' in ln]
    assert len(line) == 1, out[-3000:]
    for change in ('train_cfg.max_iters 20 -> 3',
                   'param_scheduler[0] (LinearLR).end 4 -> 1',
                   'param_scheduler[1] (CosineAnnealingLR).begin 4 -> 1',
                   'param_scheduler[1] (CosineAnnealingLR).end 20 -> 3',
                   'train_cfg.val_interval 20 -> 3',
                   'default_hooks.checkpoint.interval 10 -> 3'):
        assert change in line[0], line[0]
    assert re.search(r'Iter\(train\) \[\s*3/3\]', out)
    assert 'Iter(val)' in out  # validation at the (new) end
    assert not (work / 'iter_2.pth').exists()
    ckpt = torch.load(work / 'iter_3.pth', map_location='cpu',
                      weights_only=False)
    scheds = ckpt['param_schedulers']
    assert [(s['begin'], s['end']) for s in scheds] == [(0, 1), (1, 3)]
    assert 'not rescaled' not in out


def test_cfg_options_length_alone_warns(cfg_file, tmp_path):
    out = run_train([
        str(cfg_file), '--work-dir', str(tmp_path / 'w'), '--cfg-options',
        'train_cfg.max_iters=2', 'train_cfg.val_interval=100'
    ], tmp_path)
    assert re.search(r'WARNING.*train_cfg.max_iters 20 -> 2, but the param '
                     r'schedulers were not rescaled', out), out[-3000:]
    assert 'use --max-iters 2 to rescale them' in out
    assert 'rescaled the schedule' not in out
