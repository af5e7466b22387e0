"""Helpers shared by the end-to-end and tool tests: tiny versions of the
MambaOut demo configs (``det_cfg``, ``seg_cfg``: the demo's heads and data
pipeline, a 4-stage MambaOut of 16-48 channels, a constant learning rate and a
fixed seed), running the tools in subprocesses (``run_python``,
``run_tool``, ``run_train``), loading a tool module (``load_tool``),
building a demo model (``build_model``) and giving a module random parameters
(``randomize_params``)."""
import importlib.util
import os
import os.path as osp
import re
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DET_DEMO = osp.join(ROOT, 'configs', 'mambaout',
                    'mask-rcnn_mambaout-femto_fpn_demo_coco-shapes.py')
SEG_DEMO = osp.join(ROOT, 'configs', 'mambaout',
                    'upernet_mambaout-femto_demo_ade-shapes.py')

TINY_ARCH = dict(depths=[1, 1, 1, 1], dims=[16, 24, 32, 48])

_COMMON = """
train_cfg = dict(max_iters={max_iters}, val_interval={val_interval})
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
randomness = dict(seed={seed})
default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))
"""

DET_CFG = """
_base_ = [{base!r}]
data_root = {data_root!r}
model = dict(
    backbone=dict(arch=dict(_delete_=True, **{arch!r})),
    # the demo's backbone gives stages 1-3 (those its FPN uses)
    neck=dict(in_channels=[24, 32, 48], out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=32),
        bbox_head=dict(in_channels=32, fc_out_channels=32),
        mask_roi_extractor=dict(out_channels=32),
        mask_head=dict(in_channels=32, conv_out_channels=32)),
    # keep low-score detections of the barely trained model so that COCO
    # evaluation has predictions to score
    test_cfg=dict(rcnn=dict(score_thr=0.0, max_per_img=10)))
_pipe = dict(type='Resize', scale=(128, 128), keep_ratio=False)
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        _pipe, dict(type='PackDetInputs')]))
_test_pipeline = [
    dict(type='LoadImageFromFile'), _pipe,
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                          'img_shape', 'scale_factor'))]
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=_test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
""" + _COMMON

SEG_CFG = """
_base_ = [{base!r}]
data_root = {data_root!r}
crop_size = (64, 64)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch=dict(_delete_=True, **{arch!r})),
    decode_head=dict(in_channels=[16, 24, 32, 48], channels=16),
    auxiliary_head=dict(in_channels=32, channels=16))
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='Resize', scale=(128, 64), keep_ratio=True),
        dict(type='RandomCrop', crop_size=crop_size),
        dict(type='PackSegInputs')]))
val_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(128, 64), keep_ratio=True),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='PackSegInputs')]))
test_dataloader = val_dataloader
""" + _COMMON


def det_cfg(base, data_root, max_iters=4, val_interval=4, seed=0):
    """The tiny Mask R-CNN demo (``base``: the demo config's path) on
    ``data_root`` (the ``coco_shapes`` folder, with a trailing slash)."""
    return DET_CFG.format(base=base, data_root=data_root, arch=TINY_ARCH,
                          max_iters=max_iters, val_interval=val_interval,
                          seed=seed)


def seg_cfg(base, data_root, max_iters=4, val_interval=4, seed=0):
    """The tiny UperNet demo (``base``: the demo config's path) on
    ``data_root`` (the ``ade_shapes`` folder)."""
    return SEG_CFG.format(base=base, data_root=data_root, arch=TINY_ARCH,
                          max_iters=max_iters, val_interval=val_interval,
                          seed=seed)


def write_seg_cfg(tmp_path, data_root, max_iters, val_interval=100):
    """Write the tiny UperNet demo (``tmp_path/cfg.py``) on
    ``data_root/ade_shapes``. Returns its path."""
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(
        seg_cfg(SEG_DEMO, str(data_root / 'ade_shapes'), max_iters=max_iters,
                val_interval=val_interval))
    return str(cfg)


def run_python(args, cwd, env=None, timeout=300):
    """``python ARGS`` in a subprocess (unbuffered output, ``env`` added to
    the environment). Returns the completed process and its stdout +
    stderr."""
    env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
    res = subprocess.run([sys.executable] + [str(a) for a in args], cwd=cwd,
                         env=env, capture_output=True, text=True,
                         timeout=timeout)
    return res, res.stdout + res.stderr


def run_tool(tool, args, cwd, env=None, timeout=300):
    """``tools/TOOL ARGS`` (e.g. ``'test.py'``) in a subprocess; asserts it
    succeeds and returns its stdout + stderr."""
    res, out = run_python([osp.join(ROOT, 'tools', tool)] + list(args), cwd,
                          env=env, timeout=timeout)
    assert res.returncode == 0, out[-6000:]
    return out


def run_train(args, cwd, env=None, timeout=300):
    """``tools/train.py ARGS`` in a subprocess; asserts it succeeds and
    returns its stdout + stderr."""
    return run_tool('train.py', args, cwd, env=env, timeout=timeout)


def reported_metrics(log, keys):
    """{key: value} of the metrics ``keys`` as ``tools/test.py`` prints them
    (``coco/bbox_mAP: 0.1230``); asserts each is there."""
    values = {}
    for key in keys:
        m = re.search(re.escape(key) + r': (-?[0-9.]+)', log)
        assert m, f'{key} not reported:\n{log[-3000:]}'
        values[key] = float(m.group(1))
    return values


def load_tool(name):
    """The module ``tools/analysis_tools/NAME.py``, loaded from its file."""
    spec = importlib.util.spec_from_file_location(
        name, osp.join(ROOT, 'tools', 'analysis_tools', name + '.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build_model(cfg_path, scope):
    """The model of the config at ``cfg_path``, built from the registry of
    ``scope`` (``'mmdet'`` or ``'mmseg'``), randomly initialised."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    init_default_scope(scope)
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    elif scope == 'mmseg':
        from mmseg.registry import MODELS
    else:
        raise ValueError(f"build_model: scope {scope!r}, expected 'mmdet' or "
                         "'mmseg'")
    return MODELS.build(Config.fromfile(str(cfg_path)).model)


def randomize_params(module, seed, scale=0.2, add=False):
    """Give every parameter of ``module`` random values, drawn (in
    ``module.parameters()`` order) from ``scale * N(0, 1)`` with a generator
    of its own seeded with ``seed``: they replace the values, or with
    ``add=True`` are added to them (keeping e.g. an SSM's ``A_log`` layout).
    Returns ``module``."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            noise = torch.randn(p.shape, generator=gen) * scale
            if add:
                p.add_(noise.to(p))
            else:
                p.copy_(noise)
    return module
