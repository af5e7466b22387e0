"""The shared backbone base: one meaning of frozen_stages, norm_eval only
with BatchNorm, one with_cp rule, the official init helper, the public
plain-backbone interface that SLWSHook and PlainAdapter both use, and one
checkpoint path: a wrong checkpoint (another family's, or a truncated file)
given to any backbone through ``init_cfg`` Pretrained, ``load_from`` (the
tools' check and ``mmengine.runner.load_checkpoint``) or a converter CLI
stops with a message naming the problem; ``strict=False`` loads what fits."""
import os.path as osp
import runpy
import sys
from types import SimpleNamespace
from unittest import mock

import pytest
import torch
import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.runner import load_checkpoint

import mmssm  # noqa: F401
from mmssm.apis import check_checkpoint_file, check_checkpoint_fits
from mmssm.engine.hooks import SLWSHook
from mmssm.models.backbones import GroupMamba, MambaOut, PlainAdapter, Vim
from mmssm.models.backbones.base import PlainBackboneMixin
from mmssm.models.layers import backbone_utils
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
    return Vim(dict(embed_dims=16, num_layers=4, d_state=4), img_size=32,
               mixer_cfg=dict(scan_impl='ref'), **kw)


#: family -> (builder, parameter-name prefixes of the stem, of stage i)
FAMILIES = {
    'MambaOut': (mambaout, ('downsample_layers.0.', ), lambda i: (
        f'stages.{i}.', f'norm{i}.') + ((f'downsample_layers.{i}.', )
                                        if i else ())),
    'GroupMamba': (groupmamba, ('stem.', ), lambda i: (
        f'stages.{i}.', f'norms.{i}.') + ((f'downsamples.{i - 1}.', )
                                          if i else ())),
    'Vim': (vim, ('patch_embed.', 'pos_embed', 'cls_token'),
            lambda i: (f'layers.{i}.', ) + (('norm_f.', ) if i == 3 else ())),
}


@pytest.mark.parametrize('family', list(FAMILIES))
@pytest.mark.parametrize('frozen_stages', [-1, 0, 1, 4])
def test_frozen_stages_has_one_meaning(family, frozen_stages):
    """-1 nothing, 0 the stem, k the stem and the first k stages, in every
    family (names written out per family above, not taken from the code)."""
    build, stem, stage = FAMILIES[family]
    model = build(frozen_stages=frozen_stages).train()
    expected = ()
    if frozen_stages >= 0:
        expected = stem + sum((stage(i) for i in range(frozen_stages)), ())
    for name, param in model.named_parameters():
        frozen = name.startswith(expected) if expected else False
        assert param.requires_grad is not frozen, name
    for name, module in model.named_modules():
        if name and expected and name.startswith(
                tuple(p.rstrip('.') for p in expected)):
            assert not module.training, name
    with pytest.raises(ValueError, match=r'frozen_stages must be an int in '
                       r'\[-1, 4\].*got 5'):
        build(frozen_stages=5)


def test_norm_eval_only_with_batch_norm():
    for build in (mambaout, vim):
        with pytest.raises(ValueError, match='has no BatchNorm layer, so '
                           'norm_eval=True'):
            build(norm_eval=True)
    with pytest.raises(ValueError, match='PlainAdapter has no BatchNorm'):
        PlainAdapter(vim(), deform_num_heads=2, conv_inplane=8,
                     norm_cfg=dict(type='LN'), norm_eval=True)
    with pytest.raises(ValueError, match='GroupMamba has no BatchNorm'):
        groupmamba(stem_norm_cfg=dict(type='GN', num_groups=2),
                   norm_eval=True)
    model = groupmamba(norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 3 and not any(m.training for m in bns)
    assert model.stages[0].training
    # the adapter's norm_eval covers its own BatchNorms only
    adapter = PlainAdapter(vim(), deform_num_heads=2, conv_inplane=8,
                           norm_cfg=dict(type='BN'), norm_eval=True).train()
    bns = [m for m in adapter.modules() if isinstance(m, nn.BatchNorm2d)]
    # spatial prior: 3 stem convs + 3 strided convs; 4 output norms
    assert len(bns) == 10 and not any(m.training for m in bns)


def test_every_family_checkpoints_each_block_in_training_only():
    """The with_cp rule (tests/test_models/test_layers/test_backbone_utils.py)
    holds for every family: one checkpoint call per block in training."""
    for build, blocks in ((mambaout, 4), (groupmamba, 4), (vim, 4)):
        model = build(with_cp=True).train()
        with mock.patch.object(backbone_utils.cp, 'checkpoint',
                               wraps=backbone_utils.cp.checkpoint) as spy:
            model(torch.randn(1, 3, 32, 32))
            assert spy.call_count == blocks, type(model).__name__
            model.eval()
            model(torch.randn(1, 3, 32, 32))
            assert spy.call_count == blocks


class ToyPlain(PlainBackboneMixin, nn.Module):
    """A minimal plain backbone implementing the interface: 16x16 patches,
    a class token first, layers that mix tokens in order (cumulative mean),
    so that any change of the token order changes the result."""

    in_channels = 3
    token_stride = 16
    with_cp = False

    def __init__(self, dims=8, depth=4):
        super().__init__()
        self.embed_dims = dims
        self.num_layers = depth
        self.proj = nn.Conv2d(3, dims, 16, 16)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dims))
        self.layers = nn.ModuleList(ToyLayer(dims) for _ in range(depth))
        self.run_layer_calls = []

    def grid_size(self, h, w):
        return -(-h // 16), -(-w // 16)

    def prepare_tokens(self, x):
        tokens = self.proj(x)
        grid = tuple(tokens.shape[-2:])
        tokens = tokens.flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        return torch.cat([cls, tokens], 1), grid, 0

    def token_layout(self, grid, device=None):
        index = torch.arange(grid[0] * grid[1] + 1, device=device)
        return index[1:], index[:1]

    def run_layer(self, index, hidden, residual):
        self.run_layer_calls.append(index)
        return super().run_layer(index, hidden, residual)

    def final_stream_norm(self, stream):
        return stream

    def get_layer_depth(self, name, prefix=''):
        return self.num_layers + 1, self.num_layers + 2

    def forward(self, x):
        hidden, _, _ = self.prepare_tokens(x)
        residual = None
        for index in range(self.num_layers):
            hidden, residual = self.run_layer(index, hidden, residual)
        return residual + hidden


class ToyLayer(nn.Module):

    def __init__(self, dims):
        super().__init__()
        self.fc = nn.Linear(dims, dims)

    def forward(self, hidden, residual=None):
        residual = hidden if residual is None else residual + hidden
        steps = torch.arange(1, residual.shape[1] + 1).view(1, -1, 1)
        return self.fc(residual.cumsum(1) / steps), residual


def test_toy_plain_backbone_gets_slws_and_the_adapter():
    torch.manual_seed(0)
    toy = ToyPlain()
    x = torch.randn(2, 3, 64, 80)
    # SLWSHook: shuffles the toy's layers (their outputs change) ...
    model = nn.Module()
    model.backbone = toy
    hook = SLWSHook(prob=1.0, seed=0)
    hook.attach(model)
    assert hook.layers is toy.layers
    toy.train()
    plain = toy(x)
    hook._active = {i: True for i in range(4)}
    assert not torch.allclose(toy(x), plain)
    hook.clear()
    torch.testing.assert_close(toy(x), plain, rtol=0, atol=0)
    hook.detach()
    # ... and PlainAdapter runs it layer by layer through run_layer
    adapter = PlainAdapter(toy, deform_num_heads=2, conv_inplane=8,
                           norm_cfg=dict(type='BN')).eval()
    toy.run_layer_calls.clear()
    with torch.no_grad():
        outs = adapter(torch.randn(1, 3, 70, 90))
    assert toy.run_layer_calls == [0, 1, 2, 3]
    assert [tuple(o.shape[-2:]) for o in outs] == [(18, 23), (9, 12), (5, 6),
                                                   (3, 3)]
    assert adapter.get_layer_depth('backbone.spm.fc1.weight',
                                   'backbone.') == (5, 6)
    # the hook finds the toy inside the adapter
    wrapper = nn.Module()
    wrapper.backbone = adapter
    assert SLWSHook.find_backbone(wrapper) is toy


def test_backbone_without_the_interface_is_refused_by_both():

    class LayersOnly(nn.Module):

        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Identity()])
            self.embed_dims = 8

    missing = (r"LayersOnly lacks \['in_channels', 'num_layers', "
               r"'token_stride', 'grid_size', 'prepare_tokens', "
               r"'token_layout', 'run_layer', 'final_stream_norm'\]")
    with pytest.raises(TypeError, match='SLWSHook needs a plain mmssm '
                       'sequence backbone.*' + missing):
        SLWSHook().attach(LayersOnly())
    with pytest.raises(TypeError, match='PlainAdapter needs a plain mmssm '
                       'sequence backbone.*' + missing):
        PlainAdapter(LayersOnly())
    toy = ToyPlain()
    toy.num_layers = 3  # does not match its 4 layers
    with pytest.raises(TypeError, match='num_layers=3'):
        SLWSHook().attach(toy)
    # a hierarchical backbone is not a plain one
    with pytest.raises(TypeError, match='MambaOut lacks'):
        SLWSHook().attach(mambaout())


# ---------------------------------------------------------------------------
# One checkpoint path
# ---------------------------------------------------------------------------
def adapter(**kw):
    return PlainAdapter(
        dict(type='Vim', arch=dict(embed_dims=16, num_layers=4, d_state=4),
             img_size=32, mixer_cfg=dict(scan_impl='ref')),
        conv_inplane=8, deform_num_heads=2, norm_cfg=dict(type='BN'), **kw)


CKPT_FAMILIES = dict(MambaOut=mambaout, GroupMamba=groupmamba, Vim=vim,
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
    state = {prefix + k: v for k, v in CKPT_FAMILIES[family]().state_dict()
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


@pytest.mark.parametrize('family', list(CKPT_FAMILIES))
def test_init_cfg_pretrained_refuses_another_familys_checkpoint(
        tmp_path, family):
    path = _save(tmp_path, 'wrong', WRONG[family])
    model = CKPT_FAMILIES[family](init_cfg=dict(type='Pretrained',
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


@pytest.mark.parametrize('family', list(CKPT_FAMILIES))
def test_init_cfg_pretrained_refuses_a_truncated_file(tmp_path, family):
    path = _truncated(tmp_path, family)
    model = CKPT_FAMILIES[family](init_cfg=dict(type='Pretrained',
                                           checkpoint=path))
    with pytest.raises(CheckpointError, match='truncated or corrupt'):
        model.init_weights()


@pytest.mark.parametrize('family', list(CKPT_FAMILIES))
def test_init_cfg_pretrained_own_checkpoint_round_trip(tmp_path, family):
    """The same family's checkpoint (bare, or under ``backbone.`` of a
    detector file) loads strictly and gives the same weights."""
    torch.manual_seed(3)
    source = CKPT_FAMILIES[family]()
    for i, (prefix, wrap) in enumerate((('', 'state_dict'),
                                        ('backbone.', 'state_dict'),
                                        ('', None))):
        path = str(tmp_path / f'own{i}.pth')
        state = {prefix + k: v for k, v in source.state_dict().items()}
        if prefix:
            state['neck.conv.weight'] = torch.zeros(2)
        torch.save({wrap: state} if wrap else state, path)
        torch.manual_seed(4)
        model = CKPT_FAMILIES[family](init_cfg=dict(type='Pretrained',
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
    source = CKPT_FAMILIES[family]()
    state = source.state_dict()
    dropped = PARTIAL_KEY[family]
    del state[dropped]
    state['extra.weight'] = torch.ones(3)
    path = str(tmp_path / 'partial.pth')
    torch.save(dict(state_dict=state), path)
    torch.manual_seed(6)
    model = CKPT_FAMILIES[family](init_cfg=dict(type='Pretrained',
                                           checkpoint=path))
    with pytest.raises(CheckpointError,
                       match=rf'missing in the checkpoint \(1\): {dropped}'
                       r'\nunexpected \(not in the model\) \(1\): '
                       r'extra\.weight'):
        model.init_weights()
    torch.manual_seed(6)
    model = CKPT_FAMILIES[family](init_cfg=dict(
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
        self.backbone = CKPT_FAMILIES[family]()
        self.neck = nn.Linear(2, 2)


@pytest.mark.parametrize('family', list(CKPT_FAMILIES))
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


@pytest.mark.parametrize('family', list(CKPT_FAMILIES))
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
