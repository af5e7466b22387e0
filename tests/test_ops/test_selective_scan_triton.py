"""The Triton selective-scan kernels, run by the Triton interpreter on the CPU.

``TRITON_INTERPRET=1`` must be set before triton is imported, so the cases of
``triton_interpret_cases.py`` run in a fresh interpreter process. The kernels'
speed on a GPU is not checked here (see tools/analysis_tools/benchmark_scan.py).
"""
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_triton_kernels_interpreted_match_reference():
    env = dict(os.environ, TRITON_INTERPRET='1', OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, str(HERE / 'triton_interpret_cases.py')],
        cwd=HERE, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert '9 cases passed, 0 failed' in proc.stdout, out
