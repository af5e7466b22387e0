"""Benchmark the selective-scan implementations: time and peak memory.

Every available implementation runs forward and forward+backward at
``(B, D) = (--batch, --dim)`` over L in {196, 1024, 4096, 16384} and N in
{1, 16}:

* ``ref``: :func:`mmssm.ops.selective_scan_ref` (a loop over L with autograd),
* ``cpu``: the CPU path (numba engine when numba is installed),
* ``cpu-torch``: the CPU path's pure-torch fallback engine (only with
  ``--impls``; a Python loop over L, minutes at L = 16384),
* ``triton``: the Triton kernels (CUDA only; split-L mode chosen
  automatically), and ``triton-nosplit``: the same with ``split_l=1``, so the
  gain of split-L mode at small batches shows in the same run,
* ``ref-index`` (only with ``--impls``): the same loop written like
  mamba_ssm's ``selective_scan_ref`` (``deltaA[:, :, i]`` indexing, whose
  backward is quadratic in L); capped at ``--index-ref-max-len`` (1024),
  the measured call only (no warm-up),
* ``mamba_ssm``: ``selective_scan_fn`` of mamba_ssm (CUDA) and
  ``mamba_ssm-ref``: its ``selective_scan_ref``, when the package imports.

Ratios are against ``ref`` measured in the same run on the same device. The
reference keeps the ``(B, D, L, N)`` states for autograd; it is capped at
``--ref-max-len`` (default 4096) tokens, longer rows print no ratio.

Method. Each (implementation, L, N, mode) case runs in a fresh Python process
(``--case``): it warms the implementation up on a tiny input (compilation,
kernel loading), builds the inputs, then
* CPU: reads the resident set size (RSS, ``/proc/self/statm``) before the
  measured call and the peak RSS (``getrusage`` ``ru_maxrss``) after it; the
  peak memory reported is the difference, i.e. what the call added on top of
  its inputs (tracemalloc does not see torch's allocations);
* CUDA: ``torch.cuda.max_memory_allocated`` minus the allocation before.
The time is the median of ``--reps`` calls made after ``--warmup`` more calls
(CUDA synchronised): the first calls at a new size are slower (fresh memory is
page-faulted in until the allocator reuses it; expensive in some sandboxes),
the steady state is what training sees. Modes:

* ``fwd``: the inference-only forward, under ``torch.no_grad()``: on the CPU
  path the fused forward (softplus, scan, D and z gate in one pass, no
  checkpoints, no graph; ``MMSSM_CPU_FAST_PATH=0`` turns it off);
* ``fwd-train``: the training forward (inputs require gradients: the
  autograd Function, checkpoints saved), without the backward;
* ``fwd+bwd``: the training forward and the backward of ``ones`` from the
  output.

Usage::

    python tools/analysis_tools/benchmark_scan.py            # full table
    python tools/analysis_tools/benchmark_scan.py --quick    # L 196, 1024
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

LENGTHS = (196, 1024, 4096, 16384)
MODES = ('fwd', 'fwd-train', 'fwd+bwd')
STATES = (1, 16)


def _rss_bytes() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _indexing_ref(u, delta, A, B, C, D, z, delta_bias):
    """The loop with autograd in the style of mamba_ssm's selective_scan_ref.

    Same maths as :func:`mmssm.ops.selective_scan_ref`, but it reads step
    ``i`` as ``deltaA[:, :, i]`` (as mamba_ssm's reference does): the backward
    of every such index fills a full ``(B, D, L, N)`` gradient, so its
    backward costs ``O(B * D * L^2 * N)``. For comparison only.
    """
    import torch
    import torch.nn.functional as F
    delta = F.softplus(delta + delta_bias[:, None])
    delta_a = torch.exp(torch.einsum('bdl,dn->bdln', delta, A))
    delta_b_u = torch.einsum('bdl,bnl,bdl->bdln', delta, B, u)
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for i in range(u.shape[2]):
        h = delta_a[:, :, i] * h + delta_b_u[:, :, i]
        ys.append(torch.einsum('bdn,bn->bd', h, C[:, :, i]))
    y = torch.stack(ys, dim=2) + u * D[:, None]
    return y * F.silu(z)


def _make_fn(impl: str):
    """Return ``fn(u, delta, A, B, C, D, z, delta_bias)`` and its device."""
    import torch
    if impl == 'ref-index':
        return _indexing_ref, 'cpu'
    if impl in ('ref', 'cpu', 'cpu-torch', 'triton', 'triton-nosplit'):
        from mmssm.ops import selective_scan
        if impl == 'cpu-torch':
            os.environ['MMSSM_SCAN_CPU_ENGINE'] = 'torch'
        name = impl.split('-')[0]
        device = 'cuda' if name == 'triton' else 'cpu'
        split_l = 1 if impl == 'triton-nosplit' else None

        def fn(*args):
            return selective_scan(*args, delta_softplus=True, impl=name,
                                  split_l=split_l)

        return fn, device
    from mamba_ssm.ops.selective_scan_interface import (selective_scan_fn,
                                                        selective_scan_ref)
    if impl == 'mamba_ssm':
        return (lambda *a: selective_scan_fn(*a, delta_softplus=True)), 'cuda'
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    return (lambda *a: selective_scan_ref(*a, delta_softplus=True)), device


def _inputs(batch, dim, length, nstate, device):
    import torch
    gen = torch.Generator().manual_seed(0)
    t = [
        torch.randn(batch, dim, length, generator=gen),
        torch.randn(batch, dim, length, generator=gen) * 0.5 - 2,
        -torch.rand(dim, nstate, generator=gen) - 0.1,
        torch.randn(batch, nstate, length, generator=gen),
        torch.randn(batch, nstate, length, generator=gen),
        torch.randn(dim, generator=gen),
        torch.randn(batch, dim, length, generator=gen),
        torch.randn(dim, generator=gen),
    ]
    return [x.to(device).requires_grad_() for x in t]


def run_case(impl, batch, dim, length, nstate, mode, reps, threads=None,
             warmup=2):
    """One measurement in this process; returns a dict."""
    import torch
    if threads:
        torch.set_num_threads(threads)
    fn, device = _make_fn(impl)
    cuda = device == 'cuda'

    def call(args):
        if mode == 'fwd':
            with torch.no_grad():
                fn(*args)
        elif mode == 'fwd-train':
            fn(*args)
        else:
            y = fn(*args)
            y.backward(torch.ones_like(y))
        if cuda:
            torch.cuda.synchronize()

    call(_inputs(1, 8, 64, nstate, device))  # compile / load kernels
    args = _inputs(batch, dim, length, nstate, device)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_bytes()
    start = time.perf_counter()
    call(args)
    first = time.perf_counter() - start
    if cuda:
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = max(_peak_rss_bytes() - base, 0)
    times = []
    for i in range(warmup + reps):
        for x in args:
            x.grad = None
        start = time.perf_counter()
        call(args)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return dict(impl=impl, L=length, N=nstate, mode=mode, device=device,
                time=statistics.median(times) if times else first,
                first=first, peak=peak)


def available_impls():
    import torch
    impls = ['ref', 'cpu']
    if torch.cuda.is_available():
        impls += ['triton', 'triton-nosplit']
    try:
        import mamba_ssm.ops.selective_scan_interface  # noqa: F401
    except Exception:  # noqa: BLE001  (any import failure: not available)
        pass
    else:
        impls.append('mamba_ssm-ref')
        if torch.cuda.is_available():
            impls.append('mamba_ssm')
    return impls


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='L in {196, 1024} only, 2 repetitions')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--dim', type=int, default=768)
    parser.add_argument('--lengths', type=int, nargs='+', default=None)
    parser.add_argument('--states', type=int, nargs='+', default=STATES)
    parser.add_argument('--impls', nargs='+', default=None)
    parser.add_argument('--reps', type=int, default=None)
    parser.add_argument('--warmup', type=int, default=2,
                        help='untimed calls at full size before timing')
    parser.add_argument('--ref-max-len', type=int, default=4096,
                        help='skip the reference (and mamba_ssm-ref) above '
                        'this L: its autograd keeps (B, D, L, N) states')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch (and numba) threads in every case; '
                        'default: torch default. On a shared, loaded machine '
                        'use 1: OpenMP teams then spin instead of working')
    parser.add_argument('--index-ref-max-len', type=int, default=1024)
    parser.add_argument('--json', help='also write the rows to this file')
    parser.add_argument('--case', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(**json.loads(args.case))))
        return
    lengths = args.lengths or ((196, 1024) if args.quick else LENGTHS)
    reps = args.reps or (2 if args.quick else 3)
    impls = args.impls or available_impls()
    rows = []
    for nstate in args.states:
        for length in lengths:
            for mode in MODES:
                for impl in impls:
                    if impl == 'ref-index' and (length >
                                                args.index_ref_max_len):
                        print(f'# skipped {impl} at L={length} '
                              f'(> --index-ref-max-len '
                              f'{args.index_ref_max_len})', flush=True)
                        continue
                    if impl.endswith('ref') and length > args.ref_max_len:
                        print(f'# skipped {impl} at L={length} '
                              f'(> --ref-max-len {args.ref_max_len})',
                              flush=True)
                        continue
                    case = dict(impl=impl, batch=args.batch, dim=args.dim,
                                length=length, nstate=nstate, mode=mode,
                                reps=reps, threads=args.threads,
                                warmup=args.warmup)
                    if impl == 'ref-index':
                        case.update(reps=0, warmup=0)  # the measured call only
                    proc = subprocess.run(
                        [sys.executable, __file__, '--case',
                         json.dumps(case)], capture_output=True, text=True)
                    if proc.returncode != 0:
                        print(f'# {impl} L={length} N={nstate} {mode} '
                              f'failed: {proc.stderr.strip()[-300:]}',
                              flush=True)
                        continue
                    row = json.loads(proc.stdout.strip().splitlines()[-1])
                    rows.append(row)
                    print(f"# {impl:>13} N={nstate:<2} L={length:<5} "
                          f"{mode:<7} {row['time'] * 1e3:10.2f} ms "
                          f"{row['peak'] / 2**20:9.1f} MiB", flush=True)
    print_table(rows, args)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)


def print_table(rows, args):
    ref = {(r['N'], r['L'], r['mode'], r['device']): r
           for r in rows if r['impl'] == 'ref'}
    import torch
    threads = args.threads or torch.get_num_threads()
    print(f'\nselective scan, B={args.batch}, D={args.dim}, float32, '
          f'delta_softplus, D and z, {threads} CPU thread(s); time = median, '
          'peak = memory added by the call; ratios vs ref on the same device')
    print('| impl | N | L | mode | time (ms) | peak (MiB) | speed-up vs ref '
          '| peak / ref peak |')
    print('|---|---|---|---|---|---|---|---|')
    for r in rows:
        base = ref.get((r['N'], r['L'], r['mode'], r['device']))
        speed = f"{base['time'] / r['time']:.1f}x" if base else 'n/a'
        mem = (f"{r['peak'] / base['peak']:.2f}"
               if base and base['peak'] > 0 else 'n/a')
        print(f"| {r['impl']} | {r['N']} | {r['L']} | {r['mode']} | "
              f"{r['time'] * 1e3:.2f} | {r['peak'] / 2**20:.1f} | {speed} | "
              f'{mem} |')


if __name__ == '__main__':
    main()
