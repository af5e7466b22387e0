"""Time the Triton selective scan over launch plans, to choose the defaults.

Times ``selective_scan`` (delta_softplus, z, D, delta_bias, forward order)
with ``triton.testing.do_bench`` (median ms): the forward (``torch.no_grad``)
for every forward plan of :func:`fwd_plans` in both input layouts
(``bdl``: contiguous ``(B, D, L)``; ``cl``: channels-last, ``u``/``delta``/
``z`` as transposed ``(B, L, D)`` tensors and ``B``/``C`` as transposed
``(B, L, N)`` ones, what a Mamba layer's projections give), at the first
shape of :data:`RUNS`; then the best few forward plans at the other shapes,
and the forward + backward for every backward plan of :func:`bwd_plans` with
the best forward plan. Prints one line per measurement and the best plan per
shape; writes everything to ``--out`` (JSON). GB/s counts the minimal
traffic (read u, delta, z, B, C; write the output).

Meant for a lent GPU machine with only torch and triton (and the pure-Python
mmengine/mmcv-lite wheels): it imports mmssm like
``tools/analysis_tools/gpu_check.py`` does. Usage::

    python tools/analysis_tools/tune_scan.py --out work_dirs/tune.json
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)

#: (shape (B, D, L, N), dtype, sweep the backward plans)
RUNS = [((8, 1536, 4096, 16), 'fp32', True),
        ((1, 768, 6085, 16), 'fp32', True),
        ((64, 768, 197, 16), 'fp32', False),
        ((8, 1536, 4096, 16), 'bf16', False)]


def fwd_plans():
    """Forward plans of the full sweep: channels per program x unroll (one
    warp)."""
    return [dict(block_d=b, num_warps=1, unroll=u) for b in (8, 16, 32)
            for u in (1, 4, 8)]


def bwd_plans():
    """Backward plans: the sequential kernel (channels, unroll) and the
    associative-scan one (the best of the first sweep)."""
    return ([dict(bwd='seq', bwd_block_d=b, bwd_num_warps=1, unroll=u)
             for b, u in ((8, 4), (16, 4), (16, 1), (32, 4))] +
            [dict(bwd='scan', bwd_block_d=4, chunk=32, bwd_num_warps=4)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='work_dirs/tune_scan.json')
    parser.add_argument('--budget-s', type=float, default=240)
    parser.add_argument('--top', type=int, default=3,
                        help='forward plans carried to the other shapes')
    parser.add_argument('--quick', action='store_true',
                        help='tiny shapes on the CPU under TRITON_INTERPRET=1'
                        ' with one timed call each (checks the script, '
                        'times mean nothing)')
    args = parser.parse_args(argv)
    global RUNS
    if args.quick:
        if os.environ.get('TRITON_INTERPRET') != '1':
            parser.error('--quick needs TRITON_INTERPRET=1')
        RUNS = [((2, 32, 40, 4), 'fp32', True), ((1, 16, 70, 4), 'fp32',
                                                   True),
                ((2, 16, 20, 4), 'bf16', False)]
    import gpu_check
    gpu_check.setup_imports()
    import torch
    from triton.testing import do_bench
    if args.quick:

        def do_bench(fn, **kw):  # noqa: F811  (one timed call)
            t0 = time.perf_counter()
            fn()
            return (time.perf_counter() - t0) * 1e3

    from mmssm.ops import resolve_scan_order
    from mmssm.ops.scan_triton import selective_scan_triton
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device('cpu' if args.quick else 'cuda')
    deadline = time.time() + args.budget_s
    dtypes = dict(fp32=torch.float32, bf16=torch.bfloat16)
    rows, ranked = [], []

    def save():
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(dict(gpu=None if args.quick else
                           torch.cuda.get_device_name(), rows=rows), f,
                      indent=1)

    def inputs(shape, dt, layout):
        batch, dim, length, n = shape
        gen = torch.Generator(device=dev).manual_seed(0)

        def act(*s, scale=1.0):  # (B, C, L), in the layout asked for
            x = torch.randn(s[0], s[2], s[1], generator=gen, device=dev)
            x = (x * scale).to(dt).transpose(1, 2)
            x = x if layout == 'cl' else x.contiguous()
            return x.requires_grad_()

        par = [(-torch.rand(dim, n, generator=gen, device=dev) * 2 - 0.1),
               torch.randn(dim, generator=gen, device=dev),
               torch.randn(dim, generator=gen, device=dev) * 0.3]
        par = [p.requires_grad_() for p in par]
        return [act(batch, dim, length), act(batch, dim, length, scale=0.5),
                par[0], act(batch, n, length), act(batch, n, length), par[1],
                act(batch, dim, length), par[2]]

    def measure(shape, dname, layout, plan, split_l=None, bwd=False):
        batch, dim, length, n = shape
        dt = dtypes[dname]
        t = inputs(shape, dt, layout)
        perm = resolve_scan_order(None, length, dim, None, dev)
        gy = torch.randn(batch, dim, length, device=dev).to(dt)

        def fwd():
            with torch.no_grad():
                selective_scan_triton(*t, True, False, perm, split_l=split_l,
                                      plan=plan)

        def fb():
            for x in t:
                x.grad = None
            selective_scan_triton(*t, True, False, perm, split_l=split_l,
                                  plan=plan).backward(gy)

        try:
            ms = do_bench(fb if bwd else fwd, warmup=10, rep=40,
                          return_mode='median')
            err = None
        except Exception as exc:  # report and go on
            ms, err = None, repr(exc)[:300]
        size = torch.finfo(dt).bits // 8
        gbs = None if ms is None else size * (
            4 * batch * dim * length + 2 * batch * n * length) / ms / 1e6
        row = dict(shape=shape, dtype=dname, layout=layout,
                   kind='fwd_bwd' if bwd else 'fwd', plan=plan,
                   split_l=split_l, ms=ms, fwd_gb_per_s=gbs, error=err)
        rows.append(row)
        print(f"{row['kind']} {dname} {shape} {layout} {plan} "
              f"split={split_l}: "
              + (f'ERROR {err}' if ms is None else
                 f'{ms:.4f} ms' + ('' if bwd else f' {gbs:.0f} GB/s')),
              flush=True)
        del t, gy
        return ms

    for i, (shape, dname, sweep_bwd) in enumerate(RUNS):
        if i == 0:
            cands = [(lay, p, None) for lay in ('bdl', 'cl')
                     for p in fwd_plans()]
        else:
            cands = [c for _, c in ranked[:args.top]]
            if shape[0] == 1:
                lay, p, _ = ranked[0][1]
                cands += [(lay, p, s) for s in (1, 4, 16, 32)]
        results = []
        for lay, plan, split_l in cands:
            if time.time() > deadline:
                print('budget spent', flush=True)
                break
            ms = measure(shape, dname, lay, plan, split_l)
            if ms is not None:
                results.append((ms, (lay, plan, split_l)))
        results.sort(key=lambda r: r[0])
        if i == 0:
            ranked = results
        if results:
            print(f'BEST fwd {dname} {shape}: {results[0]}', flush=True)
        if sweep_bwd and results:
            lay, plan, split_l = results[0][1]
            for bplan in bwd_plans():
                if time.time() > deadline:
                    break
                measure(shape, dname, lay, dict(plan, **bplan), split_l,
                        bwd=True)
        save()
        if not args.quick:
            torch.cuda.empty_cache()
    save()


if __name__ == '__main__':
    main()
