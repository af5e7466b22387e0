"""Registries of mmssm.

Every public mmssm component is registered twice:

* in the ``mmssm`` scoped child registries defined here, so that
  ``type='mmssm.MambaOut'`` resolves from any scope;
* in mmengine's root registries, so that a plain ``type='MambaOut'`` resolves
  under the mmdet, mmseg and mmpretrain default scopes alike (a child registry
  looks up its parents up to the root, never its siblings).

Names are chosen so that no downstream OpenMMLab package uses them.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import Registry

MODELS = Registry(
    'model', parent=MMENGINE_MODELS, scope='mmssm', locations=['mmssm.models'])
HOOKS = Registry(
    'hook', parent=MMENGINE_HOOKS, scope='mmssm', locations=['mmssm.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    scope='mmssm',
    locations=['mmssm.engine'])

_ROOTS = {
    id(MODELS): MMENGINE_MODELS,
    id(HOOKS): MMENGINE_HOOKS,
    id(OPTIM_WRAPPER_CONSTRUCTORS): MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
}


def _register(registry, name=None):
    """Decorator registering a class in ``registry`` and in its mmengine root."""

    def wrap(cls):
        root = _ROOTS[id(registry)]
        key = name or cls.__name__
        existing = root.module_dict.get(key)
        if existing is not None and existing is not cls:
            raise KeyError(
                f'{key} is already registered in mmengine\'s root '
                f'{root.name} registry by {existing.__module__}; mmssm '
                'components must use names no other package uses')
        registry.register_module(name=key, module=cls)
        if existing is None:
            root.register_module(name=key, module=cls)
        return cls

    return wrap


def register_model(name=None):
    """Register a model component (backbone, neck, loss, layer)."""
    return _register(MODELS, name)


def register_hook(name=None):
    """Register an mmengine hook."""
    return _register(HOOKS, name)


def register_optim_constructor(name=None):
    """Register an optimizer wrapper constructor."""
    return _register(OPTIM_WRAPPER_CONSTRUCTORS, name)
