"""Every mmssm component resolves as ``type='X'`` under the mmdet, mmseg and
mmpretrain default scopes and as ``type='mmssm.X'``."""
import importlib

import pytest
from mmengine.registry import DefaultScope

import mmssm  # noqa: F401
from mmssm.registry import HOOKS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS

SCOPES = {
    'mmdet': 'mmdet.registry',
    'mmseg': 'mmseg.registry',
    'mmpretrain': 'mmpretrain.registry',
}
KINDS = {
    'MODELS': MODELS,
    'HOOKS': HOOKS,
    'OPTIM_WRAPPER_CONSTRUCTORS': OPTIM_WRAPPER_CONSTRUCTORS,
}


def test_core_components_are_registered():
    assert 'MambaOut' in MODELS.module_dict


@pytest.mark.parametrize('scope', list(SCOPES))
@pytest.mark.parametrize('kind', list(KINDS))
def test_every_component_resolves_in_every_scope(scope, kind):
    own = KINDS[kind]
    downstream = getattr(importlib.import_module(SCOPES[scope]), kind)
    names = list(own.module_dict)
    if kind == 'MODELS':
        assert names, 'no model registered'
    with DefaultScope.overwrite_default_scope(scope):
        for name, cls in own.module_dict.items():
            assert downstream.get(f'mmssm.{name}') is cls, (scope, name)
            if name in downstream.module_dict:
                # the downstream package defines the same name (mmpretrain's
                # own 'LN2d'): its child registry wins for the plain name
                continue
            assert downstream.get(name) is cls, (scope, name)


@pytest.mark.parametrize('scope', list(SCOPES))
def test_build_mambaout_from_downstream_scope(scope):
    downstream = importlib.import_module(SCOPES[scope]).MODELS
    arch = dict(depths=[1, 1, 1, 1], dims=[8, 16, 24, 32])
    with DefaultScope.overwrite_default_scope(scope):
        a = downstream.build(dict(type='MambaOut', arch=arch))
        b = downstream.build(dict(type='mmssm.MambaOut', arch=arch))
    assert type(a) is type(b) is MODELS.get('MambaOut')


def test_register_refuses_names_taken_in_the_root():
    from mmssm.registry import register_model
    with pytest.raises(KeyError, match='already registered'):

        @register_model(name='ImgDataPreprocessor')  # mmengine's own
        class Clash:
            pass
    assert 'ImgDataPreprocessor' not in MODELS.module_dict
