"""Layer-wise lr decay: the lr and weight decay of every parameter group."""
import pytest
import torch
import torch.nn as nn
from mmengine.optim import build_optim_wrapper

import mmssm  # noqa: F401
from mmssm.models.backbones import Vim
from mmssm.models.necks import SimpleFeaturePyramid

LR, WD, RATE = 1e-3, 0.05, 0.5


class TinyDetector(nn.Module):
    """A detector-like model: backbone, neck and a head outside it."""

    def __init__(self, frozen_stages=-1):
        super().__init__()
        self.backbone = Vim(
            dict(embed_dims=16, num_layers=3, d_state=4), img_size=32,
            frozen_stages=frozen_stages)
        self.neck = SimpleFeaturePyramid(16, out_channels=8, num_outs=4)
        self.head = nn.Linear(8, 2)


def build(model, **paramwise):
    paramwise.setdefault('layer_decay_rate', RATE)
    return build_optim_wrapper(
        model,
        dict(
            optimizer=dict(type='AdamW', lr=LR, weight_decay=WD),
            constructor='SSMLayerDecayOptimWrapperConstructor',
            paramwise_cfg=paramwise))


def expected(name, param):
    """Hand-written rule: depth 0 embeddings, layers.i -> i + 1, the rest
    (norm_f, neck, head) at the top depth 4 of num_depths 5."""
    if name.startswith('backbone.layers.'):
        depth = int(name.split('.')[2]) + 1
    elif name.split('.')[1] in ('patch_embed', 'pos_embed', 'cls_token'):
        depth = 0
    else:
        depth = 4
    lr = LR * RATE**(4 - depth)
    leaf = name.split('.')[-1]
    no_decay = (leaf in ('A_log', 'A_b_log', 'D', 'D_b', 'pos_embed',
                         'cls_token') or param.ndim == 1)
    return lr, 0.0 if no_decay else WD


def lr_wd_of(optim_wrapper):
    result = {}
    for group in optim_wrapper.optimizer.param_groups:
        for name, p in zip(group['param_names'], group['params']):
            result[name] = (group['lr'], group['weight_decay'], p)
    return result


def test_every_group_lr_and_wd():
    model = TinyDetector()
    got = lr_wd_of(build(model))
    names = dict(model.named_parameters())
    assert set(got) == set(names)
    for name, param in names.items():
        lr, wd, p = got[name]
        assert p is param
        exp_lr, exp_wd = expected(name, param)
        assert lr == pytest.approx(exp_lr), name
        assert wd == pytest.approx(exp_wd), name
    # spot checks of the rule itself
    assert got['backbone.layers.0.mixer.in_proj.weight'][:2] == (
        pytest.approx(LR * RATE**3), WD)
    assert got['backbone.layers.2.mixer.A_b_log'][:2] == (
        pytest.approx(LR * RATE), 0.0)
    assert got['backbone.pos_embed'][:2] == (pytest.approx(LR * RATE**4), 0.)
    assert got['backbone.norm_f.weight'][:2] == (pytest.approx(LR), 0.)
    assert got['neck.stages.0.1.weight'][:2] == (pytest.approx(LR), WD)
    assert got['neck.stages.0.2.weight'][:2] == (pytest.approx(LR), 0.)
    assert got['head.weight'][:2] == (pytest.approx(LR), WD)


def test_custom_keys_norm_mult_and_frozen():
    model = TinyDetector(frozen_stages=1)
    got = lr_wd_of(
        build(model, norm_decay_mult=1.0,
              custom_keys={'head': dict(lr_mult=10.0, decay_mult=0.0)}))
    assert 'backbone.layers.0.norm.weight' not in got  # frozen
    assert 'backbone.pos_embed' not in got
    assert got['backbone.layers.1.norm.weight'][1] == WD  # norm mult 1
    assert got['backbone.layers.1.mixer.conv1d.bias'][1] == 0.0  # flat
    assert got['head.weight'][:2] == (pytest.approx(10 * LR), 0.0)


def test_mmpretrain_classifier_and_bare_backbone():
    from mmpretrain.models import ImageClassifier
    model = ImageClassifier(
        backbone=dict(
            type='Vim', arch=dict(embed_dims=16, num_layers=2, d_state=4),
            img_size=32, out_type='cls_token'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=16))
    got = lr_wd_of(build(model))
    assert got['backbone.layers.0.mixer.D'][:2] == (
        pytest.approx(LR * RATE**2), 0.0)
    assert got['head.fc.weight'][:2] == (pytest.approx(LR), WD)
    bare = Vim(dict(embed_dims=16, num_layers=2, d_state=4), img_size=32)
    got = lr_wd_of(build(bare))
    assert got['layers.1.mixer.x_proj.weight'][:2] == (
        pytest.approx(LR * RATE), WD)
    assert got['patch_embed.proj.weight'][0] == pytest.approx(LR * RATE**3)


def test_bad_configs():
    with pytest.raises(TypeError, match='get_layer_depth'):
        build(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(KeyError, match='layer_decay'):
        build(TinyDetector(), layer_decay=0.9)
    with pytest.raises(ValueError, match='layer_decay_rate'):
        build(TinyDetector(), layer_decay_rate=1.5)


class _Flagged(nn.Module):
    """A 2-D weight that decays, a flagged 2-D one that does not, a norm."""

    def __init__(self):
        super().__init__()
        self.keep = nn.Parameter(torch.ones(3, 3))
        self.table = nn.Parameter(torch.ones(3, 3))
        self.table._no_weight_decay = True
        self.ln = nn.LayerNorm(3)


def test_no_weight_decay_flag_is_the_rule():
    """The flag alone takes weight decay off a parameter (whatever its name);
    a hierarchical model without get_layer_depth works with rate 1."""
    model = _Flagged()
    got = lr_wd_of(build(model, layer_decay_rate=1.0))
    assert got['keep'][:2] == (LR, WD)
    assert got['table'][:2] == (LR, 0.0)
    assert got['ln.weight'][:2] == (LR, 0.0)
    # the Mamba and SS2D mixers flag their A and D
    from mmssm.models.layers.mamba import BiMambaMixer
    from mmssm.models.layers.ss2d import SS2D
    for mixer in (BiMambaMixer(8, d_state=4), SS2D(8, d_state=4)):
        flagged = sorted(n for n, p in mixer.named_parameters()
                         if getattr(p, '_no_weight_decay', False))
        assert flagged in (['A_b_log', 'A_log', 'D', 'D_b'], ['A_logs', 'Ds'])


def test_hierarchical_backbone_with_rate_1():
    """MambaOut has no layer depths: every parameter at the base lr, no decay
    on its norms and biases; a rate below 1 is refused by name."""
    from mmssm.models.backbones import MambaOut

    class Net(nn.Module):

        def __init__(self):
            super().__init__()
            self.backbone = MambaOut(
                arch=dict(depths=[1, 1, 1, 1], dims=[8, 8, 16, 16]))
            self.head = nn.Linear(16, 2)

    model = Net()
    got = lr_wd_of(build(model, layer_decay_rate=1.0))
    assert set(got) == {n for n, _ in model.named_parameters()}
    for name, (lr, wd, p) in got.items():
        assert lr == LR, name
        assert wd == (0.0 if p.ndim == 1 else WD), name
    with pytest.raises(TypeError, match='MambaOut has no get_layer_depth'):
        build(Net(), layer_decay_rate=0.9)


def test_backbones_flag_their_no_decay_parameters():
    """The embeddings, class token/registers, level embedding and
    GroupMamba's skip scale carry the flag themselves (with the SSM
    parameters ``A_log``/``D``); weight matrices do not."""
    from mmssm.models.backbones import GroupMamba, PlainAdapter
    models = [
        Vim(dict(embed_dims=16, num_layers=2, d_state=4), img_size=32),
        Vim(dict(embed_dims=16, num_layers=2, d_state=4), img_size=32,
            num_registers=2, cls_position='head', out_type='cls_token'),
        GroupMamba(arch=dict(embed_dims=[16, 32, 48, 64], depths=[1, 1, 1, 1],
                             mlp_ratios=[2, 2, 2, 2], stem_channels=8)),
        PlainAdapter(
            backbone=dict(type='Vim', arch=dict(embed_dims=16, num_layers=4,
                                                d_state=4), img_size=32),
            conv_inplane=8, deform_num_heads=2,
            interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]]),
    ]
    flagged = {
        name.rsplit('.', 1)[-1]
        for m in models for name, p in m.named_parameters()
        if getattr(p, '_no_weight_decay', False)
    }
    assert {'pos_embed', 'pos_embed_cls', 'cls_token', 'level_embed',
            'skip_scale', 'A_log', 'D'} <= flagged, flagged
    assert not any(
        getattr(p, '_no_weight_decay', False)
        for m in models for name, p in m.named_parameters()
        if name.endswith('weight') and p.ndim >= 2)
