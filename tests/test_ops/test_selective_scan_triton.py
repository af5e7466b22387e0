"""The Triton selective-scan kernels, run by the Triton interpreter on the CPU.

``TRITON_INTERPRET=1`` must be set before triton is imported, so the cases of
``triton_interpret_cases.py`` run in a fresh interpreter process. The kernels'
speed on a GPU is not checked here (see tools/analysis_tools/benchmark_scan.py).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


# The cases of today (11 of the table, bf16, two through the public op).
# Adding a case needs no change here; dropping one does.
MIN_CASES = 14


def test_triton_kernels_interpreted_match_reference():
    env = dict(os.environ, TRITON_INTERPRET='1', OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, str(HERE / 'triton_interpret_cases.py')],
        cwd=HERE, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()
               if line.startswith('{')]
    assert records and 'cases' in records[0], out
    names, results = records[0]['cases'], records[1:]
    assert len(names) == len(set(names)) >= MIN_CASES, names
    # every case ran once, in order, and none is left out by a crash
    assert [r['case'] for r in results] == names, out
    failed = {r['case']: r['errors'] for r in results if not r['ok']}
    assert not failed, failed
    assert all(r['ok'] is True and r['errors'] == [] for r in results)
    assert proc.returncode == 0, out


def test_split_count_heuristic(monkeypatch):
    """Split-L: explicit counts are capped to the tiles; the automatic count
    aims at two programs per multiprocessor, keeps >= 4 tiles per split and
    is 1 off the GPU or when the batch fills the GPU."""
    import types

    import pytest
    import torch

    from mmssm.kernels.selective_scan import _num_splits
    cpu, gpu = torch.device('cpu'), torch.device('cuda', 0)
    assert _num_splits(None, 1, 4, 64, cpu) == 1
    assert _num_splits(5, 1, 4, 3, cpu) == 3
    assert _num_splits(2, 1, 4, 64, cpu) == 2
    with pytest.raises(ValueError, match='split_l must be >= 1'):
        _num_splits(0, 1, 4, 64, cpu)
    monkeypatch.setattr(
        torch.cuda, 'get_device_properties',
        lambda device: types.SimpleNamespace(multi_processor_count=132))
    # batch 2 x 24 blocks = 48 programs, 264 wanted: 6 splits, but 16 tiles
    # allow only 4 of >= 4 tiles.
    assert _num_splits(None, 2, 24, 16, gpu) == 4
    assert _num_splits(None, 2, 24, 1024, gpu) == 6
    assert _num_splits(None, 16, 24, 1024, gpu) == 1  # 384 programs
    assert _num_splits(None, 2, 24, 3, gpu) == 1  # too short to split
