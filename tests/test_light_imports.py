"""What importing mmssm pulls in, each case in a fresh interpreter.

* ``import mmssm.ops`` needs torch only: numba, triton, mmcv and mmengine are
  made unimportable (``sys.modules[name] = None``) and the selective scan
  still runs on CPU tensors (torch engine).
* ``import mmssm`` and the SSM backbones never load mmcv's compiled ops
  (``mmcv._ext``): only the ViT-Adapter's deformable attention needs them.
* ``import mmssm`` imports no task package (mmdet, mmseg, mmpretrain, nor
  mmssm's own ``mmssm.det``/``mmssm.cls``) and no Triton, yet registers every
  mmssm component; nothing outside ``mmssm/det``, ``mmssm/seg`` and
  ``mmssm/cls`` imports a task package.
"""
import ast
import textwrap
from pathlib import Path

from tiny_demo_configs import run_python

REPO = Path(__file__).resolve().parents[1]


def _run(code: str) -> str:
    """Run ``code`` (dedented) in a fresh interpreter in the repository;
    asserts it succeeds and returns its stdout."""
    proc, out = run_python(['-c', textwrap.dedent(code)], REPO, timeout=600)
    assert proc.returncode == 0, out
    return proc.stdout


def test_ops_import_with_torch_only():
    out = _run("""
        import sys
        BLOCKED = ('numba', 'triton', 'mmcv', 'mmengine')
        for name in BLOCKED:
            sys.modules[name] = None  # import raises ModuleNotFoundError

        import torch
        import mmssm.ops
        from mmssm.ops import (SCAN_IMPLS, SCAN_ORDERS, resolve_scan_order,
                               selective_scan, selective_scan_ref)
        from mmssm.ops import scan_cpu

        assert scan_cpu.cpu_engine() == 'torch'
        g = torch.Generator().manual_seed(0)
        u = torch.randn(2, 4, 6, generator=g, requires_grad=True)
        delta = torch.rand(2, 4, 6, generator=g)
        A = -torch.rand(4, 3, generator=g)
        B = torch.randn(2, 3, 6, generator=g)
        C = torch.randn(2, 3, 6, generator=g)
        kw = dict(order=['row', 'col_reverse'], grid=(2, 3))
        y = selective_scan(u, delta, A, B, C, delta_softplus=True, **kw)
        y.sum().backward()
        want = selective_scan_ref(u, delta, A, B, C, delta_softplus=True,
                                  **kw)
        torch.testing.assert_close(y, want)
        loaded = sorted(m for m in sys.modules
                        if m.split('.')[0] in BLOCKED
                        and sys.modules[m] is not None)
        assert not loaded, loaded
        print('ok')
        """)
    assert out.strip() == 'ok'


def test_import_and_backbones_without_mmcv_compiled_ops():
    out = _run("""
        import sys
        import torch
        import mmssm
        from mmssm.registry import MODELS

        assert 'mmcv._ext' not in sys.modules
        vim = MODELS.build(
            dict(type='Vim', arch=dict(embed_dims=16, num_layers=2,
                                       d_state=4), img_size=32))
        gm = MODELS.build(
            dict(type='GroupMamba',
                 arch=dict(embed_dims=[16, 32, 48, 64], depths=[1, 1, 1, 1],
                           mlp_ratios=[2, 2, 2, 2], stem_channels=8)))
        x = torch.randn(1, 3, 32, 32)
        with torch.no_grad():
            for model in (vim, gm):
                outs = model.eval()(x)
                assert all(torch.isfinite(o).all() for o in outs)
        assert 'mmcv._ext' not in sys.modules
        print('ok')
        """)
    assert out.strip() == 'ok'


def test_import_mmssm_loads_no_task_package_and_registers():
    out = _run("""
        import sys
        import mmssm
        from mmengine.registry import MODELS as ROOT_MODELS
        from mmssm.registry import HOOKS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS

        heavy = ('mmdet', 'mmseg', 'mmpretrain', 'triton', 'mmcv._ext',
                 'mmcv.ops', 'mmssm.det', 'mmssm.cls', 'mmssm.kernels',
                 'numba', 'llvmlite')
        print(sorted(m for m in heavy if m in sys.modules))
        print(sorted(n for n in ('Vim', 'GroupMamba', 'MambaOut',
                                 'PlainAdapter', 'SimpleFeaturePyramid',
                                 'PlainMultiLevelTaps')
                     if n in MODELS.module_dict
                     and ROOT_MODELS.get(n) is MODELS.get(n)))
        print('SLWSHook' in HOOKS.module_dict,
              'SSMLayerDecayOptimWrapperConstructor'
              in OPTIM_WRAPPER_CONSTRUCTORS.module_dict)
        """)
    loaded, registered, others = out.strip().splitlines()[-3:]
    assert loaded == '[]'
    assert registered == str(sorted([
        'Vim', 'GroupMamba', 'MambaOut', 'PlainAdapter',
        'SimpleFeaturePyramid', 'PlainMultiLevelTaps']))
    assert others == 'True True'


def test_task_packages_imported_only_in_their_subpackages():
    """mmdet only under mmssm/det, mmpretrain only under mmssm/cls, mmseg only
    under mmssm/seg (absent: mmssm has no mmseg-specific code)."""
    owner = {'mmdet': 'det', 'mmseg': 'seg', 'mmpretrain': 'cls'}
    wrong = []
    for path in sorted((REPO / 'mmssm').rglob('*.py')):
        rel = path.relative_to(REPO)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or '']
            else:
                continue
            for name in names:
                top = name.split('.')[0]
                if top in owner and rel.parts[1] != owner[top]:
                    wrong.append(f'{rel}:{node.lineno} imports {name}')
    assert not wrong, wrong
    assert not (REPO / 'mmssm' / 'models' / 'heads').exists()
