"""Resolve every config under ``configs/`` into a JSON-comparable snapshot.

A refactoring of the configs (fragments under ``configs/_base_/``, moved
blocks) must not change what a config means. This module resolves each config
with ``mmengine.Config.fromfile`` (``custom_imports`` honoured, the upstream
``mmdet::``/``mmseg::``/``mmpretrain::`` bases read from the installed
packages) and keeps the keys the runner and the tools consume (``RUNNER_KEYS``):
the model, the loops, the optimizer wrapper and schedulers, the dataloaders
with their pipelines, the evaluators, hooks, TTA model and pipeline, ...
Helper variables of a config (``pretrained``, ``embed_dims``, ...) are not
compared: they exist only to build those keys.

Values are encoded so that JSON keeps what matters for equality: a tuple is
``{"__tuple__": [...]}`` (mmengine keeps tuples and lists apart), a float that
is not finite is a string. Dict keys are sorted.

Regenerate the snapshot ONLY when a config is meant to change (and say why in
the commit)::

    python tests/test_configs/resolved_configs.py --write

``tests/test_configs/test_resolved_configs.py`` compares against it.
"""
import argparse
import glob
import json
import math
import os.path as osp
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(REPO, 'configs')
SNAPSHOT = osp.join(REPO, 'tests', 'data', 'resolved_configs.json')

#: Top-level keys compared (what mmengine's Runner, the TTA path of
#: tools/test.py and the custom-import mechanism read).
RUNNER_KEYS = (
    'auto_scale_lr', 'custom_hooks', 'custom_imports', 'default_hooks',
    'default_scope', 'env_cfg', 'launcher', 'load_from', 'log_level',
    'log_processor', 'model', 'optim_wrapper', 'param_scheduler',
    'randomness', 'resume', 'test_cfg', 'test_dataloader', 'test_evaluator',
    'train_cfg', 'train_dataloader', 'tta_model', 'tta_pipeline', 'val_cfg',
    'val_dataloader', 'val_evaluator', 'visualizer')


def leaf_configs():
    """Every runnable config (the fragments under ``_base_`` excluded)."""
    paths = glob.glob(osp.join(CONFIG_DIR, '**', '*.py'), recursive=True)
    return sorted(
        osp.relpath(p, CONFIG_DIR) for p in paths
        if '_base_' not in osp.relpath(p, CONFIG_DIR).split(osp.sep))


def encode(value, where='cfg'):
    """JSON form of a resolved config value (see the module docstring)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f'{where}: non-string key {key!r}')
            out[key] = encode(item, f'{where}.{key}')
        return out
    if isinstance(value, tuple):
        return {'__tuple__': [encode(v, f'{where}[{i}]')
                              for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode(v, f'{where}[{i}]') for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f'{where}: cannot snapshot a {type(value).__name__} '
                    f'({value!r})')


def decode(value):
    """Inverse of :func:`encode` (tuples back; non-finite floats stay
    strings, none is in a config)."""
    if isinstance(value, dict):
        if set(value) == {'__tuple__'}:
            return tuple(decode(v) for v in value['__tuple__'])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def resolve(rel_path):
    """The compared keys of one config, encoded (absent keys are left out)."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(CONFIG_DIR, rel_path)).to_dict()
    return {
        key: encode(cfg[key], key)
        for key in RUNNER_KEYS if key in cfg
    }


def resolve_all():
    return {rel: resolve(rel) for rel in leaf_configs()}


def diff(old, new, where=''):
    """Paths (``model.backbone.arch``) where two encoded values differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            sub = f'{where}.{key}' if where else key
            if key not in old:
                out.append(f'{sub}: added')
            elif key not in new:
                out.append(f'{sub}: removed')
            else:
                out.extend(diff(old[key], new[key], sub))
        return out
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return [f'{where}: length {len(old)} -> {len(new)}']
        out = []
        for i, (a, b) in enumerate(zip(old, new)):
            out.extend(diff(a, b, f'{where}[{i}]'))
        return out
    if old != new or type(old) is not type(new):
        return [f'{where}: {old!r} -> {new!r}']
    return []


def load_snapshot():
    with open(SNAPSHOT, encoding='utf-8') as f:
        return json.load(f)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--write', action='store_true',
                        help=f'write the snapshot to {SNAPSHOT}')
    args = parser.parse_args(argv)
    configs = resolve_all()
    if not args.write:
        snap = load_snapshot()['configs']
        problems = diff(snap, configs)
        print('\n'.join(problems) or 'all configs resolve as in the snapshot')
        return 1 if problems else 0
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=REPO,
                            capture_output=True, text=True,
                            check=True).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain', '--', 'configs'],
                           cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.strip()
    data = dict(
        commit=commit,
        configs_modified_since_commit=bool(dirty),
        note='resolved configs (tests/test_configs/resolved_configs.py)',
        configs=configs)
    with open(SNAPSHOT, 'w', encoding='utf-8') as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write('\n')
    print(f'wrote {len(configs)} configs to {SNAPSHOT} (commit {commit})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
