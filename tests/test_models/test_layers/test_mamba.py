"""Mamba mixers against a naive re-implementation of the official math.

The naive version follows the official Vim code path literally: the backward
branch flips the whole ``xz`` sequence, runs the causal conv with symmetric
padding and truncation, scans forward with ``selective_scan_ref`` and flips
back. The mixer under test instead uses the anti-causal conv and one fused
two-direction scan call, so the two share no code path beyond the reference
scan itself.
"""
import pytest
import torch
import torch.nn.functional as F

from mmssm.models.layers.mamba import BiMambaMixer, MambaMixer, causal_conv1d
from mmssm.ops import selective_scan_ref
from tiny_demo_configs import randomize_params  # noqa: I


def _naive_branch(m, xz, suffix):
    """One direction of the official mixer, forward order only."""
    L = xz.shape[-1]
    x, z = xz.chunk(2, dim=1)
    conv = getattr(m, f'conv1d{suffix}')
    x = F.conv1d(x, conv.weight, conv.bias, padding=m.d_conv - 1,
                 groups=m.d_inner)[..., :L]
    x = F.silu(x)
    x_dbl = x.transpose(1, 2) @ getattr(m, f'x_proj{suffix}').weight.t()
    dt, B, C = torch.split(x_dbl, [m.dt_rank, m.d_state, m.d_state], -1)
    dt = (dt @ getattr(m, f'dt_proj{suffix}').weight.t()).transpose(1, 2)
    A = -torch.exp(getattr(m, f'A{suffix}_log').float())
    return selective_scan_ref(
        x, dt, A, B.transpose(1, 2), C.transpose(1, 2),
        getattr(m, f'D{suffix}').float(), z=z,
        delta_bias=getattr(m, f'dt_proj{suffix}').bias.float(),
        delta_softplus=True)


def naive_bimamba(m, hidden, divide_out=True):
    xz = (hidden @ m.in_proj.weight.t()).transpose(1, 2)
    out = _naive_branch(m, xz, '')
    out_b = _naive_branch(m, xz.flip([-1]), '_b').flip([-1])
    y = out + out_b
    if divide_out:
        y = y / 2
    return y.transpose(1, 2) @ m.out_proj.weight.t()


def _randomize(m):
    """Add ``0.2 * N(0, 1)`` noise (seed 1) to every parameter."""
    randomize_params(m, seed=1, add=True)


@pytest.mark.parametrize('length', [1, 3, 17])
@pytest.mark.parametrize('divide_out', [True, False])
def test_bimamba_matches_naive(length, divide_out):
    torch.manual_seed(0)
    m = BiMambaMixer(12, d_state=4, divide_out=divide_out, scan_impl='ref')
    _randomize(m)
    x = torch.randn(2, length, 12)
    torch.testing.assert_close(
        m(x), naive_bimamba(m, x, divide_out), rtol=1e-4, atol=1e-5)


def test_bimamba_default_impl_matches_naive_and_grads():
    torch.manual_seed(0)
    m = BiMambaMixer(16, d_state=16)
    _randomize(m)
    x = torch.randn(2, 9, 16, requires_grad=True)
    out = m(x)
    ref = naive_bimamba(m, x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, [x] + list(m.parameters()), g)
    grads_ref = torch.autograd.grad(ref, [x] + list(m.parameters()), g)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_anticausal_conv_equals_flipped_causal():
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 5, 11), torch.randn(5, 1, 4), torch.randn(5)
    fwd = causal_conv1d(x, w, b)
    # output t only depends on inputs <= t
    torch.testing.assert_close(
        fwd[..., :6], causal_conv1d(x[..., :6], w, b))
    torch.testing.assert_close(
        causal_conv1d(x, w, b, reverse=True),
        causal_conv1d(x.flip(-1), w, b).flip(-1))


def test_backward_branch_sees_future_tokens():
    """Changing the last token changes the first output only through the
    backward direction."""
    torch.manual_seed(0)
    m = MambaMixer(8, d_state=4, scan_impl='ref')
    bi = BiMambaMixer(8, d_state=4, scan_impl='ref')
    x = torch.randn(1, 6, 8)
    x2 = x.clone()
    x2[:, -1] += 1
    assert torch.allclose(m(x)[:, 0], m(x2)[:, 0])
    assert not torch.allclose(bi(x)[:, 0], bi(x2)[:, 0])


def test_mixer_param_names_and_errors():
    m = BiMambaMixer(192)
    names = set(dict(m.named_parameters()))
    assert names == {
        'in_proj.weight', 'conv1d.weight', 'conv1d.bias', 'conv1d_b.weight',
        'conv1d_b.bias', 'x_proj.weight', 'x_proj_b.weight',
        'dt_proj.weight', 'dt_proj.bias', 'dt_proj_b.weight',
        'dt_proj_b.bias', 'out_proj.weight', 'A_log', 'A_b_log', 'D', 'D_b'
    }
    assert m.dt_rank == 12 and m.d_inner == 384
    assert m.x_proj.weight.shape == (12 + 32, 384)
    assert m.A_b_log.dtype == torch.float32
    # Vim-Ti mixer parameters, hand counted
    assert sum(p.numel() for p in m.parameters()) == (
        192 * 768 + 2 * (384 * 4 + 384) + 2 * 384 * 44 + 2 * (12 * 384 + 384)
        + 2 * 384 * 16 + 2 * 384 + 384 * 192)
    with pytest.raises(ValueError, match=r'\(B, L, 192\)'):
        m(torch.randn(2, 5, 96))
    with pytest.raises(ValueError, match='dt_rank'):
        MambaMixer(16, dt_rank=0)


@pytest.mark.parametrize('length', [1, 17])
@pytest.mark.parametrize('cls,kwargs', [(MambaMixer, {}),
                                        (BiMambaMixer, {}),
                                        (BiMambaMixer, dict(divide_out=False)),
                                        (BiMambaMixer, dict(d_conv=3))])
def test_fused_layout_matches_per_direction_path(cls, kwargs, length):
    """The CUDA layout (``fused_path``: batched projections, one
    ``(B, K * d_inner, L)`` ``u``/``delta``, the gate unrepeated), forced on
    CPU tensors with the torch conv, equals the per-direction path in the
    output and every gradient. (The Triton conv on this path:
    tests/test_ops/test_conv1d_triton.py.)"""
    torch.manual_seed(0)
    m = cls(12, d_state=4, **kwargs)
    _randomize(m)
    x = torch.randn(2, length, 12, requires_grad=True)
    results = []
    for fused in (False, True):
        m.fused_path = fused
        out = m(x)
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        results.append([out] + list(
            torch.autograd.grad(out, [x] + list(m.parameters()), g)))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_fused_path_is_for_cuda_tensors():
    m = BiMambaMixer(8, d_state=4)
    x = torch.randn(1, 3, 8)
    assert m.fused_path is None and not m._use_fused_path(x)
    m.fused_path = True
    assert m._use_fused_path(x)
    m.fused_path = False
    assert not m._use_fused_path(x)
