"""The layering of the selective-scan modules and the cost of its checks.

* Imports flow one way: no cycle among the scan modules, and the Triton
  kernels module imports nothing of mmssm.
* On a non-CPU device no check reads a tensor value (which on CUDA is a
  device-to-host synchronisation per call) unless ``MMSSM_SCAN_DEBUG=1``:
  meta tensors, whose values cannot be read at all, stand in for CUDA ones;
  on a machine with CUDA, torch's sync debug mode checks a real call.
"""
import ast
from pathlib import Path

import pytest
import torch

from mmssm.ops import resolve_scan_order, selective_scan
from mmssm.ops import scan_common

REPO = Path(__file__).resolve().parents[2]
MODULES = {
    f'mmssm.ops.{p.stem}': p
    for p in (REPO / 'mmssm' / 'ops').glob('*.py')
    if p.stem == 'selective_scan' or p.stem.startswith('scan_')
}
MODULES['mmssm.kernels.selective_scan'] = (REPO / 'kernels' /
                                          'selective_scan.py')


def _imports(name: str, path: Path):
    """Absolute names of every module ``path`` imports (also inside
    functions); ``from pkg import mod`` counts as ``pkg.mod`` too."""
    package = name.rsplit('.', 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parent = package.rsplit('.', node.level - 1)[0]
                base = f'{parent}.{base}' if base else parent
            found.add(base)
            found.update(f'{base}.{alias.name}' for alias in node.names)
    return found


def test_scan_modules_import_one_way():
    assert {'mmssm.ops.selective_scan', 'mmssm.ops.scan_order',
            'mmssm.ops.scan_ref', 'mmssm.ops.scan_cpu',
            'mmssm.ops.scan_triton', 'mmssm.ops.scan_common'} <= set(MODULES)
    graph = {
        name: _imports(name, path) & set(MODULES)
        for name, path in MODULES.items()
    }
    kernels = _imports('mmssm.kernels.selective_scan',
                       MODULES['mmssm.kernels.selective_scan'])
    assert not [m for m in kernels if m.split('.')[0] == 'mmssm'], kernels
    # Topological order: repeatedly drop the modules that import no other.
    remaining = dict(graph)
    while remaining:
        leaves = [n for n, deps in remaining.items()
                  if not deps & set(remaining)]
        assert leaves, f'import cycle among {sorted(remaining)}'
        for name in leaves:
            del remaining[name]
    assert graph['mmssm.ops.scan_common'] == set()
    assert graph['mmssm.ops.scan_order'] == {'mmssm.ops.scan_common'}


def _meta_inputs():
    meta = dict(device='meta')
    u = torch.randn(2, 4, 6, **meta)
    return (u, torch.randn(2, 4, 6, **meta), torch.randn(4, 3, **meta),
            torch.randn(2, 3, 6, **meta), torch.randn(2, 3, 6, **meta),
            torch.randn(4, **meta), torch.randn(2, 4, 6, **meta),
            torch.randn(4, **meta))


def test_no_value_reads_off_cpu_unless_debug(monkeypatch):
    monkeypatch.delenv(scan_common.DEBUG_ENV, raising=False)
    args = _meta_inputs()
    perm = torch.randperm(6).to('meta')
    y = selective_scan(*args, True, impl='ref', order=[perm, 'col'],
                       grid=(2, 3))
    assert y.shape == (2, 4, 6) and y.device.type == 'meta'
    monkeypatch.setenv(scan_common.DEBUG_ENV, '1')
    # The checks run now; a meta tensor has no values to read.
    with pytest.raises(RuntimeError, match='meta'):
        selective_scan(*args, True, impl='ref')
    with pytest.raises(RuntimeError, match='meta'):
        resolve_scan_order(perm, 6, 4, device='meta')
    monkeypatch.setenv(scan_common.DEBUG_ENV, 'yes')
    with pytest.raises(ValueError, match="MMSSM_SCAN_DEBUG must be '0' or"):
        selective_scan(*args, True, impl='ref')


def test_cpu_checks_always_on(monkeypatch):
    monkeypatch.setenv(scan_common.DEBUG_ENV, '0')
    u = torch.randn(1, 2, 4)
    A = torch.full((2, 1), float('nan'))
    with pytest.raises(ValueError, match='`A` has non-finite'):
        selective_scan(u, u, A, u[:, :1], u[:, :1])
    with pytest.raises(ValueError, match='must be a permutation'):
        resolve_scan_order(torch.tensor([0, 0, 1, 2]), 4, 2)
    # Tensor orders given on the CPU are checked there, then moved.
    with pytest.raises(ValueError, match='must be a permutation'):
        resolve_scan_order(torch.tensor([0, 0, 1, 2]), 4, 2, device='meta')


def test_named_orders_built_on_cpu_and_moved_once(monkeypatch):
    monkeypatch.delenv(scan_common.DEBUG_ENV, raising=False)
    perm = resolve_scan_order(['row', 'col_reverse'], 6, 4, grid=(2, 3),
                              device='meta')
    assert perm.device.type == 'meta' and perm.shape == (2, 6)
    assert perm is resolve_scan_order(('row', 'col_reverse'), 6, 4,
                                      grid=(2, 3),
                                      device=torch.device('meta'))
    assert resolve_scan_order('row', 6, 4, device='meta') is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_call_does_not_synchronise(monkeypatch):
    """Forward and backward on CUDA with named orders: no device-to-host
    synchronisation (torch's sync debug mode turns one into an error)."""
    pytest.importorskip('triton')
    monkeypatch.delenv(scan_common.DEBUG_ENV, raising=False)
    g = torch.Generator().manual_seed(0)
    cpu = [
        torch.randn(2, 8, 20, generator=g),
        torch.rand(2, 8, 20, generator=g),
        -torch.rand(8, 4, generator=g),
        torch.randn(2, 2, 4, 20, generator=g),
        torch.randn(2, 2, 4, 20, generator=g),
        torch.randn(8, generator=g),
        torch.randn(2, 8, 20, generator=g),
        torch.randn(8, generator=g),
    ]
    args = [t.cuda().requires_grad_() for t in cpu]
    kw = dict(order=['row', 'col', 'row_reverse', 'col_reverse'], grid=(4, 5))
    selective_scan(*args, True, **kw).sum().backward()  # compile, cache
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        y = selective_scan(*args, True, **kw)
        y.sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode('default')
    want = selective_scan(*cpu, True, impl='ref', **kw)
    torch.testing.assert_close(y.cpu(), want, rtol=1e-4, atol=1e-4)
