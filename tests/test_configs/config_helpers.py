"""What the config tests share: where the configs are, loading one, building
its model without checkpoints, counting parameters, training it a few steps.

The files of ``tests/test_configs/`` import it as ``config_helpers`` (pytest
puts a test file's folder on ``sys.path``); test files elsewhere import it as
``test_configs.config_helpers`` (``tests/`` is on ``sys.path`` because of
``tests/conftest.py``)."""
import copy
import glob
import importlib
import os.path as osp

from mmengine.config import Config
from mmengine.registry import DefaultScope

CONFIG_DIR = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs')


def config_paths(family):
    """The config files of ``configs/<family>/``, sorted."""
    return sorted(glob.glob(osp.join(CONFIG_DIR, family, '*.py')))


def load(family, name):
    """``configs/<family>/<name>`` resolved by mmengine."""
    return Config.fromfile(osp.join(CONFIG_DIR, family, name))


def build_model(cfg, scope=None):
    """The model of ``cfg`` from the registry of its ``default_scope`` (which
    must be ``scope`` when that is given), with
    its ``custom_imports`` imported and the backbone's ``init_cfg`` dropped
    (no checkpoint files in the tests), also that of a wrapped backbone
    (``PlainAdapter``'s ``backbone``); ``cfg`` is left as it is."""
    if scope is not None:
        assert cfg.default_scope == scope, (cfg.default_scope, scope)
    scope = cfg.default_scope
    importlib.import_module(f'{scope}.utils').register_all_modules(
        init_default_scope=False)
    for module in cfg.get('custom_imports', {}).get('imports', []):
        importlib.import_module(module)
    model_cfg = copy.deepcopy(cfg.model)
    if model_cfg.get('backbone') is not None:
        model_cfg.backbone.pop('init_cfg', None)
        inner = model_cfg.backbone.get('backbone')
        if isinstance(inner, dict):
            inner.pop('init_cfg', None)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        return registry.build(model_cfg)


def num_params(module):
    return sum(p.numel() for p in module.parameters())


def train_steps(model, data, steps, hook=None):
    """Train ``model`` (an mmengine ``BaseModel``) on the fixed batch ``data``
    for ``steps`` AdamW steps (lr 1e-3). With an ``SLWSHook`` ``hook``, it is
    attached for the run and draws its shuffles before each step. Returns
    the total loss of each step (before its update)."""
    import torch
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    model.train()
    if hook is not None:
        hook.attach(model)
    for it in range(steps):
        if hook is not None:
            hook.draw(it)
        batch = model.data_preprocessor(data, training=True)
        loss, _ = model.parse_losses(model(**batch, mode='loss'))
        optim.zero_grad()
        loss.backward()
        optim.step()
        if hook is not None:
            hook.clear()
        losses.append(loss.item())
    if hook is not None:
        hook.detach()
    return losses
