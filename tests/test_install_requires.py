"""setup.py's ``install_requires`` lists what the package imports.

The imports are read from the source (``ast``), not from a running
interpreter: every third-party module that mmssm (outside ``mmssm/det``,
``mmssm/seg``, ``mmssm/cls``, whose upstream packages are extras) or
``kernels/`` imports at module level must come from a distribution in
``install_requires``; an import inside a function or a ``try ... except
ImportError`` is optional and may come from an extra instead. Conversely every
``install_requires`` entry is imported somewhere (no stale requirement).
"""
import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TASK_PACKAGES = ('det', 'seg', 'cls')

#: import name -> distribution, where they differ (or a dependency of a
#: listed distribution provides the module).
DISTRIBUTION = {'cv2': 'opencv-python', 'llvmlite': 'numba'}

#: Modules with a module-level import of an optional package, imported only
#: lazily by mmssm (checked by test_lazy_modules_are_not_imported).
LAZY_MODULES = {
    'kernels/conv1d.py': 'mmssm.kernels.conv1d',
    'kernels/selective_scan.py': 'mmssm.kernels.selective_scan',
    'mmssm/ops/scan_triton.py': 'mmssm.ops.scan_triton',
}


def _setup_requirements():
    tree = ast.parse((REPO / 'setup.py').read_text())
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in (
                'install_requires', 'extras_require'):
            found[node.arg] = ast.literal_eval(node.value)
    name = re.compile(r'[A-Za-z0-9_.\-]+')
    install = {name.match(r).group(0).lower() for r in
               found['install_requires']}
    extras = {
        name.match(r).group(0).lower()
        for reqs in found['extras_require'].values() for r in reqs
    }
    return install, extras


def _guarded(handler_types):
    names = set()
    for handler in handler_types:
        if handler.type is None:
            names.add('Exception')
            continue
        elts = (handler.type.elts if isinstance(handler.type, ast.Tuple)
                else [handler.type])
        names.update(getattr(e, 'id', '') for e in elts)
    return bool(names & {'ImportError', 'ModuleNotFoundError'})


def _imports(path):
    """``(top-level module, required)`` for each absolute import of a file;
    ``required`` is False inside a function or an ImportError guard."""
    out = []

    def visit(node, required):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                  ast.Lambda)):
                visit(child, False)
            elif isinstance(child, ast.Try):
                guarded = _guarded(child.handlers)
                for part in child.body:
                    visit(ast.Module(body=[part], type_ignores=[]),
                          required and not guarded)
                for part in child.handlers + child.orelse + child.finalbody:
                    visit(part, required)
            elif isinstance(child, ast.Import):
                out.extend((a.name.split('.')[0], required)
                           for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level == 0 and child.module:
                    out.append((child.module.split('.')[0], required))
            else:
                visit(child, required)

    visit(ast.parse(path.read_text(), str(path)), True)
    return out


def _package_files():
    for path in sorted((REPO / 'mmssm').rglob('*.py')):
        rel = path.relative_to(REPO)
        if len(rel.parts) > 2 and rel.parts[1] in TASK_PACKAGES:
            continue
        yield rel, path
    for path in sorted((REPO / 'kernels').glob('*.py')):
        yield path.relative_to(REPO), path


def _third_party(module):
    return module not in sys.stdlib_module_names and module not in (
        'mmssm', '__future__')


def test_install_requires_covers_the_imports():
    install, extras = _setup_requirements()
    missing = []
    for rel, path in _package_files():
        for module, required in _imports(path):
            if not _third_party(module):
                continue
            dist = DISTRIBUTION.get(module, module).lower()
            if required and str(rel) not in LAZY_MODULES:
                ok = dist in install
            else:
                ok = dist in install or dist in extras
            if not ok:
                missing.append(f'{rel}: import {module} ({dist}, '
                               f'{"module level" if required else "lazy"})')
    assert not missing, ('setup.py does not list the distribution of:\n' +
                         '\n'.join(missing))


def test_every_install_requirement_is_imported():
    install, _ = _setup_requirements()
    imported = {
        DISTRIBUTION.get(module, module).lower()
        for _, path in _package_files()
        for module, _ in _imports(path)
    }
    assert install - imported == set(), 'listed but never imported'


def test_import_scanner_classifies():
    """The scanner itself: module level, function body, ImportError guard."""
    import tempfile
    src = ('import numpy\nfrom torch import nn\nfrom . import x\n'
           'try:\n    import numba\nexcept ImportError:\n    numba = None\n'
           'try:\n    import cv2\nfinally:\n    pass\n'
           'def f():\n    import triton\n')
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'm.py'
        path.write_text(src)
        assert _imports(path) == [('numpy', True), ('torch', True),
                                  ('numba', False), ('cv2', True),
                                  ('triton', False)]


def test_lazy_modules_are_not_imported():
    """The modules allowed a module-level optional import are not loaded by
    ``import mmssm`` (nor by building a backbone on CPU)."""
    import subprocess
    code = ('import sys, mmssm, torch\n'
            'from mmssm.registry import MODELS\n'
            'm = MODELS.build(dict(type="Vim", arch=dict(embed_dims=16, '
            'num_layers=2, d_state=4), img_size=32))\n'
            'm(torch.randn(1, 3, 32, 32))\n'
            f'print(sorted(set({sorted(LAZY_MODULES.values())}) '
            '& set(sys.modules)))\n')
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == '[]'
