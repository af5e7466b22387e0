"""What the config tests share: where the configs are, loading one, building
its model without checkpoints, counting parameters."""
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


def build_model(cfg):
    """The model of ``cfg`` from the registry of its ``default_scope``, with
    its ``custom_imports`` imported and the backbone's ``init_cfg`` dropped
    (no checkpoint files in the tests); ``cfg`` is left as it is."""
    scope = cfg.default_scope
    importlib.import_module(f'{scope}.utils').register_all_modules(
        init_default_scope=False)
    for module in cfg.get('custom_imports', {}).get('imports', []):
        importlib.import_module(module)
    model_cfg = copy.deepcopy(cfg.model)
    if model_cfg.get('backbone') is not None:
        model_cfg.backbone.pop('init_cfg', None)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        return registry.build(model_cfg)


def num_params(module):
    return sum(p.numel() for p in module.parameters())
