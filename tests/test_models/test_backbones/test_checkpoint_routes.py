"""One checkpoint path: a wrong checkpoint (another family's, or a truncated
file) given to any backbone through ``init_cfg`` Pretrained, ``load_from``
(the tools' check and ``mmengine.runner.load_checkpoint``) or a converter CLI
stops with a message naming the problem; ``strict=False`` loads what fits."""
import os.path as osp
import runpy
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.runner import load_checkpoint

import mmssm  # noqa: F401
from mmssm.apis import check_checkpoint_file, check_checkpoint_fits
from mmssm.models.backbones import GroupMamba, MambaOut, PlainAdapter, Vim
from mmssm.utils.checkpoint import CheckpointError

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(__file__))))


def mambaout(**kw):
    return MambaOut(dict(depths=[1, 1, 1, 1], dims=[8, 16, 24, 32]), **kw)


def groupmamba(**kw):
    return GroupMamba(
        dict(embed_dims=[16, 32, 48, 64], depths=[1, 1, 1, 1],
             mlp_ratios=[2, 2, 2, 2], stem_channels=8),
        scan_impl='ref', **kw)


def vim(**kw):
    return Vim(dict(embed_dims=16, num_layers=2, d_state=4), img_size=32,
               mixer_cfg=dict(scan_impl='ref'), **kw)


def adapter(**kw):
    return PlainAdapter(
        dict(type='Vim', arch=dict(embed_dims=16, num_layers=4, d_state=4),
             img_size=32, mixer_cfg=dict(scan_impl='ref')),
        conv_inplane=8, deform_num_heads=2, norm_cfg=dict(type='BN'), **kw)


FAMILIES = dict(MambaOut=mambaout, GroupMamba=groupmamba, Vim=vim,
                PlainAdapter=adapter)
#: target family -> the family whose checkpoint it is wrongly given
WRONG = dict(MambaOut='GroupMamba', GroupMamba='Vim', Vim='MambaOut',
             PlainAdapter='MambaOut')
#: a key each family has and the others do not
OWN_KEY = {
    'MambaOut': 'downsample_layers.0.conv1.weight',
    'GroupMamba': 'stem.convs.0.conv.weight',
    'Vim': 'layers.0.mixer.A_log',
    'PlainAdapter': 'spm.stem.0.weight',
}


def _save(tmp_path, name, family, wrap='state_dict', prefix=''):
    torch.manual_seed(1)
    state = {prefix + k: v for k, v in FAMILIES[family]().state_dict()
             .items()}
    path = str(tmp_path / f'{name}.pth')
    torch.save({wrap: state} if wrap else state, path)
    return path


def _truncated(tmp_path, family):
    path = _save(tmp_path, 'full', family)
    with open(path, 'rb') as f:
        data = f.read()
    broken = str(tmp_path / 'truncated.pth')
    with open(broken, 'wb') as f:
        f.write(data[:len(data) // 2])
    return broken


@pytest.mark.parametrize('family', list(FAMILIES))
def test_init_cfg_pretrained_refuses_another_familys_checkpoint(
        tmp_path, family):
    path = _save(tmp_path, 'wrong', WRONG[family])
    model = FAMILIES[family](init_cfg=dict(type='Pretrained',
                                           checkpoint=path))
    with pytest.raises(CheckpointError) as info:
        model.init_weights()
    msg = str(info.value)
    assert path in msg
    if family == 'MambaOut':
        # GroupMamba's ``stem.*`` reads as timm MambaOut keys: the
        # conversion names the first key that is not MambaOut's
        assert (f'cannot be loaded into MambaOut: '
                f"'{OWN_KEY[WRONG[family]]}' is not a key of an official, "
                'timm or mmssm MambaOut checkpoint') in msg
    else:
        # names keys of both sides: one the model misses, one it does not
        # know
        assert f'does not fit {family}' in msg
        assert 'missing in the checkpoint' in msg
        assert 'unexpected (not in the model)' in msg
        assert OWN_KEY[family] in msg or OWN_KEY[WRONG[family]] in msg


@pytest.mark.parametrize('family', list(FAMILIES))
def test_init_cfg_pretrained_refuses_a_truncated_file(tmp_path, family):
    path = _truncated(tmp_path, family)
    model = FAMILIES[family](init_cfg=dict(type='Pretrained',
                                           checkpoint=path))
    with pytest.raises(CheckpointError, match='truncated or corrupt'):
        model.init_weights()


@pytest.mark.parametrize('family', list(FAMILIES))
def test_init_cfg_pretrained_own_checkpoint_round_trip(tmp_path, family):
    """The same family's checkpoint (bare, or under ``backbone.`` of a
    detector file) loads strictly and gives the same weights."""
    torch.manual_seed(3)
    source = FAMILIES[family]()
    for i, (prefix, wrap) in enumerate((('', 'state_dict'),
                                        ('backbone.', 'state_dict'),
                                        ('', None))):
        path = str(tmp_path / f'own{i}.pth')
        state = {prefix + k: v for k, v in source.state_dict().items()}
        if prefix:
            state['neck.conv.weight'] = torch.zeros(2)
        torch.save({wrap: state} if wrap else state, path)
        torch.manual_seed(4)
        model = FAMILIES[family](init_cfg=dict(type='Pretrained',
                                               checkpoint=path))
        model.init_weights()
        for key, value in source.state_dict().items():
            assert torch.equal(model.state_dict()[key], value), key


#: a randomly initialised weight of each family
PARTIAL_KEY = dict(MambaOut='stages.1.0.fc1.weight',
                   GroupMamba='stages.1.0.ffn.fc1.weight',
                   Vim='layers.0.mixer.in_proj.weight')


@pytest.mark.parametrize('family', list(PARTIAL_KEY))
def test_strict_false_loads_what_fits(tmp_path, family):
    torch.manual_seed(5)
    source = FAMILIES[family]()
    state = source.state_dict()
    dropped = PARTIAL_KEY[family]
    del state[dropped]
    state['extra.weight'] = torch.ones(3)
    path = str(tmp_path / 'partial.pth')
    torch.save(dict(state_dict=state), path)
    torch.manual_seed(6)
    model = FAMILIES[family](init_cfg=dict(type='Pretrained',
                                           checkpoint=path))
    with pytest.raises(CheckpointError,
                       match=rf'missing in the checkpoint \(1\): {dropped}'
                       r'\nunexpected \(not in the model\) \(1\): '
                       r'extra\.weight'):
        model.init_weights()
    torch.manual_seed(6)
    model = FAMILIES[family](init_cfg=dict(
        type='Pretrained', checkpoint=path, strict=False))
    model.init_weights()
    loaded = model.state_dict()
    for key, value in state.items():
        if key != 'extra.weight':
            assert torch.equal(loaded[key], value), key
    assert not torch.equal(loaded[dropped], source.state_dict()[dropped])


def test_pretrained_cfg_with_unknown_option_is_refused(tmp_path):
    path = _save(tmp_path, 'own', 'MambaOut')
    model = mambaout(init_cfg=dict(type='Pretrained', checkpoint=path,
                                   stric=False))
    with pytest.raises(ValueError, match=r"takes checkpoint.*'stric'"):
        model.init_weights()


class Detector(nn.Module):

    def __init__(self, family):
        super().__init__()
        self.backbone = FAMILIES[family]()
        self.neck = nn.Linear(2, 2)


@pytest.mark.parametrize('family', list(FAMILIES))
def test_load_from_refuses_another_familys_checkpoint(tmp_path, family):
    path = _save(tmp_path, 'wrong', WRONG[family], prefix='backbone.')
    model = Detector(family)
    # tools/train.py and tools/test.py: checked before loading
    shapes = check_checkpoint_file(path, 'load_from')
    runner = SimpleNamespace(model=model,
                             logger=MMLogger.get_instance('routes'))
    with pytest.raises(SystemExit) as info:
        check_checkpoint_fits(runner, shapes, path)
    msg = str(info.value)
    saved = torch.load(path)['state_dict']
    first_missing = next(k for k in model.state_dict() if k not in saved)
    assert 'does not fit the model' in msg
    assert 'missing in the checkpoint' in msg and first_missing in msg
    # mmengine's loader (what the runner calls), strictly: the pre-hook's
    # conversion refuses GroupMamba's keys for MambaOut, torch lists the
    # missing keys for the others
    with pytest.raises((RuntimeError, ValueError)) as info:
        load_checkpoint(model, path, strict=True, logger='silent')
    if family == 'MambaOut':
        assert "'stem.convs.0.conv.weight' is not a key" in str(info.value)
    else:
        assert 'missing keys in source' in str(info.value)
        assert first_missing in str(info.value)


@pytest.mark.parametrize('family', list(FAMILIES))
def test_load_from_refuses_a_truncated_file(tmp_path, family):
    path = _truncated(tmp_path, family)
    with pytest.raises(SystemExit, match='load_from: .*truncated or corrupt'):
        check_checkpoint_file(path, 'load_from')


CONVERTERS = dict(MambaOut='mambaout2mmssm.py',
                  GroupMamba='groupmamba2mmssm.py', Vim='vim2mmssm.py')
#: what each converter says about the other family's keys
CONVERTER_MESSAGE = dict(
    MambaOut=r"is not a key of an official, timm or mmssm MambaOut",
    GroupMamba=r'unexpected official GroupMamba key',
    Vim=r'keys not in the official Vim layout')


def _convert(monkeypatch, family, src, dst):
    script = osp.join(REPO, 'tools', 'model_converters', CONVERTERS[family])
    monkeypatch.setattr(sys, 'argv', [script, src, dst])
    runpy.run_path(script, run_name='__main__')


@pytest.mark.parametrize('family', list(CONVERTERS))
def test_converter_refuses_another_familys_checkpoint(tmp_path, monkeypatch,
                                                      family):
    src = _save(tmp_path, 'wrong', WRONG[family], wrap='model')
    dst = str(tmp_path / 'out.pth')
    with pytest.raises(SystemExit,
                       match=rf'cannot convert .*wrong\.pth.*: '
                       rf'.*{CONVERTER_MESSAGE[family]}'):
        _convert(monkeypatch, family, src, dst)
    assert not osp.exists(dst)


@pytest.mark.parametrize('family', list(CONVERTERS))
def test_converter_refuses_a_truncated_file(tmp_path, monkeypatch, family):
    src = _truncated(tmp_path, family)
    dst = str(tmp_path / 'out.pth')
    with pytest.raises(SystemExit, match='truncated or corrupt'):
        _convert(monkeypatch, family, src, dst)
    assert not osp.exists(dst)
