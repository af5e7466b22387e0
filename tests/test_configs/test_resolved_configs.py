"""Every config resolves to the same model, schedule, optimizer, data and TTA
as in the snapshot ``tests/data/resolved_configs.json`` (taken before the
configs were split into ``configs/_base_`` fragments; its ``commit`` field
names the commit). See ``resolved_configs.py`` for what is compared.

``ALLOWED_CHANGES`` lists, per config, the snapshot paths that were changed on
purpose, each with the test that proves the effective result is unchanged.
Configs created after the snapshot are added to it when they are created
(listed under ``added_later``), so that later edits to the fragments they
inherit are caught for them too.
"""
import copy
import importlib

import pytest
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

from resolved_configs import (CONFIG_DIR, decode, diff,  # noqa: I
                              leaf_configs, load_snapshot, resolve)

SNAPSHOT = load_snapshot()

_ONE_RULE = ('mmssm.SSMLayerDecayOptimWrapperConstructor with layer decay 1 '
             'replaces name-based custom_keys / bias_decay_mult (one '
             'no-weight-decay mechanism); same per-parameter lr and weight '
             'decay: test_optimizer_change_keeps_effective_lr_and_decay')
#: The configs whose optimizer settings changed on purpose, with the config
#: whose model proves the change has no effect (same optimizer settings
#: before and after, same kinds of parameters: another size of the family).
OPTIM_CHANGED = {
    'mambaout/mambaout-tiny_32xb128_in1k.py': None,
    'mambaout/mambaout-femto_32xb128_in1k.py':
    'mambaout/mambaout-tiny_32xb128_in1k.py',
    'mambaout/mambaout-kobe_32xb128_in1k.py':
    'mambaout/mambaout-tiny_32xb128_in1k.py',
    'mambaout/mambaout-small_32xb128_in1k.py':
    'mambaout/mambaout-tiny_32xb128_in1k.py',
    'mambaout/mambaout-base_32xb128_in1k.py':
    'mambaout/mambaout-tiny_32xb128_in1k.py',
    'mambaout/mask-rcnn_mambaout-tiny_fpn_1x_coco.py': None,
    'mambaout/mask-rcnn_mambaout-small_fpn_1x_coco.py':
    'mambaout/mask-rcnn_mambaout-tiny_fpn_1x_coco.py',
    'mambaout/mask-rcnn_mambaout-base_fpn_1x_coco.py':
    'mambaout/mask-rcnn_mambaout-tiny_fpn_1x_coco.py',
    'mambaout/upernet_mambaout-tiny_4xb4-160k_ade20k-512x512.py': None,
    'mambaout/upernet_mambaout-small_4xb4-160k_ade20k-512x512.py':
    'mambaout/upernet_mambaout-tiny_4xb4-160k_ade20k-512x512.py',
    'mambaout/upernet_mambaout-base_4xb4-160k_ade20k-512x512.py':
    'mambaout/upernet_mambaout-tiny_4xb4-160k_ade20k-512x512.py',
    'groupmamba/groupmamba-tiny_distill-regnety160_8xb128_in1k.py': None,
    'groupmamba/groupmamba-small_distill-regnety160_8xb128_in1k.py':
    'groupmamba/groupmamba-tiny_distill-regnety160_8xb128_in1k.py',
    'groupmamba/groupmamba-base_distill-regnety160_8xb128_in1k.py':
    'groupmamba/groupmamba-tiny_distill-regnety160_8xb128_in1k.py',
    'groupmamba/groupmamba-ss2d4-tiny_distill-regnety160_8xb128_in1k.py':
    None,
    'groupmamba/mask-rcnn_groupmamba-tiny_fpn_1x_coco.py': None,
    'groupmamba/mask-rcnn_groupmamba-small_fpn_1x_coco.py':
    'groupmamba/mask-rcnn_groupmamba-tiny_fpn_1x_coco.py',
    'groupmamba/mask-rcnn_groupmamba-base_fpn_1x_coco.py':
    'groupmamba/mask-rcnn_groupmamba-tiny_fpn_1x_coco.py',
    'groupmamba/mask-rcnn_groupmamba-ss2d4-tiny_fpn_1x_coco.py': None,
    'groupmamba/mask-rcnn_groupmamba-tiny_fpn_ms-3x_coco.py':
    'groupmamba/mask-rcnn_groupmamba-tiny_fpn_1x_coco.py',
    'groupmamba/mask-rcnn_groupmamba-small_fpn_ms-3x_coco.py':
    'groupmamba/mask-rcnn_groupmamba-tiny_fpn_1x_coco.py',
    'groupmamba/mask-rcnn_groupmamba-base_fpn_ms-3x_coco.py':
    'groupmamba/mask-rcnn_groupmamba-tiny_fpn_1x_coco.py',
    'groupmamba/upernet_groupmamba-tiny_8xb2-160k_ade20k-512x512.py': None,
    'groupmamba/upernet_groupmamba-small_8xb2-160k_ade20k-512x512.py':
    'groupmamba/upernet_groupmamba-tiny_8xb2-160k_ade20k-512x512.py',
    'groupmamba/upernet_groupmamba-base_8xb2-160k_ade20k-512x512.py':
    'groupmamba/upernet_groupmamba-tiny_8xb2-160k_ade20k-512x512.py',
    'groupmamba/upernet_groupmamba-ss2d4-tiny_8xb2-160k_ade20k-512x512.py':
    None,
}
#: {config: {path prefix: why}}: differences from the snapshot made on
#: purpose. Every other difference fails.
ALLOWED_CHANGES = {
    rel: {
        'optim_wrapper.constructor': _ONE_RULE,
        'optim_wrapper.paramwise_cfg': _ONE_RULE
    }
    for rel in OPTIM_CHANGED
}


def _allowed(rel, problem):
    path = problem.split(':', 1)[0]
    return any(
        path == prefix or path.startswith(prefix + '.')
        or path.startswith(prefix + '[')
        for prefix in ALLOWED_CHANGES.get(rel, {}))


def test_snapshot_covers_every_config():
    assert sorted(SNAPSHOT['configs']) == leaf_configs()
    assert len(SNAPSHOT['commit']) == 40
    assert SNAPSHOT['configs_modified_since_commit'] is False


@pytest.mark.parametrize('rel', leaf_configs())
def test_config_resolves_as_in_snapshot(rel):
    problems = [
        p for p in diff(SNAPSHOT['configs'][rel], resolve(rel))
        if not _allowed(rel, p)
    ]
    assert not problems, (
        f'configs/{rel} resolves differently from the snapshot '
        f'(commit {SNAPSHOT["commit"][:10]}):\n' + '\n'.join(problems))


def test_allowed_changes_are_real():
    """An allowed change that no longer differs is stale: remove it."""
    for rel, prefixes in ALLOWED_CHANGES.items():
        problems = diff(SNAPSHOT['configs'][rel], resolve(rel))
        for prefix in prefixes:
            assert any(
                p.split(':', 1)[0] == prefix
                or p.split(':', 1)[0].startswith((prefix + '.', prefix + '['))
                for p in problems), (rel, prefix)


def test_diff_reports_paths():
    """The comparison itself can fail: it names added, removed, changed
    values, list lengths and tuple-vs-list changes."""
    old = {'a': {'b': 1, 'c': [1, 2]}, 't': {'__tuple__': [1]}, 'x': 0}
    new = {'a': {'b': 2, 'c': [1]}, 't': [1], 'y': 0}
    assert diff(old, new) == [
        'a.b: 1 -> 2', 'a.c: length 2 -> 1', "t: {'__tuple__': [1]} -> [1]",
        'x: removed', 'y: added'
    ]
    assert diff({'v': 1}, {'v': 1.0}) == ['v: 1 -> 1.0']
    assert diff(old, old) == []



def _build_model(rel):
    """The config's model (task registry of its scope), without checkpoints:
    the teacher of a distillation config is a small stand-in (it is no
    submodule, so it has no optimizer parameters)."""
    cfg = Config.fromfile(f'{CONFIG_DIR}/{rel}')
    scope = cfg.default_scope
    importlib.import_module(f'{scope}.utils').register_all_modules(
        init_default_scope=True)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.init_cfg = None
    if 'teacher' in model_cfg:
        model_cfg.teacher = dict(
            type='ImageClassifier', backbone=dict(type='LeNet5'))
        model_cfg.teacher_checkpoint = None
    registry = importlib.import_module(f'{scope}.registry').MODELS
    return registry.build(model_cfg)


def _lr_and_decay(model, optim_wrapper_cfg):
    names = {id(p): n for n, p in model.named_parameters()}
    wrapper = build_optim_wrapper(model, copy.deepcopy(optim_wrapper_cfg))
    out = {}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            out[names[id(p)]] = (group['lr'], group['weight_decay'])
    return out


@pytest.mark.parametrize(
    'rel', sorted(rel for rel, ref in OPTIM_CHANGED.items() if ref is None))
def test_optimizer_change_keeps_effective_lr_and_decay(rel):
    """The optimizer settings of the snapshot (mmengine's default constructor
    with name-based rules) and today's (mmssm's constructor) give every
    parameter of the model the same lr and weight decay."""
    model = _build_model(rel)
    before = _lr_and_decay(
        model, decode(SNAPSHOT['configs'][rel]['optim_wrapper']))
    after = _lr_and_decay(model, Config.fromfile(
        f'{CONFIG_DIR}/{rel}').optim_wrapper.to_dict())
    assert set(before) == set(after) == {
        n for n, p in model.named_parameters() if p.requires_grad}
    changed = {n: (before[n], after[n]) for n in before
               if before[n] != after[n]}
    assert not changed, changed
    # the rules are not vacuous: some parameters decay, some do not
    assert {wd for _, wd in after.values()} >= {
        0.0, SNAPSHOT['configs'][rel]['optim_wrapper']['optimizer'][
            'weight_decay']}


@pytest.mark.parametrize(
    'rel', sorted(rel for rel, ref in OPTIM_CHANGED.items() if ref))
def test_optimizer_change_same_as_tested_size(rel):
    """Other sizes change their optimizer settings exactly as the size whose
    model is checked above (before and after)."""
    ref = OPTIM_CHANGED[rel]
    for snap_or_now in (lambda r: SNAPSHOT['configs'][r]['optim_wrapper'],
                        lambda r: resolve(r)['optim_wrapper']):
        assert snap_or_now(rel) == snap_or_now(ref)
    assert rel.split('/')[0] == ref.split('/')[0]
