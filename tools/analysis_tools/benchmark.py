"""Inference time and peak memory of a model across input resolutions.

Usage::

    # a backbone alone, with a comparison model in the same run
    python tools/analysis_tools/benchmark.py --backbone Vim --arch tiny \
        --compare-backbone mmpretrain.VisionTransformer --compare-arch \
        deit-tiny --sizes 224 512 768 1024 1248 --out docs/figures/vim-deit
    # a config's whole model (mode='tensor': no post-processing)
    python tools/analysis_tools/benchmark.py --config CONFIG --sizes 512 1024
    # the GPU tables of issue #21 in one run (about 1-3 minutes on an H200)
    python tools/analysis_tools/benchmark.py --suite gpu --device cuda \
        --out work_dirs/benchmark_suite_gpu

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

``--suite gpu`` (issue #21): a fixed set of comparisons, all in this process
(no subprocess per case), printed as two markdown tables and written to
``OUT.json`` (no PNG):

1. Vim-Ti (mmssm ``Vim(arch='tiny', img_size=S, out_type='cls_token')``) vs
   DeiT-Ti (timm ``deit_tiny_patch16_224``, ``img_size=S``,
   ``num_classes=0``) with PyTorch's fused attention (SDPA, timm's default,
   ``fused_attn=True`` on every block) and with explicit attention
   (``blk.attn.fused_attn = False`` on every block): 224 at batch 64, 1024
   and 1248 at batch 8.
2. GroupMamba-T and MambaOut-T (mmssm, ``arch='tiny'``, the four stage maps)
   vs Swin-T (timm ``swin_tiny_patch4_window7_224``, ``img_size=(H, W)``,
   ``num_classes=0``): 224 at batch 64, 800x1333 at batch 2 (the per-GPU
   batch of mmdet's 1x/3x schedules). timm 1.0 runs Swin at 800x1333 with
   ``strict_img_size=False`` and ``PatchEmbed(dynamic_img_pad=True)``: the
   input is zero-padded to the patch grid (800x1336) inside the patch
   embedding, as mmdet's Swin pads, and the shifted-window masks are rebuilt
   in every forward; every model gets the same unpadded 800x1333 input.

Each case (model, size, dtype) in fp32 and in bf16 autocast
(``torch.autocast('cuda', torch.bfloat16)``, fp32 weights): one forward
whose outputs are checked finite, ``--warmup - 1`` more untimed forwards
(default 3 in all), then ``--runs`` (default 10) forwards, each timed by a
pair of CUDA events, under ``torch.inference_mode()``; the median ms per
batch, images/s = batch / median, the peak memory
``torch.cuda.max_memory_allocated()`` during the timed forwards minus
``torch.cuda.memory_allocated()`` before them (weights and input excluded,
and in bf16 the weights' bf16 copies that autocast caches from the warm-up
forwards; all forwards of a case run in one autocast context). Ratios,
on the rows of Vim-Ti (vs each DeiT-Ti) and of GroupMamba-T and MambaOut-T
(vs Swin-T) at the same size and dtype: speed vs R = R's ms /
the model's ms (> 1: faster), memory vs R = the model's peak / R's peak
(< 1: less memory). TF32 is switched off for the whole run
(``torch.backends.cuda.matmul.allow_tf32`` and
``torch.backends.cudnn.allow_tf32`` False, printed), so the fp32 rows are
true fp32. The GPU name and the torch, CUDA, triton and timm versions are
printed first. Cases left after ``--budget-s`` (default 300 s) are skipped
and listed. Exit status 1 when a case failed (an error or a non-finite
output; the other cases still run).

The suite needs only torch, triton, timm and the pure-Python mmengine and
mmcv-lite wheels: mmdet, mmseg and mmpretrain are never imported, and mmssm
need not be installed (run from the repository root: the imports are set up
by ``gpu_check.setup_imports``, which maps ``kernels/`` to ``mmssm.kernels``
and stands placeholders in for a missing cv2/rich/yaml/PIL).
``--suite gpu --device cpu --quick`` runs the same code on the CPU with tiny
sizes (Vim/DeiT at 32 and 48, the others at 64 and 70x101; perf_counter
timing and the resident-memory peak): the test suite does that.
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


# ------------------------------------------------------------ --suite gpu
#: ``(size, batch)`` of each suite table; ``--quick`` uses the tiny ones.
SUITE_TABLES = (
    dict(key='vim_vs_deit',
         title='Vim-Ti vs DeiT-Ti (timm, no head): fused (SDPA) and '
         'explicit attention',
         models=('Vim-Ti', 'DeiT-Ti SDPA', 'DeiT-Ti explicit'),
         subjects=('Vim-Ti', ), refs=('DeiT-Ti explicit', 'DeiT-Ti SDPA'),
         sizes=((224, 64), (1024, 8), (1248, 8)),
         quick_sizes=((32, 2), (48, 1))),
    dict(key='ssm_vs_swin',
         title='GroupMamba-T and MambaOut-T vs Swin-T (timm, no head)',
         models=('GroupMamba-T', 'MambaOut-T', 'Swin-T'),
         subjects=('GroupMamba-T', 'MambaOut-T'), refs=('Swin-T', ),
         sizes=((224, 64), ('800x1333', 2)),
         quick_sizes=((64, 2), ('70x101', 1))),
)
SUITE_DTYPES = ('fp32', 'bf16')
#: Task packages the suite must not import (the GPU machine lacks them).
SUITE_FORBIDDEN = ('mmdet', 'mmseg', 'mmpretrain')
SUITE_MEMORY_METHODS = {
    'cuda': 'torch.cuda.max_memory_allocated during the timed forwards '
    'minus torch.cuda.memory_allocated before them (weights and input '
    'excluded)',
    'cpu': 'VmHWM after the timed forwards minus VmRSS before them (high-'
    'water mark reset via /proc/self/clear_refs), in the suite\'s own '
    'process with the default allocator: indicative only',
}
SUITE_NOTES = (
    'ms: median of the timed forwards (CUDA events around each forward on '
    'CUDA, time.perf_counter on the CPU), torch.inference_mode(), eval, '
    'random weights (torch.manual_seed(0)), fp32 weights; bf16 = '
    "torch.autocast(device, torch.bfloat16). images/s = batch / ms. peak: "
    'torch.cuda.max_memory_allocated during the timed forwards minus '
    'torch.cuda.memory_allocated before them (weights and input excluded, '
    'so are the bf16 weight copies autocast caches from the warm-up '
    'forwards; on the CPU the resident high-water mark, see the module '
    'docstring). '
    'speed vs R = R ms / this model ms (> 1: faster than R); memory vs R = '
    'this model peak / R peak (< 1: less memory than R).',
    'Vim-Ti: mmssm Vim(arch="tiny", img_size=S, out_type="cls_token"). '
    'DeiT-Ti: timm deit_tiny_patch16_224(img_size=S, num_classes=0); SDPA: '
    'fused_attn=True on every block (timm default, '
    'F.scaled_dot_product_attention); explicit: blk.attn.fused_attn=False '
    'on every block (q @ k^T, softmax, @ v).',
    'GroupMamba-T / MambaOut-T: mmssm backbones, arch "tiny", the 4 stage '
    'maps (out_indices 0-3). Swin-T: timm swin_tiny_patch4_window7_224 '
    '(num_classes=0: pooled features) with img_size=(H, W); where H or W is '
    'not a multiple of the patch (4), e.g. 800x1333, strict_img_size=False '
    'and PatchEmbed(dynamic_img_pad=True): the input is zero-padded to the '
    'patch grid inside the patch embedding (800x1336, as mmdet\'s Swin '
    'pads) and the shifted-window masks are rebuilt in every forward. All '
    'models get the same unpadded 800x1333 input.',
    '800x1333 runs at batch 2, the per-GPU batch of the mmdet 1x/3x '
    'schedules (2 images per GPU); 224 at batch 64.',
)


def suite_sizes(table: dict, quick: bool):
    """``[(size, batch)]`` of a suite table (sizes as :func:`parse_size`)."""
    return [(parse_size(s), b)
            for s, b in (table['quick_sizes'] if quick else table['sizes'])]


def _set_fused_attn(model, value: bool):
    """``blk.attn.fused_attn = value`` on every block of a timm ViT; refuses
    a model where another module keeps a different ``fused_attn``."""
    for blk in model.blocks:
        blk.attn.fused_attn = value
    left = [name for name, m in model.named_modules()
            if isinstance(getattr(m, 'fused_attn', None), bool)
            and m.fused_attn != value]
    if left:
        raise RuntimeError(f'fused_attn is not {value} in {left}')
    return [blk.attn.fused_attn for blk in model.blocks]


def build_suite_model(name: str, size):
    """``(model, info)`` of a suite model at ``size`` (random weights, seed
    0); ``info`` records what matters for reading the figures."""
    import torch
    torch.manual_seed(0)
    h, w = size_hw(size)
    img_size = h if h == w else (h, w)
    info = {}
    if name == 'Vim-Ti':
        from mmssm.models.backbones import Vim
        model = Vim(arch='tiny', img_size=img_size, out_type='cls_token')
    elif name in ('GroupMamba-T', 'MambaOut-T'):
        from mmssm.models import backbones
        model = getattr(backbones, name[:-2])(arch='tiny')
    elif name.startswith('DeiT-Ti'):
        import timm
        model = timm.create_model('deit_tiny_patch16_224', pretrained=False,
                                  num_classes=0, img_size=img_size)
        info['fused_attn'] = _set_fused_attn(model, name.endswith('SDPA'))
    elif name == 'Swin-T':
        import timm
        kwargs = dict(pretrained=False, num_classes=0, img_size=(h, w))
        if h % 4 or w % 4:
            from functools import partial

            from timm.layers import PatchEmbed
            kwargs.update(strict_img_size=False,
                          embed_layer=partial(PatchEmbed,
                                              dynamic_img_pad=True))
            info['swin_mode'] = (f'dynamic_img_pad to {-(-h // 4) * 4}x'
                                 f'{-(-w // 4) * 4}, masks per forward')
        else:
            info['swin_mode'] = 'static masks'
        model = timm.create_model('swin_tiny_patch4_window7_224', **kwargs)
    else:
        raise ValueError(f'unknown suite model {name!r}')
    return model.eval(), info


def _outputs(out):
    if isinstance(out, (tuple, list)):
        return tuple(out)
    return tuple(out.values()) if isinstance(out, dict) else (out, )


def measure_suite_case(model, size, batch: int, dtype: str, warmup: int,
                       runs: int, device: str) -> dict:
    """Time ``runs`` forwards after ``warmup`` ones; peak memory above what
    was allocated before the timed forwards (see :data:`SUITE_NOTES`)."""
    import contextlib

    import torch
    cuda = device.startswith('cuda')
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, *size_hw(size), generator=gen).to(device)
    autocast = (torch.autocast(torch.device(device).type,
                               dtype=torch.bfloat16) if dtype == 'bf16'
                else contextlib.nullcontext())
    with torch.inference_mode(), autocast:
        outs = _outputs(model(x))
        finite = all(bool(torch.isfinite(o).all()) for o in outs)
        out_dtype = str(outs[0].dtype)
        out_mean_abs = outs[0].float().abs().mean().item()
        del outs
        for _ in range(warmup - 1):
            model(x)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            events = [(torch.cuda.Event(enable_timing=True),
                       torch.cuda.Event(enable_timing=True))
                      for _ in range(runs)]
            for start, end in events:
                start.record()
                model(x)
                end.record()
            torch.cuda.synchronize()
            times = [start.elapsed_time(end) for start, end in events]
            peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        else:
            base_rss = _reset_peak_rss()
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                model(x)
                times.append((time.perf_counter() - t0) * 1e3)
            peak = (None if base_rss is None else
                    max(0.0, (_proc_status('VmHWM') - base_rss) / 1024))
    ms = statistics.median(times)
    return dict(ms=ms, ms_mean=statistics.fmean(times), times_ms=times,
                images_per_s=batch * 1e3 / ms, peak_mib=peak,
                input_mib=x.numel() * x.element_size() / 2**20,
                finite=finite, out_dtype=out_dtype,
                out_mean_abs=out_mean_abs)


def suite_ratios(table: dict) -> None:
    """Fill ``row['vs'][ref] = {'speed', 'memory'}`` on the subject rows of
    a table result (same size and dtype; see :data:`SUITE_NOTES`)."""
    rows = [r for r in table['rows'] if 'error' not in r]
    for row in rows:
        if row['model'] not in table['subjects']:
            continue
        row['vs'] = {}
        for ref in table['refs']:
            other = [r for r in rows if r['model'] == ref
                     and r['size'] == row['size']
                     and r['dtype'] == row['dtype']]
            if not other:
                continue
            o = other[0]
            mem = None
            if (row['peak_mib'] is not None and o['peak_mib'] is not None
                    and o['peak_mib'] > 0):
                mem = row['peak_mib'] / o['peak_mib']
            row['vs'][ref] = dict(speed=o['ms'] / row['ms'], memory=mem)


def _short(ref: str) -> str:
    return ref.split(' ', 1)[1] if ref.startswith('DeiT-Ti ') else ref


def format_suite_table(table: dict) -> str:
    """Markdown table of a suite table result (ratio columns filled on the
    subject models' rows; rows by size, then dtype, then model)."""
    head = ['size', 'batch', 'dtype', 'model', 'ms / batch', 'images/s',
            'peak MiB']
    for ref in table['refs']:
        head += [f'speed vs {_short(ref)}', f'memory vs {_short(ref)}']
    lines = [f'{table["title"]}', '| ' + ' | '.join(head) + ' |',
             '|' + ' --- |' * 4 + ' ---: |' * (len(head) - 4)]
    sizes = list(dict.fromkeys(r['size'] for r in table['rows']))
    models = list(dict.fromkeys(r['model'] for r in table['rows']))
    rows = sorted(table['rows'], key=lambda r: (
        sizes.index(r['size']), SUITE_DTYPES.index(r['dtype']),
        models.index(r['model'])))
    for row in rows:
        cells = [str(row['size']), str(row['batch']), row['dtype'],
                 row['model']]
        if 'error' in row:
            cells += ['error: ' + row['error'][:60]] + ['-'] * (
                len(head) - 5)
        else:
            cells += [f'{row["ms"]:.2f}', f'{row["images_per_s"]:.1f}',
                      '-' if row['peak_mib'] is None else
                      f'{row["peak_mib"]:.1f}']
            for ref in table['refs']:
                ratio = row.get('vs', {}).get(ref)
                for key in ('speed', 'memory'):
                    value = None if ratio is None else ratio[key]
                    cells.append('-' if value is None else f'{value:.2f}x')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def format_suite_tables(result: dict) -> str:
    return '\n\n'.join(format_suite_table(t) for t in result['tables'])


def _suite_imports() -> dict:
    """The repository's mmssm with only torch, triton, timm and the
    pure-Python OpenMMLab wheels: ``gpu_check.setup_imports`` (placeholders
    for cv2/rich/yaml/PIL, ``kernels/`` -> ``mmssm.kernels``)."""
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    from gpu_check import setup_imports
    return setup_imports()


def _versions(device: str) -> dict:
    import torch
    meta = dict(python=platform.python_version(), torch=torch.__version__,
                cuda=torch.version.cuda)
    for name in ('triton', 'timm', 'numpy', 'mmengine'):
        try:
            meta[name] = __import__(name).__version__
        except Exception:  # missing or broken: reported as such
            meta[name] = None
    if device.startswith('cuda'):
        meta['device_name'] = torch.cuda.get_device_name(device)
    else:
        cpu = platform.processor() or platform.machine()
        meta['device_name'] = (f'cpu ({cpu}, {os.cpu_count()} cores, '
                               f'{torch.get_num_threads()} threads)')
    return meta


def run_suite(args) -> dict:
    """``--suite gpu``: the two tables of issue #21 in one run (see the
    module docstring); writes ``OUT.json`` and prints the tables."""
    import torch
    start = time.time()
    setup = _suite_imports()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    import mmssm
    meta = _versions(args.device)
    meta.update(
        suite=args.suite, quick=args.quick, device=args.device,
        warmup=args.warmup, runs=args.runs, statistic='median',
        allow_tf32=dict(matmul=torch.backends.cuda.matmul.allow_tf32,
                        cudnn=torch.backends.cudnn.allow_tf32),
        mmssm_path=osp.dirname(osp.abspath(mmssm.__file__)),
        memory_method=SUITE_MEMORY_METHODS[
            'cuda' if args.device.startswith('cuda') else 'cpu'],
        notes=list(SUITE_NOTES), budget_s=args.budget_s, **setup)
    result = dict(meta=meta, tables=[], failures=[], skipped=[])
    print(f'benchmark --suite {args.suite}: {meta["device_name"]}, torch '
          f'{meta["torch"]} (CUDA {meta["cuda"]}), triton {meta["triton"]}, '
          f'timm {meta["timm"]}, python {meta["python"]}', flush=True)
    print('TF32 off for the fp32 rows: torch.backends.cuda.matmul.'
          f'allow_tf32={torch.backends.cuda.matmul.allow_tf32}, '
          f'torch.backends.cudnn.allow_tf32='
          f'{torch.backends.cudnn.allow_tf32}', flush=True)
    if setup['stubbed_modules']:
        print('placeholders for the missing (unused) modules: '
              + ', '.join(setup['stubbed_modules']), flush=True)
    print(f'warm-up {args.warmup}, timed {args.runs} (median); '
          f'mmssm from {meta["mmssm_path"]}', flush=True)
    cuda = args.device.startswith('cuda')
    for spec in SUITE_TABLES:
        table = dict(key=spec['key'], title=spec['title'],
                     subjects=list(spec['subjects']),
                     refs=list(spec['refs']), rows=[])
        result['tables'].append(table)
        for size, batch in suite_sizes(spec, args.quick):
            for name in spec['models']:
                if time.time() - start > args.budget_s:
                    label = f'{name}/{size}'
                    result['skipped'].append(label)
                    print(f'SKIP {label}: --budget-s {args.budget_s:g} '
                          'spent', flush=True)
                    continue
                model = None
                try:
                    model, info = build_suite_model(name, size)
                    model.to(args.device)
                    params = sum(p.numel() for p in model.parameters())
                    weights = sum(p.numel() * p.element_size()
                                  for p in model.parameters()) / 2**20
                except Exception as err:
                    info, params, weights = dict(error=repr(err)), 0, 0.0
                for dtype in SUITE_DTYPES:
                    row = dict(model=name, size=size, batch=batch,
                               dtype=dtype, params=params,
                               weights_mib=weights, **info)
                    try:
                        if 'error' in info:
                            raise RuntimeError(info['error'])
                        row.update(measure_suite_case(
                            model, size, batch, dtype, args.warmup,
                            args.runs, args.device))
                        peak = row['peak_mib']
                        print(f'{name:>16s} {str(size):>9s} b{batch:<3d} '
                              f'{dtype}: {row["ms"]:9.2f} ms '
                              f'{row["images_per_s"]:9.1f} img/s, peak '
                              + ('-' if peak is None else f'{peak:.1f} MiB'),
                              flush=True)
                        if not row['finite']:
                            result['failures'].append(
                                f'{name}/{size}/{dtype}: non-finite output')
                    except Exception as err:
                        row['error'] = repr(err)
                        result['failures'].append(
                            f'{name}/{size}/{dtype}: {err!r}')
                        print(f'FAIL {name}/{size}/{dtype}: {err!r}',
                              flush=True)
                    table['rows'].append(row)
                del model
                if cuda:
                    torch.cuda.empty_cache()
        suite_ratios(table)
    result['forbidden_imported'] = [m for m in SUITE_FORBIDDEN
                                    if sys.modules.get(m) is not None]
    meta['elapsed_s'] = time.time() - start
    out_dir = osp.dirname(args.out)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    with open(args.out + '.json', 'w') as f:
        json.dump(result, f, indent=1)
    print()
    print(format_suite_tables(result))
    print()
    print(SUITE_NOTES[0])
    print(f'suite {"FAILED" if result["failures"] else "done"} in '
          f'{meta["elapsed_s"]:.1f} s'
          + (f'; {len(result["failures"])} failures' if result['failures']
             else '') + (f'; {len(result["skipped"])} cases skipped'
                         if result['skipped'] else '')
          + f'; wrote {args.out}.json', flush=True)
    return result


def _spec(name, config=None, backbone=None, arch=None, img_size_kw=None,
          kwargs=None):
    return dict(name=name, config=config, backbone=backbone, arch=arch,
                img_size_kw=img_size_kw, kwargs=kwargs)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--suite', choices=['gpu'], help='a fixed set of '
                        'comparisons instead of --config/--backbone: "gpu" '
                        'prints the two tables of issue #21 (see the module '
                        'docstring)')
    parser.add_argument('--quick', action='store_true', help='--suite with '
                        'tiny sizes and batches (the CPU test)')
    parser.add_argument('--budget-s', type=float, default=300.0,
                        help='--suite: skip the cases left after this many '
                        'seconds (default 300)')
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
    parser.add_argument('--warmup', type=int, default=None,
                        help='untimed forwards (default 1; --suite: 3, '
                        '--quick 1)')
    parser.add_argument('--runs', type=int, default=None,
                        help='timed forwards (default 3; --suite: 10, '
                        '--quick 2)')
    parser.add_argument('--threads', type=int, default=None,
                        help='OMP_NUM_THREADS of the cases')
    parser.add_argument('--device', default=None,
                        help='cpu (default) or cuda (default of --suite)')
    parser.add_argument('--out', default=None,
                        help='writes OUT.json and OUT.png (--suite: OUT.json '
                        'only); default work_dirs/benchmark, --suite '
                        'work_dirs/benchmark_suite_SUITE')
    parser.add_argument('--_case', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.suite:
        if args.config or args.backbone:
            parser.error('--suite runs its own models: no --config or '
                         '--backbone')
        args.device = args.device or 'cuda'
        if not args.device.startswith('cuda') and not args.quick:
            parser.error(f'--suite {args.suite} on {args.device!r} would run '
                         'the GPU sizes on the CPU: use --device cuda, or '
                         'add --quick (tiny sizes)')
        quick = args.quick
        args.warmup = args.warmup or (1 if quick else 3)
        args.runs = args.runs or (2 if quick else 10)
        args.out = args.out or f'work_dirs/benchmark_suite_{args.suite}'
        return args
    if args.quick:
        parser.error('--quick goes with --suite')
    args.device = args.device or 'cpu'
    args.warmup = 1 if args.warmup is None else args.warmup
    args.runs = args.runs or 3
    args.out = args.out or 'work_dirs/benchmark'
    if args._case is None and (args.config is None) == (args.backbone is
                                                         None):
        parser.error('give either --config, --backbone or --suite')
    return args


def main(argv=None):
    args = parse_args(argv)
    if args._case is not None:
        case = json.loads(args._case)
        print(json.dumps(run_case(**case)), flush=True)
        return None
    if args.suite:
        return run_suite(args)
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
    _result = main()
    sys.exit(1 if _result and _result.get('failures') else 0)
