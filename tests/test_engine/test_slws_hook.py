"""SLWSHook: shuffle/restore exactness, eval, per-layer probabilities."""
import logging
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from mmengine.logging import MessageHub, MMLogger

import mmssm  # noqa: F401
from mmssm.engine.hooks import SLWSHook
from mmssm.models.backbones import Vim
from mmssm.models.backbones.base import PlainBackboneMixin


class TokenMLP(nn.Module):
    """Per-token layer (permutation equivariant), Vim's call protocol."""

    def __init__(self, dim=4):
        super().__init__()
        self.fc = nn.Linear(dim, dim)

    def forward(self, hidden, residual=None):
        residual = hidden if residual is None else residual + hidden
        return torch.tanh(self.fc(residual)), residual


class CumsumLayer(nn.Module):
    """Order-dependent layer: output t sums inputs 0..t."""

    def forward(self, hidden, residual=None):
        residual = hidden if residual is None else residual + hidden
        return residual.cumsum(1), residual


class Stack(PlainBackboneMixin, nn.Module):
    """A token stack implementing the plain-backbone interface (its
    "images" are already tokens: one token per pixel of a 1 x L grid)."""

    with_cp = False
    in_channels = token_stride = 1

    def __init__(self, layers, dim=4):
        super().__init__()
        self.embed_dims = dim
        self.layers = nn.ModuleList(layers)
        self.num_layers = len(self.layers)

    def grid_size(self, h, w):
        return h, w

    def prepare_tokens(self, x):
        return x, (1, x.shape[1]), None

    def token_layout(self, grid, device=None):
        index = torch.arange(grid[0] * grid[1], device=device)
        return index, index[:0]

    def final_stream_norm(self, stream):
        return stream

    def forward(self, x):
        hidden, _, _ = self.prepare_tokens(x)
        residual = None
        for index in range(self.num_layers):
            hidden, residual = self.run_layer(index, hidden, residual)
        return self.final_stream_norm(hidden + residual)


def test_equivariant_stack_unchanged_when_every_layer_shuffles():
    torch.manual_seed(0)
    model = Stack([TokenMLP() for _ in range(4)]).train()
    x = torch.randn(3, 9, 4)
    ref = model(x)
    hook = SLWSHook(prob=1.0, seed=0)
    hook.attach(model)
    hook._active = {i: True for i in range(4)}  # force every layer
    out = model(x)
    assert len(hook._perms) == 4  # every layer was permuted ...
    assert any(not torch.equal(p, torch.arange(9))
               for p, _ in hook._perms.values())
    torch.testing.assert_close(out, ref, rtol=0, atol=0)  # ... and restored


def test_order_dependent_layer_runs_on_permuted_tokens():
    model = Stack([CumsumLayer(), CumsumLayer()]).train()
    x = torch.randn(2, 7, 3)
    hook = SLWSHook(prob=1.0, seed=1)
    hook.attach(model)
    hook._active = {1: True}
    out = model(x)
    perm, inv = hook._perms[(1, 7, 'cpu')]
    h0, r0 = x.cumsum(1), x
    r1 = (r0 + h0)[:, perm]  # the layer sees permuted hidden and residual
    h1 = r1.cumsum(1)
    torch.testing.assert_close(out, (h1 + r1)[:, inv])
    assert not torch.allclose(out, Stack([CumsumLayer()] * 2)(x))


def test_never_in_eval_and_cleared_after_iter():
    torch.manual_seed(0)
    model = Stack([CumsumLayer() for _ in range(3)])
    x = torch.randn(2, 6, 3)
    ref = model(x)
    hook = SLWSHook(prob=1.0, seed=0)
    hook.attach(model)
    hook._active = {0: True, 1: True, 2: True}
    model.eval()
    torch.testing.assert_close(model(x), ref, rtol=0, atol=0)
    model.train()
    assert not torch.allclose(model(x), ref)
    hook.clear()
    torch.testing.assert_close(model(x), ref, rtol=0, atol=0)
    hook.detach()
    hook._active = {0: True, 1: True, 2: True}
    torch.testing.assert_close(model(x), ref, rtol=0, atol=0)


def test_firing_frequencies_follow_linspace():
    model = Stack([TokenMLP() for _ in range(6)])
    hook = SLWSHook(prob=0.6, seed=123)
    hook.attach(model)
    n = 4000
    for _ in range(n):
        hook.draw()
    expected = torch.linspace(0, 0.6, 6)
    rates = hook.fire_counts.float() / n
    assert hook.fire_counts[0] == 0  # the first layer never shuffles
    sigma = (expected * (1 - expected) / n).sqrt()
    assert ((rates - expected).abs() <= 4 * sigma + 1e-9).all(), rates
    # warm-up: P_L ramps linearly over the first iterations
    hook = SLWSHook(prob=0.5, warmup_iters=100, seed=0)
    hook.attach(model)
    torch.testing.assert_close(hook.layer_probs(25)[-1], torch.tensor(0.125))
    torch.testing.assert_close(hook.layer_probs(500)[-1], torch.tensor(0.5))
    assert not hook.draw(0).any()


def test_vim_with_cp_same_grads_as_without():
    """Checkpoint recomputation reuses the iteration's permutation."""
    torch.manual_seed(0)
    arch = dict(embed_dims=8, num_layers=3, d_state=2)
    a = Vim(arch, img_size=32, out_type='raw').train()
    b = Vim(arch, img_size=32, out_type='raw', with_cp=True).train()
    b.load_state_dict(a.state_dict())
    img = torch.randn(2, 3, 32, 48)
    plain = a(img)[0]
    grads = []
    for model in (a, b):
        hook = SLWSHook(prob=1.0, seed=7)
        hook.attach(model)
        hook._active = {1: True, 2: True}
        out = model(img)[0]
        out.pow(2).sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        hook.detach()
        if model is a:
            shuffled = out.detach()
    assert not torch.allclose(shuffled, plain)  # Vim is order dependent
    for ga, gb in zip(*grads):
        torch.testing.assert_close(ga, gb)


def test_runner_integration_logs_fire_rate():
    model = nn.Module()
    model.backbone = Stack([TokenMLP() for _ in range(5)])
    hub = MessageHub.get_instance('slws_test_hub')
    runner = SimpleNamespace(
        model=model, iter=0, message_hub=hub,
        logger=MMLogger.get_instance('slws_test', log_level=logging.WARNING))
    hook = SLWSHook(prob=1.0, seed=0, log_interval=10)
    hook.before_train(runner)
    rates = []
    for it in range(200):
        runner.iter = it
        hook.before_train_iter(runner, it)
        rates.append(hub.get_scalar('train/slws_fire_rate').current())
        assert hook._active
        hook.after_train_iter(runner, it)
        assert not hook._active
    # mean of linspace(0, 1, 5) = 0.5
    assert abs(sum(rates) / len(rates) - 0.5) < 0.06
    assert 'over 200 iterations' in hook.summary()
    hook.after_train(runner)
    assert not hook._handles
    with pytest.raises(TypeError, match=r"Linear lacks \['embed_dims', "
                       r"'in_channels', 'num_layers', 'layers'"):
        hook.attach(nn.Linear(2, 2))
    with pytest.raises(ValueError, match='prob'):
        SLWSHook(prob=1.5)
