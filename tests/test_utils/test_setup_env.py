"""The stack traps of issue 2, each proven to exist and to be fixed."""
import argparse
import textwrap

import numpy as np
import pytest
import torch

import mmssm  # noqa: F401  (applies the fixes)
from tiny_demo_configs import ROOT, run_python  # noqa: I


def _run(code):
    """Run ``code`` (dedented) in a fresh interpreter in the repository;
    returns the completed process."""
    return run_python(['-c', textwrap.dedent(code)], ROOT, timeout=300)[0]


def test_import_mmssm_does_not_import_mmdet_or_mmseg():
    res = _run("""
        import sys, mmssm
        bad = [m for m in ('mmdet', 'mmseg') if m in sys.modules]
        print('LOADED', bad)
    """)
    assert res.returncode == 0, res.stderr
    assert 'LOADED []' in res.stdout


def test_pinned_stack_versions_import_together():
    res = _run("""
        import numpy, mmcv, mmdet, mmseg, mmpretrain, torch, torchvision
        print(numpy.__version__, mmcv.__version__, torch.__version__.split('+')[0])
    """)
    assert res.returncode == 0, res.stderr
    numpy_v, mmcv_v, torch_v = res.stdout.split()
    # numpy 2.x breaks this stack; mmdet/mmseg refuse mmcv >= 2.2.0
    assert int(numpy_v.split('.')[0]) < 2
    assert mmcv_v == '2.1.0'
    assert torch_v == '2.14.1'


BASE_CFG = textwrap.dedent("""
    _base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py']
    model = dict(backbone=dict(depth=18))
""")


@pytest.mark.parametrize('with_mmssm', [False, True])
def test_base_configs_resolve_without_pkg_resources(tmp_path, with_mmssm):
    """setuptools >= 82 has no pkg_resources; mmengine needs it for `mmdet::`
    bases. mmssm swaps the lookup for importlib.metadata when it is missing."""
    cfg_file = tmp_path / 'cfg.py'
    cfg_file.write_text(BASE_CFG)
    res = _run(f"""
        import sys
        sys.modules['pkg_resources'] = None   # as with setuptools >= 82
        if {with_mmssm}:
            import mmssm
        from mmengine.config import Config
        cfg = Config.fromfile({str(cfg_file)!r})
        print('DEPTH', cfg.model.backbone.depth, cfg.model.type)
    """)
    if with_mmssm:
        assert res.returncode == 0, res.stderr
        assert 'DEPTH 18 MaskRCNN' in res.stdout
    else:  # the trap is real: plain mmengine fails
        assert res.returncode != 0
        assert 'pkg_resources' in res.stderr


def test_lookup_replacement_matches_pkg_resources():
    import mmengine.utils.package_utils as pu

    from mmssm.utils.setup_env import _get_installed_path, _is_installed
    for pkg in ('mmdet', 'mmsegmentation', 'mmpretrain', 'mmengine'):
        assert _is_installed(pkg) and pu.is_installed(pkg)
        assert _get_installed_path(pkg) == pu.get_installed_path(pkg)
    assert not _is_installed('surely_not_a_package_xyz')


class _Evil:

    def __reduce__(self):
        return (print, ('pwned', ))


def test_torch_load_weights_only_accepts_mmengine_and_official_objects(
        tmp_path):
    from mmengine.logging import HistoryBuffer
    buf = HistoryBuffer()
    buf.update(1.5)
    ckpt = dict(
        meta=dict(message_hub=dict(log_scalars={'loss': buf})),
        arr=np.arange(3, dtype=np.float32),
        scalar=np.float64(2.5),
        args=argparse.Namespace(model='vim_tiny', lr=1e-3),
        state_dict={'w': torch.ones(2)})
    path = tmp_path / 'ckpt.pth'
    torch.save(ckpt, path)
    loaded = torch.load(path)  # weights_only=True is torch's default
    assert loaded['args'].model == 'vim_tiny'
    assert loaded['meta']['message_hub']['log_scalars']['loss'].current() \
        == 1.5
    np.testing.assert_array_equal(loaded['arr'], np.arange(3))
    assert loaded['scalar'] == 2.5


def test_torch_load_still_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'x': _Evil()}, path)
    with pytest.raises(Exception, match='(?i)weights_only|unsupported global'):
        torch.load(path)


def test_cpu_ddp_wrapper_drops_device_ids(tmp_path):
    """mmengine passes device_ids=[LOCAL_RANK]; torch rejects that for CPU
    modules. The wrapper runs a gloo group of one process."""
    res = _run(f"""
        import os, torch, torch.distributed as dist
        os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT='29533',
                          RANK='0', WORLD_SIZE='1', LOCAL_RANK='0')
        dist.init_process_group('gloo')
        import mmssm
        from mmengine.registry import MODEL_WRAPPERS
        from mmengine.model import BaseModel
        class M(BaseModel):
            def __init__(self):
                super().__init__()
                self.lin = torch.nn.Linear(2, 1)
            def forward(self, x, mode='tensor'):
                return self.lin(x)
        w = MODEL_WRAPPERS.build(dict(type='CPUDistributedDataParallel'),
                                 default_args=dict(module=M(), device_ids=[0]))
        print('DEVICE_IDS', w.device_ids, float(w(torch.ones(1, 2)).shape[0]))
    """)
    assert res.returncode == 0, res.stderr
    assert 'DEVICE_IDS None 1.0' in res.stdout
