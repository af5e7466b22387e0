"""The fused inference forward of the CPU scan (no gradient needed).

``selective_scan`` on float32 CPU inputs that need no gradient runs one
numba pass with softplus, the D skip and the z gate fused
(``scan_cpu._inference_forward``); it must equal the readable reference for
every order, grouping, state size and option, and must not be taken when a
gradient is needed, when tracing, or when switched off.
"""
import pytest
import torch

from mmssm.ops import scan_cpu, selective_scan, selective_scan_ref
from mmssm.ops.scan_common import FAST_PATH_ENV

pytest.importorskip('numba')

ORDERS = [
    None, 'reverse', 'col', 'col_reverse',
    ['forward', 'reverse'],
    ['row', 'col', 'row_reverse', 'col_reverse'],
]


def _inputs(batch, dim, grid, nstate, groups, seed=0):
    gen = torch.Generator().manual_seed(seed)
    length = grid[0] * grid[1]

    def r(*shape, scale=1.0):
        return torch.randn(*shape, generator=gen) * scale

    bshape = (batch, nstate, length) if groups == 0 else \
        (batch, groups, nstate, length)
    return dict(
        u=r(batch, dim, length), delta=r(batch, dim, length, scale=0.5),
        A=-torch.exp(r(dim, nstate, scale=0.5)), B=r(*bshape), C=r(*bshape),
        D=r(dim), z=r(batch, dim, length), delta_bias=r(dim, scale=0.3))


@pytest.mark.parametrize('order', ORDERS)
@pytest.mark.parametrize('nstate,groups', [(16, 0), (1, 4), (4, 2)])
def test_inference_forward_equals_reference(order, nstate, groups,
                                            monkeypatch):
    calls = []
    real = scan_cpu._inference_forward
    monkeypatch.setattr(scan_cpu, '_inference_forward',
                        lambda *a: calls.append(1) or real(*a))
    grid = (3, 7)
    args = _inputs(2, 40, grid, nstate, groups)
    with torch.no_grad():
        y, last = selective_scan(**args, delta_softplus=True,
                                 return_last_state=True, order=order,
                                 grid=grid, impl='cpu')
        ref_y, ref_last = selective_scan_ref(**args, delta_softplus=True,
                                             return_last_state=True,
                                             order=order, grid=grid)
    assert calls == [1]
    assert (y - ref_y).abs().max() <= 2e-6 * ref_y.abs().max()
    assert (last - ref_last).abs().max() <= 2e-6 * ref_last.abs().max()


@pytest.mark.parametrize('opts', [
    dict(D=None), dict(z=None), dict(delta_bias=None),
    dict(D=None, z=None, delta_bias=None)
])
@pytest.mark.parametrize('softplus', [True, False])
def test_inference_forward_optional_parts(opts, softplus):
    args = _inputs(1, 16, (1, 33), 8, 0, seed=1)
    args['delta'] = args['delta'].abs()  # positive steps without softplus
    args.update(opts)
    with torch.no_grad():
        y = selective_scan(**args, delta_softplus=softplus, impl='cpu')
        ref = selective_scan_ref(**args, delta_softplus=softplus)
    assert (y - ref).abs().max() <= 2e-6 * ref.abs().max()


def test_inference_forward_not_taken(monkeypatch):
    monkeypatch.setattr(scan_cpu, '_inference_forward',
                        lambda *a: pytest.fail('fused forward taken'))
    args = _inputs(1, 8, (1, 9), 4, 0)
    # a gradient is needed
    u = args['u'].requires_grad_(True)
    selective_scan(**dict(args, u=u), delta_softplus=True, impl='cpu')
    # float64 (gradcheck precision) and the switch
    with torch.no_grad():
        selective_scan(**{k: v.double() for k, v in args.items()},
                       impl='cpu')
        monkeypatch.setenv(FAST_PATH_ENV, '0')
        selective_scan(**args, impl='cpu')


def test_frozen_inputs_take_the_fused_forward(monkeypatch):
    """Grad mode on but nothing requires a gradient (frozen weights, inputs
    without grad): no graph is needed, the fused forward runs."""
    calls = []
    real = scan_cpu._inference_forward
    monkeypatch.setattr(scan_cpu, '_inference_forward',
                        lambda *a: calls.append(1) or real(*a))
    args = _inputs(1, 8, (2, 5), 4, 0)
    y = selective_scan(**args, delta_softplus=True, impl='cpu')
    assert calls == [1] and not y.requires_grad


def test_order_cached_under_inference_mode_serves_training():
    """Named orders are cached; a first call under inference mode must not
    cache an inference tensor that a later training call cannot save."""
    args = _inputs(1, 8, (3, 4), 2, 0, seed=3)
    order = ['col_reverse', 'row']   # a fresh cache key for this test
    with torch.inference_mode():
        selective_scan(**args, order=order, grid=(3, 4), impl='cpu')
    u = args['u'].clone().requires_grad_(True)
    y = selective_scan(**dict(args, u=u), order=order, grid=(3, 4),
                       impl='cpu')
    y.sum().backward()
    assert u.grad is not None and torch.isfinite(u.grad).all()


@pytest.mark.parametrize('name,index', [('delta', (0, 3, 5)),
                                        ('u', (1, 0, 0)),
                                        ('B', (0, 2, 6)),
                                        ('C', (1, 1, 4)),
                                        ('z', (0, 7, 1))])
def test_debug_switch_names_first_non_finite_input(name, index, monkeypatch):
    """MMSSM_SCAN_DEBUG=1: a NaN in an activation is reported with the
    tensor's name and the index of its first non-finite element (without
    the switch it spreads silently to the end of the sequence)."""
    args = _inputs(2, 8, (1, 9), 4, 0)
    args[name] = args[name].clone()
    args[name][index] = float('nan')
    later = list(index)
    later[-1] = 8  # a second one later in the sequence
    args[name][tuple(later)] = float('inf')
    with torch.no_grad():
        y = selective_scan(**args, delta_softplus=True, impl='cpu')
    assert not torch.isfinite(y).all()   # silent without the switch
    monkeypatch.setenv('MMSSM_SCAN_DEBUG', '1')
    with pytest.raises(ValueError) as err:
        selective_scan(**args, delta_softplus=True, impl='cpu')
    msg = str(err.value)
    assert f'`{name}` has 2 non-finite' in msg, msg
    assert f'first at index {index}' in msg and 'nan' in msg, msg
