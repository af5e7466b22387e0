"""Inference time and peak memory of a model across input resolutions.

Usage::

    # a backbone alone, with a comparison model in the same run
    python tools/analysis_tools/benchmark.py --backbone Vim --arch tiny \
        --compare-backbone mmpretrain.VisionTransformer --compare-arch \
        deit-tiny --sizes 224 512 768 1024 1248 --out docs/figures/vim-deit
    # a config's whole model (mode='tensor': no post-processing)
    python tools/analysis_tools/benchmark.py --config CONFIG --sizes 512 1024

Every (model, size) case runs in a fresh subprocess: build the model (random
weights, eval, ``torch.no_grad``), ``--warmup`` untimed forwards, then
``--runs`` timed forwards of a ``(batch, 3, S, S)`` input (``--sizes 800x1333``
gives ``H x W``); the median time is reported (mean and all times are in the
JSON). The models are interleaved size by size (A and B at 224, then A and B
at the next size ...), so a change of the machine's load hits both alike.

Quiet machine: the run reads ``/proc/stat`` before and after and subtracts
its own cases' CPU time: the share of the CPUs that OTHER processes used
during the run is printed and stored (``others_cpu_fraction``); above 5 %
the run is reported as not quiet and its ratios should not be quoted.

Peak memory:

* CPU (Linux), measured in a second process per case (the times come from
  a process with the default allocator): after the warm-up forwards (which
  also compile the numba scan kernels), the process's resident high-water
  mark is reset
  (``/proc/self/clear_refs``) and the current resident size read; after the
  timed forwards the high-water mark (``VmHWM``) is read. The difference is
  the extra resident memory the inference needed at its peak (activations,
  workspaces), in MiB. glibc's ``MALLOC_MMAP_THRESHOLD_`` is fixed at 128 KiB
  in the case's process so that freed tensors go back to the system instead
  of hiding the next forward's peak in a retained heap, and each case has its
  own process. Where the reset is not possible, the ``ru_maxrss`` increase
  over the whole case (warm-up included) is reported instead.
* CUDA: ``torch.cuda.max_memory_allocated`` minus the memory allocated
  before the forwards.

Writes ``OUT.json`` and ``OUT.png`` (time and memory against the input size,
one line per model; matplotlib with the Agg backend).
"""
import argparse
import json
import math
import os
import os.path as osp
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Optional, Tuple, Union

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(osp.dirname(HERE))

MEMORY_METHODS = {
    'cpu': 'VmHWM after the timed forwards minus VmRSS before them (high-'
    'water mark reset after warm-up via /proc/self/clear_refs; '
    'MALLOC_MMAP_THRESHOLD_=131072), in a process of its own (times come '
    'from another process with the default allocator)',
    'cuda': 'torch.cuda.max_memory_allocated minus memory allocated before '
    'the forwards',
}


def _parse_arch(arch: Optional[str]):
    """``--arch`` is a preset name or a JSON dict."""
    if arch is None:
        return None
    arch = arch.strip()
    return json.loads(arch) if arch.startswith('{') else arch


def _build(spec: dict, size: int):
    """Build the model of a case: a backbone or a config's model."""
    for path in (ROOT, HERE):
        if path not in sys.path:
            sys.path.insert(0, path)
    import mmssm  # noqa: F401
    from mmengine.registry import MODELS
    if spec.get('config'):
        from get_flops import _data_samples, _task_of, build_model
        model = build_model(spec['config'])
        task = _task_of(model)
        if task in ('mmdet', 'mmseg', 'mmpretrain'):
            samples = _data_samples(task, *size_hw(size))

            def run(x):
                return model(x, samples, mode='tensor')

            return model, run
        return model, model
    kwargs = dict(spec.get('kwargs') or {})
    kwargs['type'] = spec['backbone']
    registry = MODELS
    if '.' in spec['backbone']:
        # 'mmpretrain.VisionTransformer': build from that package's registry
        import importlib
        scope, name = spec['backbone'].split('.', 1)
        if scope != 'mmssm':
            registry = importlib.import_module(f'{scope}.registry').MODELS
            if hasattr(registry, 'import_from_location'):
                registry.import_from_location()
            kwargs['type'] = name
    if spec.get('arch') is not None:
        kwargs['arch'] = _parse_arch(spec['arch'])
    if spec.get('img_size_kw'):
        h, w = size_hw(size)
        kwargs[spec['img_size_kw']] = h if h == w else (h, w)
    model = registry.build(kwargs)
    if model is None:
        raise RuntimeError(f'could not build {spec["backbone"]!r}')
    return model, model


def _proc_status(key: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` in KiB."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1])
    raise KeyError(key)


def _reset_peak_rss() -> Optional[int]:
    """Reset the resident high-water mark; return the current RSS (KiB)."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return _proc_status('VmRSS')
    except OSError:
        return None


def parse_size(text) -> Union[int, str]:
    """``'224'`` -> 224 (square); ``'800x1333'`` -> ``'800x1333'`` (H x W)."""
    text = str(text).strip().lower()
    parts = text.split('x')
    if len(parts) not in (1, 2) or not all(p.isdigit() and int(p) > 0
                                           for p in parts):
        raise argparse.ArgumentTypeError(
            f'size {text!r}: expected S (square) or HxW, e.g. 224 or 800x1333')
    if len(parts) == 1 or parts[0] == parts[1]:
        return int(parts[0])
    return f'{int(parts[0])}x{int(parts[1])}'


def size_hw(size) -> Tuple[int, int]:
    """``(H, W)`` of a size from :func:`parse_size`."""
    if isinstance(size, int):
        return size, size
    h, w = size.split('x')
    return int(h), int(w)


def run_case(spec: dict, size, batch: int, warmup: int, runs: int,
             device: str) -> dict:
    """Time one model at one size in this process (see module docstring)."""
    import torch
    torch.manual_seed(0)
    model, fn = _build(spec, size)
    model.eval()  # some train() overrides return None: no chaining
    model.to(device)
    x = torch.randn(batch, 3, *size_hw(size), device=device)
    cuda = device.startswith('cuda')
    with torch.no_grad():
        start_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(warmup):
            fn(x)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        base_rss = None if cuda else _reset_peak_rss()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn(x)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        if cuda:
            peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        elif base_rss is not None:
            peak = (_proc_status('VmHWM') - base_rss) / 1024
        else:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            peak = (rss - start_maxrss) / 1024  # KiB on Linux
    return dict(
        size=size,
        time_s=statistics.median(times),
        time_mean_s=statistics.fmean(times),
        times_s=times,
        peak_mem_mib=round(peak, 1),
        params=sum(p.numel() for p in model.parameters()))


def _cpu_busy_seconds() -> Optional[float]:
    """Busy CPU time of the whole machine so far (all CPUs), from
    ``/proc/stat``; None where it cannot be read."""
    try:
        with open('/proc/stat') as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf('SC_CLK_TCK')


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_load(busy0, child0, wall0) -> dict:
    """How much of the machine other processes used since ``busy0``."""
    busy1 = _cpu_busy_seconds()
    wall = time.perf_counter() - wall0
    if busy0 is None or busy1 is None or wall <= 0:
        return dict(others_cpu_fraction=None, quiet=None,
                    loadavg_1min=os.getloadavg()[0])
    others = max(0.0, (busy1 - busy0) - (_children_cpu_seconds() - child0))
    frac = others / (wall * (os.cpu_count() or 1))
    return dict(others_cpu_fraction=round(frac, 4), quiet=frac <= 0.05,
                loadavg_1min=os.getloadavg()[0])


def _subprocess_case(spec, size, args) -> dict:
    """Run a case in two fresh processes: one timed with the default
    allocator (what a user's process does), one for the peak memory with
    ``MALLOC_MMAP_THRESHOLD_`` fixed (see the module docstring). A fixed
    threshold sends every large allocation to ``mmap``, whose page faults
    would otherwise be timed too."""
    rows = []
    for memory in (False, True):
        payload = json.dumps(
            dict(spec=spec, size=size, batch=args.batch, warmup=args.warmup,
                 runs=1 if memory else args.runs, device=args.device))
        env = dict(os.environ)
        if memory:
            env['MALLOC_MMAP_THRESHOLD_'] = '131072'
        else:
            env.pop('MALLOC_MMAP_THRESHOLD_', None)
        if args.threads:
            env['OMP_NUM_THREADS'] = str(args.threads)
        res = subprocess.run(
            [sys.executable, osp.abspath(__file__), '--_case', payload],
            capture_output=True, text=True, env=env)
        lines = [
            line for line in res.stdout.splitlines()
            if line.startswith('{"size"')
        ]
        if res.returncode != 0 or not lines:
            raise RuntimeError(
                f'benchmark case {spec["name"]} at {size} failed:'
                f'\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}')
        rows.append(json.loads(lines[-1]))
        if args.device.startswith('cuda'):
            break  # CUDA memory is read from the allocator: one process
    row = rows[0]
    row['peak_mem_mib'] = rows[-1]['peak_mem_mib']
    return row


def plot(result: dict, path: str) -> None:
    """Time and peak memory against the input size, one line per model."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for model in result['models']:
        # x: the side of the square with as many pixels
        sizes = [math.sqrt(math.prod(size_hw(r['size'])))
                 for r in model['results']]
        axes[0].plot(sizes, [r['time_s'] for r in model['results']], 'o-',
                     label=model['name'])
        axes[1].plot(sizes, [r['peak_mem_mib'] for r in model['results']],
                     'o-', label=model['name'])
    axes[0].set_ylabel('median inference time (s)')
    axes[0].set_yscale('log')
    axes[1].set_ylabel('peak extra memory (MiB)')
    for ax in axes:
        ax.set_xlabel('input size (sqrt(H x W))')
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(f'batch {result["batch"]}, {result["device"]}, '
                 f'threads: {result["threads"]}')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _arch_name(arch: Optional[str]) -> str:
    if arch is None:
        return 'default'
    return 'custom' if arch.strip().startswith('{') else arch


def comparison_table(result: dict) -> str:
    """Markdown table of the models side by side (ratios vs the first)."""
    models = result['models']
    head = ['size'] + [f'{m["name"]} time (s)' for m in models]
    head += [f'{m["name"]} mem (MiB)' for m in models]
    if len(models) == 2:
        head += [f'{models[0]["name"]} speed-up', 'memory saved']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + ' ---: |' * len(head)]
    for i, row in enumerate(models[0]['results']):
        rows = [m['results'][i] for m in models]
        cells = [str(row['size'])] + [f'{r["time_s"]:.3f}' for r in rows]
        cells += [f'{r["peak_mem_mib"]:.1f}' for r in rows]
        if len(models) == 2:
            a, b = rows
            cells.append(f'{b["time_s"] / a["time_s"]:.2f}x')
            saved = (1 - a['peak_mem_mib'] / b['peak_mem_mib']
                     if b['peak_mem_mib'] > 0 else float('nan'))
            cells.append(f'{100 * saved:.1f}%')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def _spec(name, config=None, backbone=None, arch=None, img_size_kw=None,
          kwargs=None):
    return dict(name=name, config=config, backbone=backbone, arch=arch,
                img_size_kw=img_size_kw, kwargs=kwargs)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', help='benchmark this config\'s model')
    parser.add_argument('--backbone', help='benchmark this backbone type')
    parser.add_argument('--arch', help='arch of --backbone (name or JSON)')
    parser.add_argument('--compare-config', help='comparison config')
    parser.add_argument('--compare-backbone', help='comparison backbone type '
                        '(e.g. mmpretrain.VisionTransformer)')
    parser.add_argument('--compare-arch', help='arch of --compare-backbone')
    parser.add_argument(
        '--img-size-kw', default='img_size', help='keyword the backbones '
        'take for their input size ("" for none); Vim and mmpretrain\'s ViT '
        'build their position embedding for it')
    parser.add_argument('--sizes', type=parse_size, nargs='+',
                        default=[224, 512, 768, 1024],
                        help='S (square) or HxW, e.g. 224 800x1333')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--threads', type=int, default=None,
                        help='OMP_NUM_THREADS of the cases')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--out', default='work_dirs/benchmark',
                        help='writes OUT.json and OUT.png')
    parser.add_argument('--_case', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._case is None and (args.config is None) == (args.backbone is
                                                         None):
        parser.error('give either --config or --backbone')
    return args


def main(argv=None):
    args = parse_args(argv)
    if args._case is not None:
        case = json.loads(args._case)
        print(json.dumps(run_case(**case)), flush=True)
        return None
    kw = args.img_size_kw or None
    specs = [
        _spec(osp.splitext(osp.basename(args.config))[0], config=args.config)
        if args.config else _spec(f'{args.backbone}-{_arch_name(args.arch)}',
                                  backbone=args.backbone, arch=args.arch,
                                  img_size_kw=kw)
    ]
    if args.compare_config:
        specs.append(
            _spec(osp.splitext(osp.basename(args.compare_config))[0],
                  config=args.compare_config))
    elif args.compare_backbone:
        specs.append(
            _spec(f'{args.compare_backbone.split(".")[-1]}-'
                  f'{_arch_name(args.compare_arch)}',
                  backbone=args.compare_backbone,
                  arch=args.compare_arch, img_size_kw=kw))
    sizes = sorted(set(args.sizes), key=lambda v: (math.prod(size_hw(v)),
                                                   str(v)))
    import torch
    result = dict(
        device=args.device if args.device != 'cpu' else
        f'cpu ({platform.processor() or platform.machine()}, '
        f'{os.cpu_count()} cores)',
        threads=args.threads or torch.get_num_threads(),
        batch=args.batch,
        warmup=args.warmup,
        runs=args.runs,
        statistic='median',
        memory_method=MEMORY_METHODS['cuda' if args.device.startswith('cuda')
                                     else 'cpu'],
        models=[])
    rows = {spec['name']: [] for spec in specs}
    busy0, child0 = _cpu_busy_seconds(), _children_cpu_seconds()
    wall0 = time.perf_counter()
    result['loadavg_1min_before'] = os.getloadavg()[0]
    for size in sizes:
        for spec in specs:
            row = _subprocess_case(spec, size, args)
            rows[spec['name']].append(row)
            print(f'{spec["name"]:>32s} {str(size):>9s}: '
                  f'{row["time_s"]:8.3f} s {row["peak_mem_mib"]:9.1f} MiB',
                  flush=True)
    result['machine'] = machine_load(busy0, child0, wall0)
    for spec in specs:
        result['models'].append(
            dict(name=spec['name'], spec=spec, results=rows[spec['name']]))
    out_dir = osp.dirname(args.out)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    with open(args.out + '.json', 'w') as f:
        json.dump(result, f, indent=2)
    plot(result, args.out + '.png')
    print(comparison_table(result))
    load = result['machine']
    if load['others_cpu_fraction'] is None:
        print('machine load: unknown (no /proc/stat)')
    else:
        print(f'machine {"quiet" if load["quiet"] else "NOT quiet"}: other '
              f'processes used {100 * load["others_cpu_fraction"]:.1f} % of '
              f'the CPUs during the run (1-min load average before: '
              f'{result["loadavg_1min_before"]:.2f})')
    print(f'wrote {args.out}.json and {args.out}.png')
    return result


if __name__ == '__main__':
    main()
