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
