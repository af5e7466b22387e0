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


# The cases of today (11 of the table, bf16, two through the public op,
# shared gate + strided inputs, the core Function, the default chunk,
# other plans).
# Adding a case needs no change here; dropping one does.
MIN_CASES = 18


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


def test_launch_plan(monkeypatch):
    """The launch plan: explicit split counts are capped to the chunks; the
    automatic count aims at four programs per multiprocessor, keeps >= 2
    chunks per split and is 1 off the GPU or when the batch fills the GPU;
    channel blocks are powers of two that never straddle an order chunk or
    a B/C group."""
    import types

    import pytest
    import torch

    from mmssm.kernels.selective_scan import plan_scan
    cpu, gpu = torch.device('cpu'), torch.device('cuda', 0)

    def plan(batch, dim, length, device, nstate=16, norders=1, groups=1,
             **kw):
        return plan_scan(batch, dim, length, nstate, norders, groups, device,
                         **kw)

    assert plan(1, 768, 6085, cpu)['nsplit'] == 1
    assert plan(1, 8, 13 * 64, cpu, split_l=5)['nsplit'] == 5
    # 5 chunks of 32: at most 5 splits
    assert plan(1, 8, 150, cpu, split_l=9)['nsplit'] == 5
    with pytest.raises(ValueError, match='split_l must be >= 1'):
        plan(1, 8, 64, cpu, split_l=0)
    # 12 channels in 2 orders (6 each) and 3 groups (4 each): blocks of 2
    assert plan(1, 12, 64, cpu, norders=2, groups=3,
                block_d=8)['block_d'] == 2
    assert plan(1, 768, 64, cpu, block_d=24)['block_d'] == 16
    assert plan(1, 768, 64, cpu)['block_d'] == 8  # 128 state values
    # the sequential backward's scratch: chunk x block x states = 4096
    p = plan(1, 768, 64, cpu)
    assert (p['bwd'], p['chunk'], p['bwd_block_d'], p['unroll']) == (
        'seq', 32, 8, 1)
    p = plan(1, 768, 64, cpu, bwd='scan')
    assert (p['chunk'], p['bwd_block_d']) == (32, 4)
    with pytest.raises(ValueError, match="bwd must be one of"):
        plan(1, 8, 64, cpu, bwd='fast')
    with pytest.raises(ValueError, match='unroll must be >= 1'):
        plan(1, 8, 64, cpu, unroll=0)
    monkeypatch.setattr(
        torch.cuda, 'get_device_properties',
        lambda device: types.SimpleNamespace(multi_processor_count=132))
    # batch 1 x 768 / 8 = 96 forward programs, 528 wanted: 6 splits asked,
    # 191 chunks of 32 in cdiv(191, 6) = 32 per split: 6 splits
    p = plan(1, 768, 6085, gpu)
    assert (p['nchunk'], p['nsplit'], p['cps']) == (191, 6, 32)
    assert p['nsplit'] * p['cps'] >= p['nchunk'] > (p['nsplit'] - 1) * p[
        'cps']
    assert plan(1, 768, 200, gpu)['nsplit'] == 3  # 7 chunks: >= 2 each
    assert plan(64, 768, 197, gpu)['nsplit'] == 1  # 6144 programs
    assert plan(1, 768, 60, gpu)['nsplit'] == 1  # two chunks
