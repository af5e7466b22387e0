"""Every demo config trains under ``tools/dist_train.sh CONFIG 2`` on the CPU.

Two gloo processes (``CPUDistributedDataParallel``), two iterations on the
generated data (``--data-root``, ``--max-iters 2``), data loading in the main
processes. A parameter that gets no gradient in a configuration (e.g. the
norm of a backbone output the neck skips) stops DDP at the second iteration
("parameters that were not used in producing loss"), so passing here means
the demo configs have none, without ``find_unused_parameters``.
"""
import glob
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMOS = sorted(
    p for p in glob.glob(osp.join(ROOT, 'configs', '*', '*demo*.py'))
    if '_base_' not in p)
NO_WORKERS = [
    f'{loader}.{key}={value}'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    for key, value in (('num_workers', 0), ('persistent_workers', False))
]


def test_every_demo_is_listed():
    families = {osp.basename(osp.dirname(p)) for p in DEMOS}
    assert families == {'groupmamba', 'mambaout', 'mambavision', 'vim',
                        'vim_adapter'}
    assert len(DEMOS) == 16


@pytest.mark.parametrize('config', DEMOS,
                         ids=[osp.basename(p)[:-3] for p in DEMOS])
def test_demo_trains_on_two_cpu_processes(config, data_root, tmp_path):
    kind = 'coco_shapes' if 'coco-shapes' in config else 'ade_shapes'
    port = 29700 + DEMOS.index(config)
    env = dict(os.environ, PORT=str(port), OMP_NUM_THREADS='1',
               PYTHON=sys.executable)
    work = tmp_path / 'work'
    res = subprocess.run([
        'bash', osp.join(ROOT, 'tools', 'dist_train.sh'), config, '2',
        '--work-dir', str(work), '--data-root', str(data_root / kind) + '/',
        '--max-iters', '2', '--cfg-options', *NO_WORKERS
    ], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-5000:]
    assert 'Distributed training: True' in out
    assert 'GPU number: 2' in out  # mmengine's name for the world size
    assert "type='CPUDistributedDataParallel'" in out
    assert 'find_unused_parameters=True' not in out
    # (the loggers' intervals differ: the saved checkpoint marks the end)
    assert 'Saving checkpoint at 2 iterations' in out, out[-3000:]
    assert (work / 'iter_2.pth').is_file()
