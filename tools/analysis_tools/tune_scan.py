"""Time the Triton selective scan over launch plans, to choose the defaults.

For each shape of issue #21 and each dtype, times the forward
(``torch.no_grad``) of ``selective_scan`` (delta_softplus, z, D, delta_bias,
forward order) for every forward plan of :func:`fwd_plans`, then the
forward + backward for every backward plan of :func:`bwd_plans`, with
``triton.testing.do_bench`` (median ms). Prints one line per (shape, plan) and
the best plan per shape; writes everything to ``--out`` (JSON).

Meant for a lent GPU machine with only torch and triton (and the pure-Python
mmengine/mmcv-lite wheels): it imports mmssm like
``tools/analysis_tools/gpu_check.py`` does. Usage::

    python tools/analysis_tools/tune_scan.py --out work_dirs/tune.json
"""
import argparse
import json
import os.path as osp
import sys
import time

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)

SHAPES = [(8, 1536, 4096, 16), (1, 768, 6085, 16), (64, 768, 197, 16),
          (8, 768, 6085, 16)]


def fwd_plans():
    """Forward plans: channels per program x warps (and splits at
    batch 1)."""
    plans = []
    for block_d in (4, 8, 16, 32, 64):
        for warps in (1, 2, 4):
            if block_d * 16 // (32 * warps) >= 1:
                plans.append(dict(block_d=block_d, num_warps=warps))
    return plans


def bwd_plans():
    """Backward plans: (channels per program, chunk, warps)."""
    return [dict(bwd_block_d=b, chunk=c, bwd_num_warps=w)
            for b, c, w in ((1, 64, 2), (1, 64, 4), (2, 64, 4), (1, 128, 4),
                            (2, 32, 4), (4, 32, 4), (1, 32, 2), (2, 128, 8))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='work_dirs/tune_scan.json')
    parser.add_argument('--budget-s', type=float, default=240)
    parser.add_argument('--dtypes', nargs='+', default=['fp32', 'bf16'])
    parser.add_argument('--bwd-dtypes', nargs='+', default=['fp32'])
    args = parser.parse_args(argv)
    import gpu_check
    gpu_check.setup_imports()
    import torch
    from triton.testing import do_bench

    from mmssm.ops import resolve_scan_order
    from mmssm.ops.scan_triton import selective_scan_triton
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device('cuda')
    deadline = time.time() + args.budget_s
    dtypes = dict(fp32=torch.float32, bf16=torch.bfloat16)
    rows = []

    def save():
        import os
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(dict(gpu=torch.cuda.get_device_name(), rows=rows), f,
                      indent=1)

    for shape in SHAPES:
        batch, dim, length, n = shape
        for dname in args.dtypes:
            dt = dtypes[dname]
            gen = torch.Generator(device=dev).manual_seed(0)

            def rnd(*s, scale=1.0, dtype=dt):
                x = torch.randn(*s, generator=gen, device=dev) * scale
                return x.to(dtype).requires_grad_()

            t = [rnd(batch, dim, length), rnd(batch, dim, length, scale=0.5),
                 (-torch.rand(dim, n, generator=gen, device=dev) * 2 -
                  0.1).requires_grad_(), rnd(batch, n, length),
                 rnd(batch, n, length), rnd(dim, dtype=torch.float32),
                 rnd(batch, dim, length), rnd(dim, scale=0.3,
                                              dtype=torch.float32)]
            gy = torch.randn(batch, dim, length, device=dev).to(dt)
            perm = resolve_scan_order(None, length, dim, None, dev)

            def run(plan, split_l=None, bwd=False):
                def fwd():
                    with torch.no_grad():
                        selective_scan_triton(*t, True, False, perm,
                                              split_l=split_l, plan=plan)

                def fb():
                    for x in t:
                        x.grad = None
                    selective_scan_triton(*t, True, False, perm,
                                          split_l=split_l,
                                          plan=plan).backward(gy)

                return do_bench(fb if bwd else fwd, warmup=10, rep=40,
                                return_mode='median')

            cands = [(p, None) for p in fwd_plans()]
            if batch == 1:
                cands += [(dict(block_d=32), s) for s in (1, 8, 16, 32, 64)]
            best = None
            for plan, split_l in cands:
                if time.time() > deadline:
                    break
                try:
                    ms = run(plan, split_l)
                except Exception as err:  # report and go on
                    ms, plan = None, dict(plan, error=repr(err)[:200])
                rows.append(dict(shape=shape, dtype=dname, kind='fwd',
                                 plan=plan, split_l=split_l, ms=ms))
                print(f'fwd {dname} {shape} {plan} split={split_l}: '
                      f'{ms if ms is None else round(ms, 4)} ms', flush=True)
                if ms is not None and (best is None or ms < best[0]):
                    best = (ms, plan, split_l)
            print(f'BEST fwd {dname} {shape}: {best}', flush=True)
            if dname in args.bwd_dtypes and best is not None:
                for plan in bwd_plans():
                    if time.time() > deadline:
                        break
                    full = dict(best[1], **plan)
                    try:
                        ms = run(full, best[2], bwd=True)
                    except Exception as err:
                        ms, full = None, dict(full, error=repr(err)[:200])
                    rows.append(dict(shape=shape, dtype=dname, kind='fwd_bwd',
                                     plan=full, split_l=best[2], ms=ms))
                    print(f'fwd+bwd {dname} {shape} {full}: '
                          f'{ms if ms is None else round(ms, 4)} ms',
                          flush=True)
            save()
            del t, gy
            torch.cuda.empty_cache()
    save()


if __name__ == '__main__':
    main()
