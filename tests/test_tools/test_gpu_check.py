"""tools/analysis_tools/gpu_check.py, run on the CPU with the Triton
interpreter (``--quick --device cpu``).

The script is run in a subprocess that looks like the lent GPU machine: the
modules that machine lacks are made unimportable (``sys.modules[name] =
None``: opencv, rich, pyyaml, Pillow, numba, scipy, matplotlib, timm,
mmdet, mmseg, mmpretrain, mmcv's compiled ops, setuptools) and mmssm's
editable-install finder is removed, so the script must find the repository's
mmssm and map ``kernels/`` to ``mmssm.kernels`` itself.
"""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
from tiny_demo_configs import ROOT, load_tool

SCRIPT = osp.join(ROOT, 'tools', 'analysis_tools', 'gpu_check.py')
ABSENT_ON_GPU_MACHINE = ('cv2', 'rich', 'yaml', 'PIL', 'numba', 'scipy',
                         'matplotlib', 'timm', 'mmdet', 'mmseg', 'mmpretrain',
                         'mmcv._ext', 'pkg_resources', 'setuptools')
WRAPPER = """
import runpy, sys
for name in {absent!r}:
    sys.modules[name] = None
sys.meta_path[:] = [f for f in sys.meta_path
                    if not type(f).__module__.startswith('__editable__')]
sys.argv = [{script!r}] + {args!r}
runpy.run_path({script!r}, run_name='__main__')
"""


def _run(tmp_path, *args, absent=ABSENT_ON_GPU_MACHINE):
    out = str(tmp_path / 'gpu_check.json')
    code = WRAPPER.format(
        absent=absent, script=SCRIPT,
        args=['--quick', '--device', 'cpu', '--out', out, *args])
    env = dict(os.environ, TRITON_INTERPRET='1', OMP_NUM_THREADS='1')
    env.pop('MMSSM_SCAN_IMPL', None)
    proc = subprocess.run([sys.executable, '-c', code], cwd=str(tmp_path),
                          env=env, capture_output=True, text=True,
                          timeout=600)
    with open(out) as f:
        saved = json.load(f)
    return proc, saved


def test_quick_run_checks_every_case(tmp_path):
    tool = load_tool('gpu_check')
    proc, saved = _run(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert saved['status'] == 'passed' and saved['failures'] == []
    meta = saved['meta']
    # the machine's gaps were bridged: placeholders, repository mmssm
    assert meta['stubbed_modules'] == ['cv2', 'rich', 'yaml', 'PIL']
    assert meta['mmssm_path'] == osp.join(ROOT, 'mmssm')
    assert meta['backbones_import_error'] is None
    # everything printed is in the JSON log, in order
    assert proc.stdout.splitlines() == saved['log']

    # (a): every case of the script's list ran, each within its tolerance
    want = tool.correctness_cases(quick=True)
    got = saved['correctness']['cases']
    assert saved['correctness']['n_cases'] == len(want) == len(got) == 48
    assert [c['name'] for c in got] == [c['name'] for c in want]
    assert saved['correctness']['n_passed'] == 48
    assert {c['order'] for c in got} == set(tool.ORDERS)
    assert {(c['dtype'], c['split_l'], c['d_state'], c['groups'])
            for c in got} == {(d, s, n, g) for d in ('fp32', 'bf16')
                              for s in (None, 1)
                              for n, g in ((1, None), (4, 2))}
    for case in got:
        errors = case['errors']
        assert set(errors) == set(tool.RESULT_NAMES), case['name']
        assert case['tol'] == {'fp32': 1e-4, 'bf16': 3e-2}[case['dtype']]
        assert all(0 <= e <= case['tol'] for e in errors.values()), case
        assert case['max_error'] == max(errors.values())
        assert case['passed'] and case['last_state_dtype'] == 'torch.float32'
        if case['dtype'] == 'bf16':
            # bf16 really ran: outputs rounded to 8 bits of mantissa
            assert case['y_dtype'] == 'torch.bfloat16'
            assert case['max_error'] > 1e-4
        else:
            assert case['y_dtype'] == 'torch.float32'

    # (b): both shapes timed, Triton and the reference, GB/s derived
    assert saved['bandwidth']['gb_per_s'] > 0
    assert [r['name'] for r in saved['bench']] == [
        'bench/fp32/(1,8,33,4)', 'bench/bf16/(1,8,33,4)'
    ]
    for row in saved['bench']:
        assert 'error' not in row, row.get('traceback')
        for impl in ('triton', 'ref'):
            assert row[impl]['fwd_ms'] > 0 and row[impl]['fwd_bwd_ms'] > 0
        fwd_bytes = 4 * 8 * 33 + 2 * 4 * 33  # u, delta, z, y + B, C
        itemsize = 4 if row['dtype'] == 'fp32' else 2
        assert row['fwd_bytes'] == itemsize * fwd_bytes
        assert row['triton']['fwd_gb_per_s'] == pytest.approx(
            row['fwd_bytes'] / row['triton']['fwd_ms'] / 1e6)

    # (c): Vim in fp32 and bf16 autocast, DeiT skipped without timm
    rows = saved['models_inference']
    assert [(r['model'], r['dtype']) for r in rows] == [('vim-cls', 'fp32'),
                                                        ('vim-cls', 'bf16')]
    assert all(r['finite'] and r['ms'] > 0 for r in rows)
    assert any(s['name'] == 'models/deit' and 'timm' in s['why']
               for s in saved['skipped'])
    # (d): a training step of each family, every gradient present and finite
    train = saved['models_train']
    assert [r['name'] for r in train] == [
        'train/vim', 'train/groupmamba', 'train/mambaout'
    ]
    for row in train:
        assert 'error' not in row, row.get('traceback')
        assert row['finite'] and row['non_finite_grads'] == []
        assert row['params_without_grad'] == [] and row['n_params'] > 10


def test_injected_error_fails_the_run_and_names_the_case(tmp_path):
    bad = 'bf16/col/G2/N4/L33/split_1'
    proc, saved = _run(tmp_path, '--only', 'col/G2/', '--inject-error', bad,
                       '--skip-bench', '--skip-models')
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f'FAIL {bad}:' in proc.stdout
    assert saved['status'] == 'failed' and saved['failures'] == [bad]
    cases = {c['name']: c for c in saved['correctness']['cases']}
    assert sorted(cases) == sorted(
        f'{d}/col/G2/N4/L33/split_{s}' for d in ('fp32', 'bf16')
        for s in ('auto', 1))
    # the measured error is the injected 5 % of max |y_ref| (bf16 rounding
    # of the perturbed element and the scan's own error are far smaller)
    assert cases[bad]['worst'] == 'y' and not cases[bad]['passed']
    assert cases[bad]['errors']['y'] == pytest.approx(0.05, abs=5e-3)
    assert all(c['passed'] for name, c in cases.items() if name != bad)
    assert 'gpu_check failed' in proc.stdout and bad in saved['log'][-2]


def test_broken_openmmlab_stack_keeps_the_scan_checks(tmp_path):
    """Without ``packaging`` (needed by mmengine) ``import mmssm`` fails: the
    scan cases still run on the bare package, the models fail by name."""
    proc, saved = _run(tmp_path, '--only', 'bidir/G2/', '--skip-bench',
                       absent=ABSENT_ON_GPU_MACHINE + ('packaging', ))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert 'packaging' in saved['meta']['mmssm_import_error']
    assert saved['correctness']['n_passed'] == 4
    assert saved['failures'] == [
        'train/vim', 'train/groupmamba', 'train/mambaout', 'models/vim-cls/64'
    ]
    assert all('mmssm.models.backbones could not be imported' in r['error']
               for r in saved['models_train'] + saved['models_inference'])


def test_case_lists_and_argument_checks(monkeypatch, capsys):
    tool = load_tool('gpu_check')
    full = tool.correctness_cases(quick=False)
    names = [c['name'] for c in full]
    assert len(names) == len(set(names)) == 240
    # every combination the GPU run promises
    combos = {(c['dtype'], c['order'], c['d_state'], c['length'],
               c['split_l']) for c in full}
    assert combos == {(d, o, n, length, s) for d in ('fp32', 'bf16')
                      for o in tool.ORDERS for n in (1, 16)
                      for length in (196, 1024, 16384) for s in (None, 1)}
    assert {c['groups'] for c in full if c['length'] == 16384} == {2}
    assert {c['groups'] for c in full if c['length'] < 16384} == {None, 3}
    for c in full:
        assert c['grid'][0] * c['grid'][1] == c['length']
        assert c['dim'] % 4 == 0 and c['dim'] % (c['groups'] or 1) == 0
    # the default run: every dtype, order, d_state and length, split-L off
    # only at the longest length, one B/C layout per d_state below it
    part = tool.correctness_cases(quick=False, full=False)
    assert len(part) == 96 and {c['name'] for c in part} < set(names)
    assert {(c['dtype'], c['order'], c['d_state'], c['length'])
            for c in part} == {(d, o, n, length) for d in ('fp32', 'bf16')
                               for o in tool.ORDERS for n in (1, 16)
                               for length in (196, 1024, 16384)}
    assert {c['length'] for c in part if c['split_l'] == 1} == {16384}
    assert tool.correctness_cases(True, False) == tool.correctness_cases(
        True, True)
    assert tool.ORDERS['groupmamba4'] == ['row', 'col', 'row_reverse',
                                          'col_reverse']
    assert tool.ORDERS['bidir'] == ['forward', 'reverse']
    assert [s[:4] for s in tool.bench_shapes(False)] == [
        (8, 768, 6085, 16), (1, 768, 6085, 16), (64, 768, 197, 16),
        (8, 1536, 4096, 16)
    ] * 2 + [(2, 384, 65536, 16)]

    # the reference's own visiting orders on a 2 x 3 grid, 4 channels
    idx = tool.visit_index('groupmamba4', 6, 4, (2, 3)).tolist()
    assert idx == [[0, 1, 2, 3, 4, 5], [0, 3, 1, 4, 2, 5],
                   [5, 4, 3, 2, 1, 0], [5, 2, 4, 1, 3, 0]]

    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    bad_args = [
        (['--quick', '--device', 'cpu'], 'set TRITON_INTERPRET=1'),
        (['--device', 'tpu'], "--device must be one of ('cuda', 'cpu')"),
    ]
    for argv, message in bad_args:
        with pytest.raises(SystemExit) as err:
            tool.parse_args(argv)
        assert err.value.code == 2 and message in capsys.readouterr().err
    monkeypatch.setenv('TRITON_INTERPRET', '1')
    bad_args = [
        (['--inject-error', 'nope'], "--inject-error 'nope' is not a case"),
        (['--only', 'L16384'], "--only 'L16384' matches no case"),
    ]
    for argv, message in bad_args:
        with pytest.raises(SystemExit) as err:
            tool.parse_args(['--quick', '--device', 'cpu'] + argv)
        assert err.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.parse_args(['--device', 'cpu'])  # without --quick
    assert 'pass --quick' in capsys.readouterr().err
    args = tool.parse_args(['--quick', '--device', 'cpu', '--only', 'bidir',
                            '--inject-error', 'fp32/bidir/G2/N4/L33/split_1'])
    assert args.only == 'bidir' and args.budget_s == 450
