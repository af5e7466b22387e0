"""The portable chunked scan (impl='chunked') against the readable loop."""
import pytest
import torch
from scan_testutils import make_inputs

from mmssm.ops import resolve_scan_order, selective_scan, selective_scan_ref
from mmssm.ops.scan_chunked import scan_chunked

NAMES = ('u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias')


def _run(fn, t, **kwargs):
    args = [t[k] for k in NAMES]
    y, last = fn(*args, True, True, **kwargs)
    grads = torch.autograd.grad(
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum() +
        last.sum(), [x for x in args if x is not None],
        allow_unused=True)
    grads = [
        torch.zeros_like(x) if g is None else g
        for x, g in zip([x for x in args if x is not None], grads)
    ]
    return y, last, grads


@pytest.mark.parametrize('length,order,grid,groups', [
    (1, None, None, None),
    (5, 'reverse', None, 2),
    (64, None, None, None),
    (65, 'reverse', None, None),
    (300, ['row', 'col', 'row_reverse', 'col_reverse'], (15, 20), None),
    (300, 'col_reverse', (12, 25), 4),
    (130, 'perm', None, 2),
])
def test_chunked_equals_reference(length, order, grid, groups):
    t = make_inputs(2, 8, length, 4, groups=groups, seed=length)
    if order == 'perm':
        order = torch.randperm(length, generator=torch.Generator()
                               .manual_seed(1))
    y, last, grads = _run(selective_scan, t, order=order, grid=grid,
                          impl='chunked')
    ry, rlast, rgrads = _run(selective_scan_ref, t, order=order, grid=grid)
    torch.testing.assert_close(y, ry, rtol=1e-5, atol=2e-5)
    torch.testing.assert_close(last, rlast, rtol=1e-5, atol=2e-5)
    for g, r in zip(grads, rgrads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=5e-5)


def test_chunked_long_sequence_and_bf16():
    # L = 4096: 64 chunks of 64 (two levels of doubling steps)
    t = make_inputs(1, 4, 4096, 4, seed=7)
    y, last, grads = _run(selective_scan, t, impl='chunked')
    ry, rlast, rgrads = _run(selective_scan_ref, t)
    torch.testing.assert_close(y, ry, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(last, rlast, rtol=1e-4, atol=1e-4)
    for g, r in zip(grads, rgrads):
        torch.testing.assert_close(g, r, rtol=1e-3, atol=1e-3)
    # bfloat16 inputs: both accumulate in float32, outputs in bfloat16
    tb = make_inputs(2, 8, 100, 4, dtype=torch.bfloat16, seed=3)
    args = [tb[k] for k in NAMES]
    yb = selective_scan(*args, True, impl='chunked')
    rb = selective_scan_ref(*args, True)
    assert yb.dtype == torch.bfloat16
    torch.testing.assert_close(yb.float(), rb.float(), rtol=2e-2, atol=2e-2)


def test_chunked_gradcheck_float64():
    t = make_inputs(1, 4, 9, 2, groups=2, dtype=torch.float64, seed=5)
    args = [t[k] for k in NAMES]

    def fn(*xs):
        return scan_chunked(*xs, True, True, None, chunk=4)

    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-5)


def test_auto_takes_chunked_off_cpu_and_cuda():
    # meta tensors stand in for a device without a dedicated kernel (MPS,
    # XPU): the auto choice runs the portable path and gives the shapes
    t = {k: v.detach().to('meta') for k, v in make_inputs(2, 8, 20, 4).items()}
    y, last = selective_scan(*[t[k] for k in NAMES], True, True,
                             order='reverse')
    assert y.device.type == 'meta' and tuple(y.shape) == (2, 8, 20)
    assert tuple(last.shape) == (2, 8, 4)
    with pytest.raises(ValueError, match='power of two'):
        scan_chunked(*[t[k] for k in NAMES], True, True, None, chunk=48)


def test_chunked_exports_as_standard_operators():
    t = make_inputs(1, 8, 33, 4)
    args = tuple(t[k].detach() for k in ('u', 'delta', 'A', 'B', 'C', 'D'))

    class Scan(torch.nn.Module):

        def forward(self, u, delta, A, B, C, D):
            return selective_scan(u, delta, A, B, C, D, None, None, True,
                                  order='reverse', impl='chunked')

    program = torch.export.export(Scan(), args)
    targets = {
        str(n.target)
        for n in program.graph.nodes if n.op == 'call_function'
    }
    assert all(x.startswith('aten.') for x in targets), targets
    # exporting left no fake tensor in the order cache (a later eager call
    # with the same order reads it)
    perm = resolve_scan_order('reverse', 33, 8)
    assert type(perm) is torch.Tensor and perm[0, 0] == 32
    with torch.no_grad():
        out = program.module()(*args)
        ref = selective_scan_ref(*args, None, None, True, order='reverse')
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
