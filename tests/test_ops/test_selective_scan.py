"""Tests of mmssm.ops.selective_scan: the reference, the CPU path, dispatch."""
import math
import os
import signal
import warnings

import pytest
import torch
import torch.nn.functional as F
from scan_testutils import compare, make_inputs, run_scan

from mmssm.ops import resolve_scan_order, selective_scan, selective_scan_ref
from mmssm.ops import scan_cpu

ENGINES = ['numba', 'torch']


@pytest.fixture(params=ENGINES)
def engine(request, monkeypatch):
    """Run a test with each engine of the CPU path."""
    if request.param == 'numba':
        pytest.importorskip('numba')
    monkeypatch.setenv(scan_cpu.ENGINE_ENV, request.param)
    return request.param


def cpu_scan(*args, **kwargs):
    return selective_scan(*args, impl='cpu', **kwargs)


def test_reference_hand_computed():
    # One channel, N = 1, L = 3, a = exp(dt * A) = 0.5 at every step.
    u = torch.tensor([[[2., 4., 2.]]])
    delta = torch.ones(1, 1, 3)
    A = torch.tensor([[-math.log(2.)]])
    B = torch.tensor([[[1., 2., 1.]]])
    C = torch.tensor([[[1., 1., 2.]]])
    D = torch.tensor([0.5])
    # h = 2, 0.5 * 2 + 8 = 9, 0.5 * 9 + 2 = 6.5; y = C * h + 0.5 * u.
    y, last = selective_scan_ref(u, delta, A, B, C, D, return_last_state=True)
    torch.testing.assert_close(y, torch.tensor([[[3., 11., 14.]]]))
    torch.testing.assert_close(last, torch.tensor([[[6.5]]]))
    # Reversed: token 2 first (h = 2), then token 1 (h = 9), token 0 (6.5).
    y, last = selective_scan_ref(
        u, delta, A, B, C, order='reverse', return_last_state=True)
    torch.testing.assert_close(y, torch.tensor([[[6.5, 9., 4.]]]))
    torch.testing.assert_close(last, torch.tensor([[[6.5]]]))
    # softplus(delta + bias) with bias = log(e - 1) - 1 gives delta = 1 again;
    # z = 1 multiplies by silu(1).
    bias = torch.tensor([math.log(math.e - 1) - 1])
    z = torch.ones(1, 1, 3)
    y = selective_scan_ref(u, delta, A, B, C, D, z, bias, True)
    torch.testing.assert_close(
        y, torch.tensor([[[3., 11., 14.]]]) * F.silu(torch.tensor(1.)))


@pytest.mark.parametrize('with_d,with_z,with_bias,softplus',
                         [(True, True, True, True), (False, False, False,
                                                     False),
                          (True, False, True, False), (False, True, False,
                                                       True)])
@pytest.mark.parametrize('groups', [None, 2])
def test_cpu_matches_reference_options(engine, with_d, with_z, with_bias,
                                       softplus, groups):
    t = make_inputs(2, 8, 20, 3, groups, with_d=with_d, with_z=with_z,
                    with_bias=with_bias)
    want = run_scan(selective_scan_ref, t, softplus)
    got = run_scan(cpu_scan, t, softplus)
    assert compare(got, want) == []


ORDERS = [
    ('forward', None), ('reverse', None), ('col', (10, 15)),
    ('col_reverse', (10, 15)), (['row', 'col', 'row_reverse', 'col_reverse'],
                                (10, 15)), (['forward', 'reverse'], None)
]


@pytest.mark.parametrize('order,grid', ORDERS)
@pytest.mark.parametrize('groups,dim,nstate', [(None, 20, 16), (4, 20, 1)])
def test_cpu_matches_reference_orders(engine, order, grid, groups, dim,
                                      nstate):
    # L = 150: three checkpoint segments of 64 tokens, the last one partial;
    # D = 20: a block of 16 channels and a partial one, chunks of 5 channels.
    t = make_inputs(1, dim, 150, nstate, groups, seed=3)
    want = run_scan(selective_scan_ref, t, order=order, grid=grid)
    got = run_scan(cpu_scan, t, order=order, grid=grid)
    assert compare(got, want) == []


def test_explicit_permutation_equals_explicit_gathers():
    t = make_inputs(2, 6, 12, 4, groups=2, with_z=False, seed=5)
    u, delta, A, B, C, D = (t[k] for k in ('u', 'delta', 'A', 'B', 'C', 'D'))
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    y = selective_scan(u, delta, A, B, C, D, order=perm, impl='cpu')
    # Gather the tokens in the visiting order, scan forward, scatter back.
    y_g = selective_scan_ref(u[..., perm], delta[..., perm], A, B[..., perm],
                             C[..., perm], D)
    want = torch.empty_like(y_g)
    want[..., perm] = y_g
    torch.testing.assert_close(y, want, rtol=6e-4, atol=2e-3)
    # 'col' on a 3 x 4 grid: transpose the grid, scan forward, transpose back.
    def to_col(x):
        return x.unflatten(-1, (3, 4)).transpose(-1, -2).flatten(-2)

    def from_col(x):
        return x.unflatten(-1, (4, 3)).transpose(-1, -2).flatten(-2)

    y = selective_scan(u, delta, A, B, C, D, order='col', grid=(3, 4))
    want = from_col(
        selective_scan_ref(to_col(u), to_col(delta), A, to_col(B), to_col(C),
                           D))
    torch.testing.assert_close(y, want, rtol=6e-4, atol=2e-3)
    # Per-chunk orders: channels 0-2 forward, 3-5 reversed (flipped inputs).
    y = selective_scan(u, delta, A, B, C, D, order=['forward', 'reverse'])
    y0 = selective_scan_ref(u[:, :3], delta[:, :3], A[:3], B[:, :1],
                            C[:, :1], D[:3])
    y1 = selective_scan_ref(u[:, 3:].flip(-1), delta[:, 3:].flip(-1), A[3:],
                            B[:, 1:].flip(-1), C[:, 1:].flip(-1),
                            D[3:]).flip(-1)
    torch.testing.assert_close(y, torch.cat([y0, y1], 1), rtol=6e-4,
                               atol=2e-3)
    # A (K, L) LongTensor is the same as the list of its rows.
    rows = torch.stack([perm, perm.flip(0), torch.arange(12)])
    torch.testing.assert_close(
        selective_scan(u, delta, A, B, C, order=rows),
        selective_scan(u, delta, A, B, C, order=list(rows)))


@pytest.mark.parametrize('dtype,rtol,atol', [(torch.bfloat16, 3e-2, 5e-2),
                                             (torch.float16, 5e-3, 1e-2)])
def test_cpu_low_precision(engine, dtype, rtol, atol):
    t = make_inputs(1, 8, 40, 4, 2, dtype=dtype, seed=7)
    got = run_scan(cpu_scan, t)
    assert got['y'].dtype == dtype and got['last_state'].dtype == torch.float32
    assert got['du'].dtype == dtype and got['dA'].dtype == dtype
    # The reference on the same (rounded) values in float32.
    t32 = {
        k: None if v is None else v.detach().float().requires_grad_()
        for k, v in t.items()
    }
    want = run_scan(selective_scan_ref, t32)
    want = {k: None if v is None else v.to(got[k].dtype)
            for k, v in want.items()}
    assert compare(got, want, rtol=rtol, atol=atol) == []


def test_cpu_gradcheck_float64(engine):
    t = make_inputs(1, 4, 7, 2, groups=2, dtype=torch.float64, seed=11)
    names = ['u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias']

    def fn(*args):
        y, last = selective_scan(*args, True, True, impl='cpu',
                                 order=['reverse', 'forward'])
        return y, last

    assert torch.autograd.gradcheck(fn, [t[k] for k in names], eps=1e-6,
                                    atol=1e-5, rtol=1e-4)


def test_cpu_long_sequence_large_delta():
    # L = 16384 with large steps (dt * A < -100): exp(dt * A) underflows to
    # ~0, the state is the last input, nothing may overflow to inf or NaN.
    length = 16384
    t = make_inputs(1, 4, length, 16, with_z=False, with_bias=False, seed=2)
    with torch.no_grad():
        t['delta'].abs_().add_(1000.)
    out = run_scan(cpu_scan, t)
    for name, v in out.items():
        if v is not None:
            assert torch.isfinite(v).all(), name
    u, dt, B, C, D = (t[k].detach() for k in ('u', 'delta', 'B', 'C', 'D'))
    dt = F.softplus(dt)
    want = dt * u * (B * C).sum(1, keepdim=True) + D[:, None] * u
    torch.testing.assert_close(out['y'], want, rtol=1e-4, atol=1e-3)


def test_cpu_saves_less_than_reference():
    # What autograd keeps for the backward: the CPU path keeps O(B*D*L)
    # plus one state every 64 tokens, the reference O(B*D*L*N).
    t = make_inputs(1, 32, 512, 16, with_z=False, seed=4)
    sizes = {}
    for name, fn in (('ref', selective_scan_ref), ('cpu', cpu_scan)):
        total = [0]

        def pack(x, total=total):
            total[0] += x.numel() * x.element_size()
            return x

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            fn(t['u'], t['delta'], t['A'], t['B'], t['C'], t['D'], None,
               t['delta_bias'], True)
        sizes[name] = total[0]
    per_bdl = 32 * 512 * 4
    assert sizes['cpu'] < 8 * per_bdl
    assert sizes['ref'] > 16 * per_bdl
    assert sizes['cpu'] * 4 < sizes['ref']


def test_cpu_non_contiguous_inputs(engine):
    # Backbones hand over (B, D, L) views of (B, L, D) tensors.
    t = make_inputs(2, 8, 20, 4, groups=2, seed=8)
    views = {
        k: v.detach().transpose(-1, -2).contiguous().transpose(
            -1, -2).requires_grad_() if k in ('u', 'delta', 'z', 'B', 'C') else v
        for k, v in t.items()
    }
    assert not views['u'].is_contiguous()
    want = run_scan(selective_scan_ref, t, order='reverse')
    got = run_scan(cpu_scan, views, order='reverse')
    assert compare(got, want) == []


def test_cpu_threads_and_fork():
    # Two threads split the channel blocks; a forked child (e.g. a worker
    # process) gets its own pool instead of the parent's dead threads.
    t = make_inputs(1, 40, 30, 4, with_z=False, seed=12)
    args = [t[k].detach() for k in ('u', 'delta', 'A', 'B', 'C')]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        y = selective_scan(*args, impl='cpu')
        pid = os.fork()
        if pid == 0:  # child: exit 0 only if the scan runs and agrees
            signal.alarm(60)
            ok = torch.equal(selective_scan(*args, impl='cpu'), y)
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
    finally:
        torch.set_num_threads(threads)
    assert os.WEXITSTATUS(status) == 0 and not os.WIFSIGNALED(status)
    torch.testing.assert_close(y, selective_scan_ref(*args), rtol=6e-4,
                               atol=2e-3)


def test_resolve_scan_order():
    assert resolve_scan_order(None, 6, 4) is None
    assert resolve_scan_order('row', 6, 4) is None
    assert resolve_scan_order(torch.arange(6), 6, 4) is None
    torch.testing.assert_close(
        resolve_scan_order('col', 6, 4, grid=(2, 3)),
        torch.tensor([[0, 3, 1, 4, 2, 5]]))
    torch.testing.assert_close(
        resolve_scan_order(['reverse', 'col_reverse'], 6, 4, grid=(2, 3)),
        torch.tensor([[5, 4, 3, 2, 1, 0], [5, 2, 4, 1, 3, 0]]))
    # Named orders are built once (cached), tensor orders are not.
    assert (resolve_scan_order(['row', 'col'], 6, 4, grid=[2, 3])
            is resolve_scan_order(('row', 'col'), 6, 4, grid=(2, 3)))


def test_dispatch(monkeypatch):
    t = make_inputs(1, 4, 9, 2, with_z=False, seed=6)
    args = [t[k] for k in ('u', 'delta', 'A', 'B', 'C')]

    def boom(*a):
        raise RuntimeError('cpu path called')

    monkeypatch.setattr(scan_cpu, 'selective_scan_cpu', boom)
    with pytest.raises(RuntimeError, match='cpu path called'):
        selective_scan(*args)
    monkeypatch.setenv('MMSSM_SCAN_IMPL', 'ref')
    torch.testing.assert_close(selective_scan(*args),
                               selective_scan_ref(*args))
    monkeypatch.setenv('MMSSM_SCAN_IMPL', 'fast')
    with pytest.raises(ValueError, match='MMSSM_SCAN_IMPL'):
        selective_scan(*args)
    monkeypatch.delenv('MMSSM_SCAN_IMPL')
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    with pytest.raises(ValueError, match="impl='triton' needs CUDA"):
        selective_scan(*args, impl='triton')
    with pytest.raises(ValueError, match='`impl` must be one of'):
        selective_scan(*args, impl='numba')


def _bad_cases():
    t = {
        k: (v.detach() if v is not None else None)
        for k, v in make_inputs(2, 4, 6, 3, with_z=True).items()
    }
    nan_a = t['A'].clone()
    nan_a[0, 0] = float('nan')
    inf_d = t['D'].clone()
    inf_d[1] = float('inf')
    return [
        (dict(u=t['u'][0]), ValueError, r'`u` must be 3-D'),
        (dict(delta=t['delta'][:, :, :5]), ValueError, r'`delta` must have'),
        (dict(A=t['A'][:3]), ValueError, r'`A` must be \(D, N\) with D=4'),
        (dict(A=t['A'].to(torch.complex64)), TypeError, r'`A` must be real'),
        (dict(B=t['B'][:, :2]), ValueError, r'`B` must be \(B, N, L\)'),
        (dict(B=t['A']), ValueError, r'constant \(D, N\) `B`'),
        (dict(B=t['B'][:, None].expand(2, 3, 3, 6),
              C=t['C'][:, None].expand(2, 3, 3, 6)), ValueError,
         r'groups G=3 .* must divide D=4'),
        (dict(C=t['C'][:, None].expand(2, 2, 3, 6)), ValueError,
         r'same number of groups'),
        (dict(D=t['D'][:3]), ValueError, r'`D` must be \(D,\)'),
        (dict(z=t['z'][:1]), ValueError, r'`z` must have the shape'),
        (dict(u=t['u'].long()), TypeError, r'`u` must be a floating'),
        (dict(u=t['u'].numpy()), TypeError, r'`u` must be a torch.Tensor'),
        (dict(A=nan_a), ValueError, r'`A` has non-finite'),
        (dict(D=inf_d), ValueError, r'`D` has non-finite'),
        (dict(delta_bias=torch.full((4, ), float('nan'))), ValueError,
         r'`delta_bias` has non-finite'),
        (dict(u=t['u'].to('meta')), ValueError, r'`delta` is on cpu but'),
        (dict(order='diagonal'), ValueError, r"unknown order 'diagonal'"),
        (dict(order='col'), ValueError, r'needs grid=\(H, W\)'),
        (dict(order='col', grid=(2, 2)), ValueError, r'H \* W must equal L'),
        (dict(grid=(2, 3.0)), ValueError, r'pair of positive ints'),
        (dict(order=['forward'] * 3), ValueError, r'3 orders cannot split D=4'),
        (dict(order=torch.tensor([0, 1, 2, 3, 4, 4])), ValueError,
         r'permutation of range\(L=6\)'),
        (dict(order=torch.arange(5)), ValueError, r'expected \(L,\) = \(6,\)'),
        (dict(order=torch.arange(6.)), TypeError, r'integer \(int64\)'),
        (dict(order=3), TypeError, r'`order` must be None'),
    ]


@pytest.mark.parametrize('change,exc,match', _bad_cases())
@pytest.mark.parametrize('fn', [selective_scan, selective_scan_ref])
def test_bad_inputs_raise(fn, change, exc, match):
    t = {
        k: (v.detach() if v is not None else None)
        for k, v in make_inputs(2, 4, 6, 3, with_z=True).items()
    }
    change = dict(change)
    order = change.pop('order', None)
    grid = change.pop('grid', None)
    t.update(change)
    with pytest.raises(exc, match=match):
        fn(t['u'], t['delta'], t['A'], t['B'], t['C'], t['D'], t['z'],
           t['delta_bias'], order=order, grid=grid)


def test_traced_grid_sizes(engine):
    """Under torch.jit tracing, ``x.shape`` sizes are 0-d tensors: the op takes
    them as the grid and the CPU path records one op (FLOP counting)."""

    class ColumnScan(torch.nn.Module):

        def forward(self, x, delta, A, B, C):
            h, w = x.shape[2], x.shape[3]
            return selective_scan(
                x.flatten(2), delta, A, B, C, order='col', grid=(h, w),
                impl='cpu')

    torch.manual_seed(0)
    x = torch.randn(1, 4, 3, 5)
    delta = torch.rand(1, 4, 15)
    A = -torch.rand(4, 2) - 0.5
    B, C = torch.randn(1, 2, 15), torch.randn(1, 2, 15)
    expected = selective_scan_ref(
        x.flatten(2), delta, A, B, C, order='col', grid=(3, 5))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        traced = torch.jit.trace(ColumnScan(), (x, delta, A, B, C),
                                 check_trace=False)
    # the op's checks read sizes as numbers while tracing: silenced there
    assert not [w for w in caught
                if issubclass(w.category, torch.jit.TracerWarning)
                and '/mmssm/' in w.filename], [str(w.message) for w in caught]
    kinds = [n.kind() for n in traced.inlined_graph.nodes()]
    assert kinds.count('prim::PythonOp') == 1
    torch.testing.assert_close(
        traced(x, delta, A, B, C), expected, rtol=6e-4, atol=2e-3)
    # A float or a wrong-sized grid is still refused.
    with pytest.raises(ValueError, match='grid'):
        selective_scan(x.flatten(2), delta, A, B, C, order='col',
                       grid=(torch.tensor(3.), 5), impl='cpu')


@pytest.mark.parametrize('bad', [0, -1, 2.0, True, '2'])
def test_bad_split_l_is_refused(bad):
    """``split_l`` (Triton's split-L mode) is validated on every path."""
    t = make_inputs(1, 4, 10, 2, seed=0)
    with pytest.raises(ValueError, match='split_l must be None or an int'):
        selective_scan(t['u'], t['delta'], t['A'], t['B'], t['C'],
                       impl='cpu', split_l=bad)


def test_split_l_is_ignored_off_triton():
    """Other implementations take ``split_l`` and give the same result."""
    t = make_inputs(1, 4, 10, 2, seed=0)
    args = (t['u'], t['delta'], t['A'], t['B'], t['C'])
    torch.testing.assert_close(selective_scan(*args, impl='cpu', split_l=3),
                               selective_scan(*args, impl='cpu'))
