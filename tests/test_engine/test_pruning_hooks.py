"""Pruning hooks (issue #17): the cosine schedule's exact zero counts, masks
through SGD/AdamW steps, checkpoints and a real resume, the exempt layers'
fraction, the gradient criterion, iterative rounds with rewinding, early-bird
masks and tickets, tools/model_converters/prune2dense.py and
tools/analysis_tools/sparsity.py against hand counts."""
import copy
import importlib.util
import math
import os.path as osp
import types
import uuid

import pytest
import torch
import torch.nn as nn
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.registry import MODELS as ROOT_MODELS

from mmssm.engine.hooks import (EarlyBirdHook, IterativePruningHook,
                                MagnitudePruningHook)
from mmssm.engine.hooks.pruning import (EARLY_BIRD_KEY, PRUNING_KEY,
                                        apply_channel_masks, cosine_sparsity,
                                        mask_hamming)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _tool(folder, name):
    spec = importlib.util.spec_from_file_location(
        name, osp.join(ROOT, 'tools', folder, name + '.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _mlp(seed=0):
    torch.manual_seed(seed)
    # prunable: '0' (8x4 = 32), '2' (8x8 = 64), '4' (2x8 = 16)
    return nn.Sequential(
        nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
        nn.Linear(8, 2))


class _Logger:

    def __init__(self):
        self.lines = []

    def info(self, msg):
        self.lines.append(msg)

    warning = info


_HUBS = iter(range(10**6))


def _runner(model, work_dir=None):
    return types.SimpleNamespace(
        model=model, iter=0, epoch=0, logger=_Logger(), work_dir=work_dir,
        message_hub=MessageHub.get_instance(f'prune_test_{next(_HUBS)}'))


def _zeros(model):
    return {n: int((m.weight == 0).sum())
            for n, m in model.named_modules() if isinstance(m, nn.Linear)}


def _train(hook, runner, optimizer, steps, check=None):
    """Iterations as mmengine runs them: hooks around forward, backward,
    step and zero_grad (grads set to None)."""
    model = runner.model
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        hook.before_train_iter(runner, runner.iter)
        x = torch.randn(6, 4, generator=gen)
        model(x).pow(2).sum().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if check is not None:
            check('after_step')
        hook.after_train_iter(runner, runner.iter)
        if check is not None:
            check('after_hook')
        runner.iter += 1


def test_cosine_schedule_exact_counts_and_exempt_fraction():
    model = _mlp()
    runner = _runner(model)
    hook = MagnitudePruningHook(target=0.6, begin=0, end=10, interval=5)
    hook.before_train(runner)
    assert hook.exempt_names == ['0', '4']
    # s(5) = 0.6 * (1 - cos(pi / 2)) / 2 = 0.3, s(10) = 0.6
    assert cosine_sparsity(5, 0.6, 0, 10) == pytest.approx(0.3)
    assert cosine_sparsity(10, 0.6, 0, 10) == 0.6
    assert cosine_sparsity(0, 0.6, 0, 10) == 0.0
    assert cosine_sparsity(2.5, 0.6, 0, 10) == pytest.approx(
        0.6 * (1 - math.cos(math.pi / 4)) / 2)
    expected = {
        # exempt '0', '4' at 0.5 * s: floor(0.15 * 32) = 4,
        # floor(0.15 * 16) = 2; '2' at s: floor(0.3 * 64) = 19
        5: {'0': 4, '2': 19, '4': 2},
        # floor(0.3 * 32) = 9, floor(0.6 * 64) = 38, floor(0.3 * 16) = 4
        10: {'0': 9, '2': 38, '4': 4},
    }
    seen = {}
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # weights unchanged
    for t in range(1, 13):
        _train(hook, runner, opt, 1)
        seen[t] = _zeros(model)
    for t in range(1, 5):
        assert seen[t] == {'0': 0, '2': 0, '4': 0}
    for t in range(5, 10):
        assert seen[t] == expected[5]
    for t in (10, 11, 12):
        assert seen[t] == expected[10]
    assert runner.message_hub.get_scalar('train/sparsity').current() == (
        pytest.approx((9 + 38 + 4) / (32 + 64 + 16)))
    assert any('scheduled sparsity 0.6000' in line
               for line in runner.logger.lines)
    # the lowest magnitudes went (lr 0: the weights are the initial ones)
    w0 = _mlp()[2].weight.detach().abs()
    assert w0[hook.masks['2']].min() >= w0[~hook.masks['2']].max()
    assert torch.all(model[2].weight[~hook.masks['2']] == 0)
    # prune steps: begin + k * interval up to end, and end itself
    h = MagnitudePruningHook(target=0.5, begin=2, end=13, interval=5)
    assert [t for t in range(20) if h.is_prune_step(t)] == [7, 12, 13]


def test_lowest_magnitudes_pruned_global_vs_layer():
    def model():
        m = nn.Sequential(nn.Linear(4, 2, bias=False),
                          nn.Linear(2, 2, bias=False))
        with torch.no_grad():
            m[0].weight.copy_(torch.arange(1., 9.).view(2, 4))
            m[1].weight.copy_(torch.tensor([[.4, -.1], [.3, .2]]))
        return m

    glob = MagnitudePruningHook(target=0.5, exempt=None)
    glob.setup(model())
    glob.prune(0.5)
    # floor(0.5 * 12) = 6: the 4 weights of '1' and 1, 2 of '0'
    assert glob.masks['1'].sum() == 0
    assert glob.masks['0'].flatten().tolist() == [False, False] + [True] * 6
    layer = MagnitudePruningHook(target=0.5, exempt=None, scope='layer')
    m = model()
    layer.setup(m)
    layer.prune(0.5)
    assert layer.masks['0'].flatten().tolist() == [False] * 4 + [True] * 4
    assert layer.masks['1'].flatten().tolist() == [True, False, True, False]
    assert (m[1].weight == 0).sum() == 2
    # exempt by name: '1' at half of 0.5 -> floor(0.25 * 4) = 1
    named = MagnitudePruningHook(target=0.5, exempt=['1'])
    named.setup(model())
    named.prune(0.5)
    assert (~named.masks['1']).sum() == 1 and (~named.masks['0']).sum() == 4


@pytest.mark.parametrize('make_opt', [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.05),
    lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
], ids=['sgd_momentum', 'adamw'])
def test_pruned_weights_stay_zero_through_optimizer_steps(make_opt):
    model = _mlp()
    runner = _runner(model)
    hook = MagnitudePruningHook(target=0.6, begin=0, end=6, interval=2)
    hook.before_train(runner)
    opt = make_opt(model.parameters())
    moved = []

    def check(when):
        for n, m in hook.masks.items():
            pruned = hook.layers[n].weight.detach()[~m]
            if when == 'after_hook':
                assert torch.all(pruned == 0), n
            elif pruned.numel() and torch.any(pruned != 0):
                moved.append(n)

    _train(hook, runner, opt, 12, check)
    assert moved, 'the optimizer never moved a pruned weight'
    assert hook.overall_sparsity() == pytest.approx(
        (9 + 38 + 4) / 112)  # floor(.3 * 32), floor(.6 * 64), floor(.3 * 16)


def test_masks_survive_save_and_load_into_a_fresh_hook(tmp_path):
    model = _mlp()
    runner = _runner(model)
    hook = MagnitudePruningHook(target=0.6, begin=0, end=4, interval=2)
    hook.before_train(runner)
    _train(hook, runner, torch.optim.SGD(model.parameters(), lr=0.1), 5)
    ckpt = {}
    hook.before_save_checkpoint(runner, ckpt)
    torch.save(ckpt, tmp_path / 'c.pth')
    ckpt = torch.load(tmp_path / 'c.pth', weights_only=True)
    fresh_model = _mlp(seed=5)  # other weights: the masks come from ckpt
    fresh = MagnitudePruningHook(target=0.6, begin=0, end=4, interval=2)
    runner2 = _runner(fresh_model)
    fresh.after_load_checkpoint(runner2, ckpt)
    fresh.before_train(runner2)
    for n in hook.masks:
        assert torch.equal(fresh.masks[n], hook.masks[n])
        assert torch.all(fresh.layers[n].weight[~fresh.masks[n]] == 0)
    assert fresh.sparsity == hook.sparsity == 0.6
    # masks that do not fit the model are refused with the names
    bad = MagnitudePruningHook(target=0.6, begin=0, end=4, include=['^2$'])
    bad.after_load_checkpoint(runner2, ckpt)
    with pytest.raises(ValueError, match='masks cover'):
        bad.before_train(_runner(_mlp()))


def test_gradient_criterion_ranks_by_w_times_grad():
    def run(criterion):
        lin = nn.Linear(4, 1, bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor([[1., 2., 3., 4.]]))
        model = nn.Sequential(lin)
        runner = _runner(model)
        hook = MagnitudePruningHook(target=0.5, begin=0, end=1, interval=1,
                                    exempt=None, criterion=criterion)
        hook.before_train(runner)
        # grad = x = [10, 1, 1, 0.1]: |w| ranks 1 < 2 < 3 < 4, |w * g| is
        # [10, 2, 3, 0.4]; an SGD step of lr 1 first (grads then set to
        # None, as mmengine's zero_grad does): the scores are taken before
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        hook.before_train_iter(runner, 0)
        model(torch.tensor([[10., 1., 1., .1]])).sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        hook.after_train_iter(runner, 0)
        return hook.masks['0'].flatten().tolist()

    assert run('magnitude') == [True, False, False, True]  # |w - g|: 9,1,2,3.9
    assert run('gradient') == [True, False, True, False]


def test_iterative_rounds_add_step_and_rewind():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 10, bias=False),
                          nn.Linear(10, 10, bias=False))
    runner = _runner(model)
    hook = IterativePruningHook(rounds=[3, 5, 7], step=0.04, rewind_iter=1,
                                exempt=None, scope='layer')
    hook.before_train(runner)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    copies = {}
    counts = {}
    for t in range(1, 9):
        hook.before_train_iter(runner, runner.iter)
        x = torch.randn(4, 10, generator=gen)
        model(x).pow(2).sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        hook.after_train_iter(runner, runner.iter)
        runner.iter += 1
        if t == 1:
            copies = {n: m.weight.detach().clone()
                      for n, m in hook.layers.items()}
        counts[t] = [int((~m).sum()) for m in hook.masks.values()]
        if t in (3, 5, 7):
            for n, m in hook.layers.items():
                mask = hook.masks[n]
                assert torch.equal(m.weight.detach(), copies[n] * mask)
    # 0.04, 0.08, 0.12 of 100 weights per layer
    assert [counts[t] for t in range(1, 9)] == [[0, 0]] * 2 + [[4, 4]] * 2 + [
        [8, 8]
    ] * 2 + [[12, 12]] * 2
    assert hook.scheduled_sparsity(7) == pytest.approx(0.12)
    # the rewinding copy travels with the checkpoint
    ckpt = {}
    hook.before_save_checkpoint(runner, ckpt)
    fresh = IterativePruningHook(rounds=[3, 5, 7], rewind_iter=1,
                                 exempt=None, scope='layer')
    fresh.after_load_checkpoint(runner, ckpt)
    fresh.before_train(_runner(copy.deepcopy(model)))
    assert all(torch.equal(fresh.rewind_weights[n], copies[n])
               for n in copies)


def _bn_model():
    return nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), nn.ReLU())


def _set_gammas(model, a, b):
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor(a))
        model[4].weight.copy_(torch.tensor(b))


def test_early_bird_hamming_masks_and_ticket(tmp_path):
    t, f = True, False
    a = {'x': torch.tensor([t, t, f, f]), 'y': torch.tensor([t, f])}
    b = {'x': torch.tensor([t, f, t, f]), 'y': torch.tensor([t, f])}
    assert mask_hamming(a, b) == pytest.approx(2 / 6)
    assert mask_hamming(a, a) == 0
    with pytest.raises(ValueError, match='different layers'):
        mask_hamming(a, {'x': a['x']})

    model = _bn_model()
    g1 = ([0.1, 0.5, 0.2, 0.9], [0.01, 0.02, 0.03, 0.04])
    hook = EarlyBirdHook(ratio=0.5, threshold=0.2, patience=2)
    _set_gammas(model, *g1)
    masks = hook.channel_masks(model)
    # global: the 4 lowest of 8 are the second layer's
    assert masks['1'].tolist() == [t, t, t, t]
    assert masks['4'].tolist() == [f, f, f, f]
    per_layer = EarlyBirdHook(ratio=0.5, scope='layer').channel_masks(model)
    assert per_layer['1'].tolist() == [f, t, f, t]
    assert per_layer['4'].tolist() == [f, f, t, t]

    runner = _runner(model, work_dir=str(tmp_path))
    # checks at iterations 1..6 (masks '1' / '4'):
    schedule = [
        g1,  # TTTT / FFFF
        ([0.1, 0.5, 0.2, 0.9], [0.3, 0.6, 0.7, 0.8]),  # FFFT / FTTT: 6/8
        ([0.1, 0.5, 0.2, 0.9], [0.3, 0.6, 0.7, 0.8]),  # 0 < 0.2: 1/2
        ([0.1, 0.5, 0.2, 0.9], [0.3, 0.6, 0.15, 0.8]),  # FTFT / FTFT: 2/8,
        # not < 0.2: reset
        ([0.1, 0.5, 0.2, 0.9], [0.3, 0.6, 0.15, 0.8]),  # 0: 1/2
        ([0.1, 0.5, 0.2, 0.9], [0.3, 0.6, 0.15, 0.8]),  # 0: 2/2, ticket
    ]
    for i, g in enumerate(schedule):
        _set_gammas(model, *g)
        hook.after_train_iter(runner, i)
        runner.iter += 1
        if i < 5:
            assert hook.ticket is None
    assert hook.distances == pytest.approx([0.75, 0, 0.25, 0, 0])
    assert hook.ticket_step == 6
    saved = torch.load(tmp_path / 'early_bird_ticket.pth', weights_only=True)
    ticket = saved[EARLY_BIRD_KEY]['masks']
    assert ticket['1'].tolist() == [f, t, f, t]
    assert ticket['4'].tolist() == [f, t, f, t]
    assert 'state_dict' in saved and '1.weight' in saved['state_dict']
    assert any('early-bird ticket at iter 6' in line
               for line in runner.logger.lines)
    # the state travels with checkpoints
    ckpt = {}
    hook.before_save_checkpoint(runner, ckpt)
    fresh = EarlyBirdHook(ratio=0.5)
    fresh.after_load_checkpoint(runner, ckpt)
    assert fresh.ticket_step == 6 and fresh.stable_checks == 2
    assert torch.equal(fresh.ticket['4'], ticket['4'])


def _conv_net(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 6, 3, padding=1), nn.BatchNorm2d(6), nn.GELU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5),
        nn.LayerNorm(5), nn.Linear(5, 3))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.1, 2)
                m.bias.uniform_(-1, 1)
    return model.eval()


def test_prune2dense_structured_equals_masked_model():
    p2d = _tool('model_converters', 'prune2dense')
    model = _conv_net()
    masks = EarlyBirdHook(ratio=0.5, norm_types=['BN', 'LN'],
                          scope='layer').channel_masks(model)
    ckpt = {'meta': {'iter': 3}, 'state_dict': model.state_dict(),
            EARLY_BIRD_KEY: {'masks': masks}}
    masked = copy.deepcopy(model)
    apply_channel_masks(masked, masks)
    lines = []
    out, pruned = p2d.convert(ckpt, _conv_net(seed=1), log=lines.append)
    x = torch.randn(2, 3, 7, 9)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), masked(x), atol=1e-5,
                                   rtol=1e-5)
    # only the first BN sits in a safe Conv -> BN -> ReLU -> Conv chain
    assert pruned[0].out_channels == 4 and pruned[3].in_channels == 4
    assert out['state_dict']['0.weight'].shape == (4, 3, 3, 3)
    info = out['meta']['prune2dense']
    assert info['removed'] == {'1': [8, 4]}
    assert info['zeroed'] == ['4', '9']
    assert set(out) == {'meta', 'state_dict'}
    # 4 conv0 filters (4 * 27 + 4), 4 BN channels (2 * 4), conv1 inputs
    # (6 * 4 * 9) fewer
    assert info['params_before'] - info['params_after'] == (
        4 * 27 + 4 + 2 * 4 + 6 * 4 * 9)
    assert any('channels zeroed, not removed' in s for s in lines)
    # a model built from the output's state dict and the same widths
    reload = copy.deepcopy(pruned)
    reload.load_state_dict(out['state_dict'])
    # without the model: zeroed only, same output as the masked model
    out2, none = p2d.convert(ckpt, None, log=lines.append)
    assert none is None
    plain = _conv_net(seed=2)
    plain.load_state_dict(out2['state_dict'])
    with torch.no_grad():
        torch.testing.assert_close(plain(x), masked(x), atol=1e-5, rtol=1e-5)


def test_prune2dense_unstructured_bakes_masks(tmp_path):
    p2d = _tool('model_converters', 'prune2dense')
    model = _mlp()
    hook = MagnitudePruningHook(target=0.5, begin=0, end=1, interval=1)
    hook.setup(model)
    hook.prune(0.5)
    masks = {n: m.clone() for n, m in hook.masks.items()}
    dense = _mlp()  # weights not masked: prune2dense applies the masks
    ckpt = {'state_dict': dense.state_dict(), PRUNING_KEY: hook.state(),
            'optimizer': {}}
    torch.save(ckpt, tmp_path / 'in.pth')
    p2d.main([str(tmp_path / 'in.pth'), str(tmp_path / 'out.pth')])
    out = torch.load(tmp_path / 'out.pth', weights_only=True)
    assert set(out) == {'meta', 'state_dict'}
    x = torch.randn(3, 4)
    with torch.no_grad():
        for n, m in masks.items():
            dense.get_submodule(n).weight.mul_(m)
        baked = _mlp(seed=3)
        baked.load_state_dict(out['state_dict'])
        torch.testing.assert_close(baked(x), dense(x))
    info = out['meta']['prune2dense']
    assert info['params_after'] == info['params_before']
    assert info['nonzero_before'] - info['nonzero_after'] == sum(
        int((~m).sum()) for m in masks.values())


@ROOT_MODELS.register_module(name='MmssmPruneTestNet', force=True)
class _PruneTestNet(nn.Sequential):

    def __init__(self):
        super().__init__(
            nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 3))


def test_sparsity_tool_matches_hand_count(tmp_path, capsys):
    sp = _tool('analysis_tools', 'sparsity')
    cfg = tmp_path / 'cfg.py'
    cfg.write_text("model = dict(type='MmssmPruneTestNet')\n")
    net = _PruneTestNet()
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].weight.view(-1)[:10] = 0  # 10 of 72
        net[3].weight.fill_(2.0)
        net[3].weight.view(-1)[[0, 5]] = 0  # 2 of 12
        net[3].bias.zero_()  # biases are not counted
    torch.save({'state_dict': net.state_dict()}, tmp_path / 'c.pth')
    res = sp.main([str(cfg), str(tmp_path / 'c.pth'),
                   '--json', str(tmp_path / 's.json')])
    assert [(r['name'], r['zeros'], r['numel']) for r in res['layers']] == [
        ('0', 10, 72), ('3', 2, 12)]
    assert res['zeros'] == 12 and res['numel'] == 84
    assert res['sparsity'] == pytest.approx(12 / 84)
    printed = capsys.readouterr().out
    assert 'total' in printed and '0.1429' in printed
    only = sp.main([str(cfg), str(tmp_path / 'c.pth'), '--layer-types',
                    'Linear'])
    assert [r['name'] for r in only['layers']] == ['3']
    excl = sp.main([str(cfg), str(tmp_path / 'c.pth'), '--exclude', '^3$'])
    assert [r['name'] for r in excl['layers']] == ['0']


@pytest.mark.parametrize('cls,kwargs,match', [
    (MagnitudePruningHook, dict(scope='net'),
     "scope must be one of 'global', 'layer'; got 'net'"),
    (MagnitudePruningHook, dict(criterion='l1'),
     "criterion must be one of 'magnitude', 'gradient'"),
    (MagnitudePruningHook, dict(layer_types=['Dense']),
     "layer_types must be one of 'Linear', 'Conv', 'ConvTranspose'"),
    (MagnitudePruningHook, dict(target=1.0), r'target must be in \[0, 1\)'),
    (MagnitudePruningHook, dict(begin=5, end=5), 'end must be an int > begin'),
    (MagnitudePruningHook, dict(exempt='first'),
     "exempt must be 'auto', a list of layer names or None"),
    (MagnitudePruningHook, dict(fraction=2), r'fraction must be in \[0, 1\]'),
    (IterativePruningHook, dict(rounds=[]), 'rounds must be a non-empty'),
    (IterativePruningHook, dict(rounds=[5], rewind_iter=5),
     'rewind_iter must be None or an int in'),
    (EarlyBirdHook, dict(norm_types='BatchNorm'),
     "norm_types must be one of 'BN', 'LN', 'GN'"),
    (EarlyBirdHook, dict(scope='all'), "scope must be one of 'global'"),
])
def test_bad_arguments_raise_value_error(cls, kwargs, match):
    if cls is IterativePruningHook:
        kwargs = {'rounds': [1], **kwargs}
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_unknown_exempt_names_and_no_layers():
    hook = MagnitudePruningHook(exempt=['9'])
    with pytest.raises(ValueError, match=r"exempt: \['9'\] .*valid choices"):
        hook.setup(_mlp())
    with pytest.raises(ValueError, match='no layer of layer_types'):
        MagnitudePruningHook(include=['nothing']).setup(_mlp())


def test_built_from_config_in_every_scope():
    from mmengine.registry import HOOKS, DefaultScope
    for scope in ('mmengine', 'mmssm'):
        with DefaultScope.overwrite_default_scope(scope):
            hook = HOOKS.build(dict(type='MagnitudePruningHook', target=0.6,
                                    begin=0, end=100, interval=10))
            assert isinstance(hook, MagnitudePruningHook)


class _ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.net = _mlp()

    def forward(self, inputs, mode='tensor'):
        out = self.net(inputs)
        return {'loss': out.pow(2).mean()} if mode == 'loss' else out


def _toy_runner(work_dir, name, resume_from=None):
    from mmengine.runner import Runner
    gen = torch.Generator().manual_seed(0)
    data = [dict(inputs=torch.randn(4, generator=gen)) for _ in range(12)]
    return Runner(
        model=_ToyModel(),
        work_dir=str(work_dir),
        experiment_name=f'{name}_{uuid.uuid4().hex}',
        train_dataloader=dict(
            dataset=data, batch_size=2, num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=False, max_iters=6),
        optim_wrapper=dict(optimizer=dict(
            type='SGD', lr=0.1, momentum=0.9, weight_decay=0.01)),
        custom_hooks=[dict(type='MagnitudePruningHook', target=0.6, begin=0,
                           end=6, interval=3)],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=3,
                                           by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        log_processor=dict(by_epoch=False),
        load_from=resume_from, resume=resume_from is not None,
        randomness=dict(seed=0), default_scope='mmengine')


def _pruning_hook(runner):
    return next(h for h in runner.hooks
                if isinstance(h, MagnitudePruningHook))


def test_real_runner_checkpoint_and_resume(tmp_path):
    runner = _toy_runner(tmp_path, 'prune_full')
    runner.train()
    hook = _pruning_hook(runner)
    assert [int((~m).sum()) for m in hook.masks.values()] == [9, 38, 4]
    assert runner.message_hub.get_scalar('train/sparsity').current() == (
        pytest.approx(51 / 112))
    ckpt = torch.load(tmp_path / 'iter_3.pth', weights_only=True)
    masks3 = ckpt[PRUNING_KEY]['masks']
    # s(3) = 0.3: floor(.15 * 32), floor(.3 * 64), floor(.15 * 16)
    assert [int((~m).sum()) for m in masks3.values()] == [4, 19, 2]
    for n, m in masks3.items():
        assert torch.all(ckpt['state_dict'][f'{n}.weight'][~m] == 0)
    final = {k: v.clone() for k, v in runner.model.state_dict().items()}
    del runner

    resumed = _toy_runner(tmp_path, 'prune_resumed',
                          resume_from=str(tmp_path / 'iter_3.pth'))
    resumed.train()
    hook2 = _pruning_hook(resumed)
    for n in hook.masks:
        assert torch.equal(hook2.masks[n], hook.masks[n])
    for k, v in resumed.model.state_dict().items():
        torch.testing.assert_close(v, final[k])


def test_prune2dense_bench_times_both_models_interleaved():
    """bench(): one warm-up and ``runs`` timed forwards per model, medians
    in ms and the ratio, with a fake clock each forward advances by its
    model's cost (masked 3 s, pruned 1 s, a 50 s outlier once)."""
    p2d = _tool('model_converters', 'prune2dense')
    now = [0.0]
    order = []

    def cost(name, seconds):
        def hook(module, args, output):
            order.append(name)
            now[0] += seconds.pop(0) if isinstance(seconds, list) else seconds
        return hook

    masked, pruned = _conv_net(), _conv_net(seed=1)
    # warm-up (not timed) then 3 timed runs; the second timed masked run is
    # an outlier that the median ignores
    masked.register_forward_hook(cost('m', [100.0, 3.0, 50.0, 3.0]))
    pruned.register_forward_hook(cost('p', 1.0))
    res = p2d.bench(masked, pruned, (5, 6), runs=3, clock=lambda: now[0])
    assert order == ['m', 'p'] + ['m', 'p'] * 3
    assert res['masked_ms'] == pytest.approx(3000.0)
    assert res['pruned_ms'] == pytest.approx(1000.0)
    assert res['speedup'] == pytest.approx(3.0)
    assert res['size'] == [5, 6] and res['runs'] == 3
    with pytest.raises(ValueError, match='runs must be >= 1'):
        p2d.bench(masked, pruned, (5, 6), runs=0)
    # --bench needs the model to time
    with pytest.raises(SystemExit):
        p2d.parse_args(['in.pth', 'out.pth', '--bench', '64', '64'])


def test_prune2dense_removes_declared_chains_of_mambavision_conv_blocks():
    """A module's ``channel_prune_chains`` lets prune2dense cut the channels
    of ``conv1 -> norm1 -> act1 -> conv2`` (MambaVision's conv blocks, not an
    nn.Sequential); the pruned block computes what the masked one does."""
    from mmssm.models.backbones.mambavision import MambaVisionConvBlock
    p2d = _tool('model_converters', 'prune2dense')
    torch.manual_seed(0)
    block = MambaVisionConvBlock(8).eval()
    with torch.no_grad():
        for bn in (block.norm1, block.norm2):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.bias.uniform_(-1, 1)
        block.norm1.weight.copy_(torch.arange(1., 9.))
    keep = torch.tensor([False, True, False, True, True, False, True, True])
    masks = {'norm1': keep}
    ckpt = {'state_dict': block.state_dict(), EARLY_BIRD_KEY: {'masks': masks}}
    masked = copy.deepcopy(block)
    apply_channel_masks(masked, masks)
    out, pruned = p2d.convert(ckpt, copy.deepcopy(block), log=lambda s: None)
    assert out['meta']['prune2dense']['removed'] == {'norm1': [8, 5]}
    assert pruned.conv1.out_channels == 5 and pruned.conv2.in_channels == 5
    assert pruned.conv1.bias.shape == (5, ) and pruned.norm1.num_features == 5
    x = torch.randn(2, 8, 5, 7)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), masked(x), atol=1e-5,
                                   rtol=1e-5)
        # the kept channels, not the first five
        assert torch.equal(pruned.norm1.weight, torch.tensor([2., 4, 5, 7, 8]))
