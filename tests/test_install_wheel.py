"""A wheel built from the repository installs and works outside it.

The wheel is built with this interpreter's pip (``pip wheel --no-deps
--no-build-isolation --no-index``) from a copy of the working tree (the files
git tracks or would track: a stale ``build/`` folder of the checkout cannot
leak into it), installed with ``pip install --no-deps --no-index`` into a
fresh venv (``python -m venv --system-site-packages``), and imported from a
folder outside the repository. No network is used.

``--system-site-packages`` exposes the *base* interpreter's site-packages, not
those of the project venv this test runs in (a venv made from a venv's python
points at the base installation), so torch, mmengine and the rest are made
visible by a ``.pth`` file that lists this interpreter's site-packages
folders as plain paths: they come after the fresh venv's own site-packages,
and the ``.pth`` files inside them (the editable install's finder of this
checkout) are not executed. The test asserts that ``mmssm`` resolves to the
wheel all the same.

What the wheel holds (``setup.py``): the package ``mmssm`` (every module of
``mmssm/``), the Triton kernels of ``kernels/`` as ``mmssm.kernels``, and
``mmssm/.mim/`` with ``model-index.yml`` and ``configs/`` (metafiles
included), where OpenMMLab's ``mim`` looks for them; no other top-level name,
no tests, tools or caches.
"""
import importlib.util
import json
import os
import os.path as osp
import shutil
import site
import subprocess
import sys
import zipfile

import pytest
import yaml

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TIMEOUT = 300

CHILD = r'''
import importlib.metadata as md
import json
import sys
import sysconfig

import mmssm
import mmssm.kernels
info = dict(
    mmssm=mmssm.__file__, kernels=mmssm.kernels.__file__,
    version=mmssm.__version__, sys_path=sys.path,
    purelib=sysconfig.get_paths()['purelib'], prefix=sys.prefix)
try:
    import triton  # noqa: F401
except ImportError:
    info['scan'] = None
else:
    import mmssm.kernels.selective_scan as scan
    info['scan'] = scan.__file__
import torch
info['torch'] = torch.__file__
dist = md.distribution('mmssm')
info['dist_version'] = dist.version
info['dist_location'] = str(dist.locate_file(''))
info['direct_url'] = dist.read_text('direct_url.json')
print('CHILD-JSON ' + json.dumps(info))
'''


def _run(cmd, **kwargs):
    res = subprocess.run(cmd, capture_output=True, text=True,
                         timeout=TIMEOUT, **kwargs)
    assert res.returncode == 0, (
        f'{cmd} failed ({res.returncode}):\n{res.stdout[-3000:]}\n'
        f'{res.stderr[-3000:]}')
    return res


def _env():
    env = dict(os.environ, PIP_NO_INPUT='1', PIP_DISABLE_PIP_VERSION_CHECK='1',
               PYTHONNOUSERSITE='1')
    for key in ('PYTHONPATH', 'PYTHONHOME', 'PIP_INDEX_URL',
                'PIP_EXTRA_INDEX_URL', 'PIP_FIND_LINKS'):
        env.pop(key, None)
    return env


def _source_files():
    """The working tree's files that git tracks or would track."""
    try:
        out = subprocess.run(
            ['git', 'ls-files', '-z', '--cached', '--others',
             '--exclude-standard'], cwd=ROOT, capture_output=True, check=True,
            timeout=60).stdout.decode()
    except (OSError, subprocess.SubprocessError):
        return None
    return sorted(n for n in set(out.split('\0'))
                  if n and osp.isfile(osp.join(ROOT, n)))


def _copy_source(dst):
    names = _source_files()
    if names is None:  # no git: the tree without what .gitignore lists
        shutil.copytree(ROOT, dst, ignore=shutil.ignore_patterns(
            '.git', '.venv', 'build', 'dist', 'work_dirs', 'data',
            'checkpoints', '__pycache__', '*.pyc', '*.egg-info',
            '.pytest_cache'))
        return sorted(
            osp.relpath(osp.join(d, f), dst).replace(os.sep, '/')
            for d, _, fs in os.walk(dst) for f in fs)
    for name in names:
        os.makedirs(osp.dirname(osp.join(dst, name)), exist_ok=True)
        shutil.copy2(osp.join(ROOT, name), osp.join(dst, name))
    return names


def _pip_version():
    out = _run([sys.executable, '-m', 'pip', '--version'], env=_env())
    return tuple(int(p) for p in out.stdout.split()[1].split('.')[:2])


@pytest.fixture(scope='module')
def wheel_install(tmp_path_factory):
    # asked in a subprocess: find_spec('pip') in this process makes
    # setuptools' distutils shim replace an imported distutils (a warning,
    # and a deprecation warning at mmengine's next `from distutils import`)
    if subprocess.run([sys.executable, '-m', 'pip', '--version'],
                      capture_output=True).returncode != 0:
        pytest.skip('pip is not installed in this interpreter')
    if importlib.util.find_spec('venv') is None:
        pytest.skip('the venv module is not available')
    tmp = tmp_path_factory.mktemp('wheel')
    src, dist, venv_dir, outside = (str(tmp / n) for n in
                                    ('src', 'dist', 'venv', 'outside'))
    os.makedirs(outside)
    sources = _copy_source(src)
    env = _env()
    _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps',
          '--no-build-isolation', '--no-index', '-q', '-w', dist, src],
         env=env)
    wheels = [f for f in os.listdir(dist) if f.endswith('.whl')]
    assert len(wheels) == 1, wheels
    wheel = osp.join(dist, wheels[0])

    # a fresh venv; pip >= 22.3 installs into it from here (--python), so
    # the venv needs no pip of its own (ensurepip takes seconds)
    with_pip = _pip_version() < (22, 3)
    _run([sys.executable, '-m', 'venv', '--system-site-packages'] +
         ([] if with_pip else ['--without-pip']) + [venv_dir], env=env)
    bindir = 'Scripts' if os.name == 'nt' else 'bin'
    py = osp.join(venv_dir, bindir, 'python')
    if with_pip:
        install = [py, '-m', 'pip']
    else:
        install = [sys.executable, '-m', 'pip', '--python', py]
    _run(install + ['install', '--no-deps', '--no-index', '-q', wheel],
         env=env, cwd=outside)
    purelib = _run(
        [py, '-c', 'import sysconfig; print(sysconfig.get_paths()'
         '["purelib"])'], env=env, cwd=outside).stdout.strip()
    # this interpreter's packages (torch, mmengine, ...), after the venv's own
    # (written after the install, so pip never saw the editable mmssm)
    deps = [p for p in site.getsitepackages() if osp.isdir(p)]
    with open(osp.join(purelib, '_mmssm_test_deps.pth'), 'w') as f:
        f.write('\n'.join(deps) + '\n')
    res = _run([py, '-c', CHILD], env=env, cwd=outside)
    line = [ln for ln in res.stdout.splitlines()
            if ln.startswith('CHILD-JSON ')]
    assert line, res.stdout + res.stderr
    info = json.loads(line[-1][len('CHILD-JSON '):])
    return dict(wheel=wheel, purelib=purelib, deps=deps, info=info,
                sources=sources, venv=venv_dir)


def _real(path):
    return osp.normcase(osp.realpath(path))


def _under(path, folder):
    path, folder = _real(path), _real(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def test_wheel_imports_from_the_fresh_venv_outside_the_repo(wheel_install):
    info, purelib = wheel_install['info'], wheel_install['purelib']
    assert _under(purelib, wheel_install['venv'])
    assert _real(info['prefix']) == _real(wheel_install['venv'])
    for key in ('mmssm', 'kernels'):
        assert _under(info[key], osp.join(purelib, 'mmssm')), (key, info)
        assert not _under(info[key], ROOT), (key, info[key])
    assert _real(info['mmssm']) == _real(
        osp.join(purelib, 'mmssm', '__init__.py'))
    assert _real(info['kernels']) == _real(
        osp.join(purelib, 'mmssm', 'kernels', '__init__.py'))
    if importlib.util.find_spec('triton') is not None:
        assert _real(info['scan']) == _real(
            osp.join(purelib, 'mmssm', 'kernels', 'selective_scan.py'))
    # the venv's site-packages come before this interpreter's and the base
    # interpreter's; the repository is not on the path
    paths = [_real(p) for p in info['sys_path'] if p]
    assert _real(purelib) in paths
    first = paths.index(_real(purelib))
    for dep in wheel_install['deps']:
        assert _real(dep) in paths, dep  # torch & co. are visible ...
        assert paths.index(_real(dep)) > first, (dep, paths)
    for p in site.getsitepackages([sys.base_prefix]):
        if _real(p) in paths:
            assert paths.index(_real(p)) > first, (p, paths)
    assert _real(ROOT) not in paths
    assert not _under(info['torch'], wheel_install['venv'])  # ... from deps
    # the distribution metadata is the wheel's, not the editable install's
    scope = {}
    with open(osp.join(ROOT, 'mmssm', 'version.py')) as f:
        exec(f.read(), scope)
    assert info['version'] == info['dist_version'] == scope['__version__']
    assert _real(info['dist_location']) == _real(purelib)
    if info['direct_url']:
        direct = json.loads(info['direct_url'])
        assert 'dir_info' not in direct, direct  # not an editable install
        assert direct['url'].endswith('.whl'), direct


def test_wheel_holds_the_package_kernels_and_model_index(wheel_install):
    with zipfile.ZipFile(wheel_install['wheel']) as zf:
        names = set(zf.namelist())
    version = wheel_install['info']['version']
    tops = {n.split('/', 1)[0] for n in names}
    assert tops == {'mmssm', f'mmssm-{version}.dist-info'}, tops
    bad = sorted(n for n in names if '__pycache__' in n or n.endswith(
        ('.pyc', '.nbi', '.nbc', '.so')))
    assert not bad, bad
    sources = wheel_install['sources']
    # every module of the package and of kernels/, nothing else
    want = {n for n in sources if n.startswith('mmssm/') and n.endswith('.py')}
    want |= {'mmssm/kernels/' + n[len('kernels/'):] for n in sources
             if n.startswith('kernels/') and n.endswith('.py')}
    got = {n for n in names if n.endswith('.py')
           and not n.startswith('mmssm/.mim/')}
    assert got == want, (sorted(want - got), sorted(got - want))
    assert 'mmssm/kernels/selective_scan.py' in got
    # the configs and the model index, as in the repository
    want_mim = {'mmssm/.mim/' + n for n in sources
                if n == 'model-index.yml' or (
                    n.startswith('configs/') and n.endswith(('.py', '.yml')))}
    got_mim = {n for n in names if n.startswith('mmssm/.mim/')}
    assert got_mim == want_mim, (sorted(want_mim - got_mim),
                                 sorted(got_mim - want_mim))


def test_installed_model_index_resolves(wheel_install):
    mim = osp.join(wheel_install['purelib'], 'mmssm', '.mim')
    with open(osp.join(mim, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    assert index['Import']
    configs = set()
    for rel in index['Import']:
        with open(osp.join(mim, rel)) as f:
            meta = yaml.safe_load(f)
        for model in meta['Models']:
            assert osp.isfile(osp.join(mim, model['Config'])), model['Config']
            configs.add(model['Config'])
    # the same files as the repository's
    for rel in ['model-index.yml'] + index['Import']:
        with open(osp.join(mim, rel)) as a, open(osp.join(ROOT, rel)) as b:
            assert a.read() == b.read(), rel
    assert len(configs) > 50
