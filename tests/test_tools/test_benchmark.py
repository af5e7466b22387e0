"""tools/analysis_tools/benchmark.py on tiny models: JSON fields, sizes in
increasing order, one subprocess per case, memory that grows with the input,
the comparison table and the PNG plot."""
import json

from tiny_demo_configs import load_tool


def test_benchmark_tiny_backbones(tmp_path, capsys):
    bench = load_tool('benchmark')
    out = str(tmp_path / 'bench')
    arch = json.dumps(dict(depths=[1, 1, 1, 1], dims=[16, 24, 32, 48]))
    vim = json.dumps(dict(embed_dims=32, num_layers=2, d_state=4))
    result = bench.main([
        '--backbone', 'MambaOut', '--arch', arch, '--img-size-kw', '',
        '--compare-backbone', 'mmssm.Vim', '--compare-arch', vim,
        '--sizes', '320', '64', '--warmup', '1', '--runs', '2',
        '--threads', '1', '--out', out
    ])
    saved = json.loads(open(out + '.json').read())
    assert saved == json.loads(json.dumps(result))
    for key in ('device', 'threads', 'batch', 'warmup', 'runs', 'statistic',
                'memory_method', 'models'):
        assert key in saved
    assert saved['statistic'] == 'median' and saved['runs'] == 2
    assert [m['name'] for m in saved['models']] == [
        'MambaOut-custom', 'Vim-custom'
    ]
    for model in saved['models']:
        sizes = [r['size'] for r in model['results']]
        assert sizes == [64, 320]  # sorted, increasing
        for r in model['results']:
            assert len(r['times_s']) == 2
            assert r['time_s'] == sorted(r['times_s'])[0] + (
                sorted(r['times_s'])[1] - sorted(r['times_s'])[0]) / 2
            assert r['time_s'] > 0 and r['peak_mem_mib'] >= 0
            assert r['params'] > 0
    # a 320x320 input needs more activation memory than 64x64 (MambaOut's
    # stride-4 stage alone holds 80*80*(16 + 2*42) floats = 2.4 MiB)
    mo = saved['models'][0]['results']
    assert mo[1]['peak_mem_mib'] > mo[0]['peak_mem_mib']
    assert mo[1]['peak_mem_mib'] >= 2.0
    with open(out + '.png', 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    table = bench.comparison_table(saved)
    lines = table.splitlines()
    assert len(lines) == 4 and 'speed-up' in lines[0]
    assert lines[2].startswith('| 64 |') and lines[3].startswith('| 320 |')
    assert table in capsys.readouterr().out


def test_benchmark_needs_a_model():
    bench = load_tool('benchmark')
    import pytest
    with pytest.raises(SystemExit):
        bench.parse_args(['--sizes', '32'])


def test_sizes_parse_rectangles_and_refuse_nonsense():
    import argparse

    import pytest
    bench = load_tool('benchmark')
    assert bench.parse_size('224') == 224
    assert bench.parse_size('64x64') == 64
    assert bench.parse_size('800x1333') == '800x1333'
    assert bench.size_hw('800x1333') == (800, 1333)
    for bad in ('0', 'abc', '12x', '3x4x5', '-4'):
        with pytest.raises(argparse.ArgumentTypeError, match='HxW'):
            bench.parse_size(bad)
    args = bench.parse_args(['--backbone', 'Vim', '--sizes', '64', '32x48'])
    assert args.sizes == [64, '32x48']


def test_rectangular_case_and_machine_load(tmp_path):
    bench = load_tool('benchmark')
    arch = json.dumps(dict(depths=[1, 1, 1, 1], dims=[8, 8, 8, 8]))
    out = str(tmp_path / 'rect')
    result = bench.main([
        '--backbone', 'MambaOut', '--arch', arch, '--img-size-kw', '',
        '--sizes', '48x80', '32', '--runs', '1', '--threads', '1', '--out',
        out
    ])
    # sorted by pixel count: 32x32 (1024 px) before 48x80 (3840 px)
    assert [r['size'] for r in result['models'][0]['results']] == [32, '48x80']
    frac = result['machine']['others_cpu_fraction']
    assert frac is None or 0.0 <= frac <= 1.0
    # the load measurement sees work that is not the benchmark's own cases:
    # this process burning one CPU for 0.6 s is "another process" to it
    import os
    import time
    busy0, child0 = bench._cpu_busy_seconds(), bench._children_cpu_seconds()
    wall0 = time.perf_counter()
    while time.perf_counter() - wall0 < 0.6:
        pass
    load = bench.machine_load(busy0, child0, wall0)
    if load['others_cpu_fraction'] is not None:
        assert load['others_cpu_fraction'] >= 0.4 / (os.cpu_count() or 1)
        assert load['quiet'] is False


# ------------------------------------------------------------ --suite gpu
# what the GPU machine of issue #21 lacks (timm is there, so are its own
# requirements Pillow and PyYAML: timm's Swin imports PIL)
SUITE_ABSENT = ('mmdet', 'mmseg', 'mmpretrain', 'mmcv._ext', 'cv2', 'rich',
                'scipy', 'matplotlib', 'pkg_resources', 'setuptools')
SUITE_WRAPPER = """
import runpy, sys
for name in {absent!r}:
    sys.modules[name] = None
sys.meta_path[:] = [f for f in sys.meta_path
                    if not type(f).__module__.startswith('__editable__')]
sys.argv = [{script!r}] + {args!r}
runpy.run_path({script!r}, run_name='__main__')
"""


def test_gpu_suite_quick_on_cpu(tmp_path):
    """``--suite gpu --quick --device cpu`` in a process where mmdet, mmseg,
    mmpretrain (and what the GPU machine lacks) cannot be imported and
    mmssm's editable install is hidden: every (model, size, dtype) case
    runs, the JSON holds the measured numbers, and the printed tables and
    ratios are the ones computed by hand from them."""
    import os
    import os.path as osp
    import statistics
    import subprocess
    import sys

    import pytest
    from tiny_demo_configs import ROOT
    bench = load_tool('benchmark')
    script = osp.join(ROOT, 'tools', 'analysis_tools', 'benchmark.py')
    out = str(tmp_path / 'suite')
    code = SUITE_WRAPPER.format(
        absent=SUITE_ABSENT, script=script,
        args=['--suite', 'gpu', '--quick', '--device', 'cpu', '--out', out])
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('MMSSM_SCAN_IMPL', None)
    proc = subprocess.run([sys.executable, '-c', code], cwd=str(tmp_path),
                          env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(out + '.json') as f:
        saved = json.load(f)
    meta = saved['meta']
    assert saved['failures'] == [] and saved['skipped'] == []
    assert saved['forbidden_imported'] == []
    assert meta['mmssm_path'] == osp.join(ROOT, 'mmssm')
    assert meta['stubbed_modules'] == ['cv2', 'rich']
    assert meta['allow_tf32'] == dict(matmul=False, cudnn=False)
    assert 'allow_tf32=False' in proc.stdout
    assert (meta['warmup'], meta['runs']) == (1, 2)

    tables = {t['key']: t for t in saved['tables']}
    assert list(tables) == ['vim_vs_deit', 'ssm_vs_swin']
    want = {
        'vim_vs_deit': (('Vim-Ti', 'DeiT-Ti SDPA', 'DeiT-Ti explicit'),
                        [(32, 2), (48, 1)]),
        'ssm_vs_swin': (('GroupMamba-T', 'MambaOut-T', 'Swin-T'),
                        [(64, 2), ('70x101', 1)]),
    }
    for key, (models, sizes) in want.items():
        rows = tables[key]['rows']
        got = [(r['model'], r['size'], r['batch'], r['dtype']) for r in rows]
        assert len(got) == len(set(got)) == 12
        assert set(got) == {(m, s, b, d) for m in models for s, b in sizes
                            for d in ('fp32', 'bf16')}
        by = {(r['model'], r['size'], r['dtype']): r for r in rows}
        for r in rows:
            assert 'error' not in r, r
            assert r['finite'] and len(r['times_ms']) == 2
            assert r['ms'] == pytest.approx(statistics.median(r['times_ms']))
            assert r['images_per_s'] == pytest.approx(
                r['batch'] * 1e3 / r['ms'])
            assert r['params'] > 1e6 and r['peak_mib'] >= 0
            # bf16 autocast really changed the arithmetic
            if r['dtype'] == 'bf16':
                fp32 = by[(r['model'], r['size'], 'fp32')]['out_mean_abs']
                assert r['out_mean_abs'] != fp32
                assert r['out_mean_abs'] == pytest.approx(fp32, rel=0.1)
        # ratios on the subjects' rows, by hand from the measured numbers
        table = tables[key]
        for r in rows:
            if r['model'] not in table['subjects']:
                assert 'vs' not in r
                continue
            assert set(r['vs']) == set(table['refs'])
            for ref in table['refs']:
                o = by[(ref, r['size'], r['dtype'])]
                assert r['vs'][ref]['speed'] == pytest.approx(
                    o['ms'] / r['ms'], rel=1e-12)
                mem = (r['peak_mib'] / o['peak_mib']
                       if o['peak_mib'] > 0 else None)
                assert r['vs'][ref]['memory'] == pytest.approx(mem)
    # the real architectures, the explicit attention really switched on
    deit = [r for r in tables['vim_vs_deit']['rows']
            if r['model'].startswith('DeiT')]
    for r in deit:
        assert r['fused_attn'] == [r['model'].endswith('SDPA')] * 12
        if r['model'].endswith('explicit') and r['dtype'] == 'fp32':
            sdpa = next(o for o in deit if o['model'] == 'DeiT-Ti SDPA'
                        and o['size'] == r['size'] and o['dtype'] == 'fp32')
            assert r['out_mean_abs'] == pytest.approx(sdpa['out_mean_abs'],
                                                      rel=1e-5)
    params = {r['model']: r['params'] for r in saved['tables'][0]['rows']
              + saved['tables'][1]['rows']}
    assert params['DeiT-Ti SDPA'] == params['DeiT-Ti explicit']
    assert 5.4e6 < params['DeiT-Ti SDPA'] < 5.6e6  # DeiT-Ti, no head
    assert 27e6 < params['Swin-T'] < 28e6  # Swin-T, no head
    swin = {r['size']: r['swin_mode'] for r in tables['ssm_vs_swin']['rows']
            if r['model'] == 'Swin-T'}
    assert swin == {64: 'static masks',
                    '70x101': 'dynamic_img_pad to 72x104, masks per forward'}

    # the printed tables are the JSON's, cell by cell
    printed = bench.format_suite_tables(saved)
    assert printed in proc.stdout
    lines = printed.splitlines()
    vim = {(r['model'], r['size'], r['dtype']): r
           for r in tables['vim_vs_deit']['rows']}
    row = vim[('Vim-Ti', 48, 'bf16')]
    expl = vim[('DeiT-Ti explicit', 48, 'bf16')]
    sdpa = vim[('DeiT-Ti SDPA', 48, 'bf16')]
    cells = [c.strip() for c in next(
        line for line in lines
        if line.startswith('| 48 | 1 | bf16 | Vim-Ti |')).split('|')[1:-1]]
    mem = ['-' if o['peak_mib'] == 0 else
           f'{row["peak_mib"] / o["peak_mib"]:.2f}x' for o in (expl, sdpa)]
    assert cells == [
        '48', '1', 'bf16', 'Vim-Ti', f'{row["ms"]:.2f}',
        f'{row["batch"] * 1e3 / row["ms"]:.1f}', f'{row["peak_mib"]:.1f}',
        f'{expl["ms"] / row["ms"]:.2f}x', mem[0],
        f'{sdpa["ms"] / row["ms"]:.2f}x', mem[1]
    ]
    # rows grouped by size, then dtype, models in the table's order
    head = [line.split('|')[1:5] for line in lines[3:15]]
    assert [(s.strip(), d.strip(), m.strip()) for s, _, d, m in head] == [
        (str(s), d, m) for s in (32, 48) for d in ('fp32', 'bf16')
        for m in want['vim_vs_deit'][0]
    ]


def test_deit_explicit_attention_matches_sdpa():
    """The explicit DeiT-Ti has fused_attn False on every block, never calls
    scaled_dot_product_attention, and gives the SDPA model's output."""
    import torch
    import torch.nn.functional as F
    bench = load_tool('benchmark')
    sdpa, info_s = bench.build_suite_model('DeiT-Ti SDPA', 48)
    expl, info_e = bench.build_suite_model('DeiT-Ti explicit', 48)
    assert info_s['fused_attn'] == [True] * 12
    assert info_e['fused_attn'] == [False] * 12
    assert all(blk.attn.fused_attn is False for blk in expl.blocks)
    assert expl.patch_embed.img_size == (48, 48) and expl.num_classes == 0
    for (k, a), (_, b) in zip(sdpa.state_dict().items(),
                              expl.state_dict().items()):
        assert torch.equal(a, b), k  # same seed, same weights
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    calls = []
    real = F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    F.scaled_dot_product_attention = counting
    try:
        with torch.inference_mode():
            y_s = sdpa(x)
            n_sdpa = len(calls)
            y_e = expl(x)
    finally:
        F.scaled_dot_product_attention = real
    assert n_sdpa == 12 and len(calls) == 12  # none in the explicit model
    assert y_s.shape == (2, 192)
    assert torch.allclose(y_s, y_e, atol=1e-5, rtol=0)
    assert not torch.equal(y_s, torch.zeros_like(y_s))


def test_suite_ratios_and_table_from_given_numbers():
    """Ratios and cells from fixed numbers; failed cases and a zero peak
    leave '-' instead of a ratio."""
    bench = load_tool('benchmark')
    table = dict(title='t', subjects=['A'], refs=['B', 'C'], rows=[
        dict(model='A', size=64, batch=4, dtype='fp32', ms=10.0,
             images_per_s=400.0, peak_mib=30.0),
        dict(model='B', size=64, batch=4, dtype='fp32', ms=25.0,
             images_per_s=160.0, peak_mib=120.0),
        dict(model='C', size=64, batch=4, dtype='fp32', ms=12.0,
             images_per_s=333.3, peak_mib=0.0),
        dict(model='A', size=64, batch=4, dtype='bf16', ms=5.0,
             images_per_s=800.0, peak_mib=None),
        dict(model='B', size=64, batch=4, dtype='bf16', error='OOM'),
        dict(model='C', size=64, batch=4, dtype='bf16', ms=4.0,
             images_per_s=1000.0, peak_mib=8.0),
    ])
    bench.suite_ratios(table)
    assert table['rows'][0]['vs'] == dict(B=dict(speed=2.5, memory=0.25),
                                          C=dict(speed=1.2, memory=None))
    assert table['rows'][3]['vs'] == dict(C=dict(speed=0.8, memory=None))
    lines = bench.format_suite_table(table).splitlines()
    assert lines[1] == ('| size | batch | dtype | model | ms / batch | '
                        'images/s | peak MiB | speed vs B | memory vs B | '
                        'speed vs C | memory vs C |')
    assert lines[3] == ('| 64 | 4 | fp32 | A | 10.00 | 400.0 | 30.0 | '
                        '2.50x | 0.25x | 1.20x | - |')
    assert lines[6] == '| 64 | 4 | bf16 | A | 5.00 | 800.0 | - | - | - | ' \
        '0.80x | - |'
    assert lines[7].startswith('| 64 | 4 | bf16 | B | error: OOM |')
    assert len(lines[7].split('|')) == len(lines[1].split('|'))


def test_suite_arguments():
    import pytest
    bench = load_tool('benchmark')
    args = bench.parse_args(['--suite', 'gpu', '--quick', '--device', 'cpu'])
    assert (args.warmup, args.runs) == (1, 2)
    assert args.out == 'work_dirs/benchmark_suite_gpu'
    with pytest.raises(SystemExit):  # the GPU sizes on the CPU
        bench.parse_args(['--suite', 'gpu', '--device', 'cpu'])
    with pytest.raises(SystemExit):
        bench.parse_args(['--suite', 'gpu', '--backbone', 'Vim'])
    with pytest.raises(SystemExit):
        bench.parse_args(['--backbone', 'Vim', '--quick'])
    old = bench.parse_args(['--backbone', 'Vim'])
    assert (old.device, old.warmup, old.runs, old.out) == (
        'cpu', 1, 3, 'work_dirs/benchmark')
    sizes = {t['key']: bench.suite_sizes(t, quick=False)
             for t in bench.SUITE_TABLES}
    assert sizes == {'vim_vs_deit': [(224, 64), (1024, 8), (1248, 8)],
                     'ssm_vs_swin': [(224, 64), ('800x1333', 2)]}
