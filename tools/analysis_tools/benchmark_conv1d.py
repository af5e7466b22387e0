"""GPU micro-benchmark of the fused causal conv1d + SiLU (Triton) vs torch.

Times :func:`mmssm.ops.conv1d_triton.causal_conv1d_silu` with
``impl='triton'`` (one kernel for both directions, reading the transposed
``in_proj`` output in place; two kernels in the backward) against
``impl='torch'`` (``F.conv1d`` + ``F.silu`` per direction and a
``torch.cat``, in the input's dtype) at Vim's shape: ``x`` is the ``x`` half
of a ``(B, L, 2C)`` ``in_proj`` output, transposed, default
``(B, C, L) = (8, 768, 6085)``, two directions (forward + reverse), kernel
width 4, float32 and bfloat16 (float32 conv parameters for Triton, as under
AMP; the torch path gets them in the input's dtype, as autocast would).

Modes: ``fwd`` (under ``torch.no_grad()``) and ``fwd+bwd`` (forward and the
gradients of ``x``, the weights and the biases). GB/s counts the bytes that
must move at least: ``fwd`` reads ``x`` and writes ``K`` outputs;
``fwd+bwd`` adds reading ``x`` and the ``K`` output gradients and writing
``dx``. Times are CUDA-event means over ``--reps`` calls after 3 warm-up
calls. Also prints the largest difference of the Triton forward from the
float32 torch forward.

Needs CUDA and triton; torch only otherwise (no mmengine, mmssm need not be
installed: the repository's ``mmssm/ops`` and ``kernels/`` are loaded
directly). About 10 s on an H200.

Usage::

    python tools/analysis_tools/benchmark_conv1d.py
    python tools/analysis_tools/benchmark_conv1d.py --shape 8 768 6085 \\
        --dtypes float32 bfloat16 --reps 20 --json conv1d.json
"""
import argparse
import importlib.util
import json
import os
import os.path as osp
import sys
import types

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_conv_module():
    """``mmssm.ops.conv1d_triton`` from the repository, without running
    ``mmssm/__init__.py`` or ``mmssm/ops/__init__.py`` (no mmengine, no
    other backend), ``kernels/`` mapped to ``mmssm.kernels``."""
    for name, path in (('mmssm', osp.join(REPO, 'mmssm')),
                       ('mmssm.ops', osp.join(REPO, 'mmssm', 'ops'))):
        if name not in sys.modules:
            pkg = types.ModuleType(name)
            pkg.__path__ = [path]
            sys.modules[name] = pkg
    if 'mmssm.kernels' not in sys.modules:
        init = osp.join(REPO, 'kernels', '__init__.py')
        spec = importlib.util.spec_from_file_location(
            'mmssm.kernels', init,
            submodule_search_locations=[osp.dirname(init)])
        module = importlib.util.module_from_spec(spec)
        sys.modules['mmssm.kernels'] = module
        spec.loader.exec_module(module)
    import mmssm.ops.conv1d_triton as conv
    return conv


def _timer(device):
    """``time(call, reps) -> ms per call``: CUDA events on a GPU, the wall
    clock on the CPU (the interpreter smoke test)."""
    import time

    import torch

    def cuda_time(call, reps):
        torch.cuda.synchronize()
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            call()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / reps

    def wall_time(call, reps):
        start = time.perf_counter()
        for _ in range(reps):
            call()
        return (time.perf_counter() - start) * 1e3 / reps

    return cuda_time if device == 'cuda' else wall_time


def bench(shape=(8, 768, 6085), dtypes=('float32', 'bfloat16'), width=4,
          directions=2, reps=20, device='cuda', warmup=3):
    """Print and return one row per (dtype, impl, mode), and one per dtype
    with the largest difference from the float32 torch forward."""
    import torch
    conv = load_conv_module()
    fn = conv.causal_conv1d_silu
    batch, dim, length = shape
    gen = torch.Generator(device=device).manual_seed(0)
    revs = [k % 2 == 1 for k in range(directions)]
    timed = _timer(device)
    rows = []
    name = (torch.cuda.get_device_name() if device == 'cuda' else device)
    print(f'{name}  (B, C, L) = {tuple(shape)}, K = {directions}, '
          f'W = {width}', flush=True)

    def randn(*size):
        return torch.randn(*size, generator=gen, device=device)

    for dtype_name in dtypes:
        dtype = getattr(torch, dtype_name)
        xz = randn(batch, length, 2 * dim).to(dtype)
        x = xz[..., :dim].transpose(1, 2)  # the mixer's layout
        weights = [randn(dim, 1, width) * 0.3 for _ in range(directions)]
        biases = [randn(dim) * 0.1 for _ in range(directions)]
        gu = randn(batch, directions * dim, length).to(dtype)
        n = batch * dim * length * x.element_size()
        nbytes = {'fwd': n * (1 + directions),
                  'fwd+bwd': 2 * n * (1 + directions)}
        for impl in ('torch', 'triton'):
            xs = x.detach().requires_grad_()
            pdtype = dtype if impl == 'torch' else torch.float32
            ws = [w.to(pdtype).requires_grad_() for w in weights]
            bs = [b.to(pdtype).requires_grad_() for b in biases]

            def fwd():
                with torch.no_grad():
                    fn(xs, ws, bs, revs, impl=impl)

            def fwd_bwd():
                u = fn(xs, ws, bs, revs, impl=impl)
                torch.autograd.grad(u, [xs] + ws + bs, gu)

            for mode, call in (('fwd', fwd), ('fwd+bwd', fwd_bwd)):
                for _ in range(warmup):
                    call()
                ms = timed(call, reps)
                row = dict(dtype=dtype_name, impl=impl, mode=mode,
                           ms=round(ms, 4),
                           gbs=round(nbytes[mode] / ms / 1e6, 1))
                rows.append(row)
                print(f"{dtype_name:>9} {impl:>6} {mode:>8} {ms:9.4f} ms "
                      f"{row['gbs']:9.1f} GB/s", flush=True)
        with torch.no_grad():
            want = fn(x.float(), weights, biases, revs, impl='torch')
            got = fn(x, weights, biases, revs, impl='triton').float()
        err = (got - want).abs().max().item()
        rows.append(dict(dtype=dtype_name, max_abs_err_vs_fp32_torch=err))
        print(f'{dtype_name:>9} max |triton - torch fp32| = {err:.3e}',
              flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--shape', type=int, nargs=3,
                        default=(8, 768, 6085), metavar=('B', 'C', 'L'))
    parser.add_argument('--dtypes', nargs='+',
                        default=['float32', 'bfloat16'],
                        choices=['float32', 'bfloat16', 'float16'])
    parser.add_argument('--width', type=int, default=4)
    parser.add_argument('--directions', type=int, default=2)
    parser.add_argument('--reps', type=int, default=20)
    parser.add_argument('--json', help='also write the rows to this file')
    parser.add_argument(
        '--device', default='cuda', choices=['cuda', 'cpu'],
        help='cpu only with TRITON_INTERPRET=1 and a tiny --shape (a smoke '
        'test of this script; the times mean nothing)')
    args = parser.parse_args(argv)
    import torch
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('needs a CUDA device')
    if args.device == 'cpu' and os.environ.get('TRITON_INTERPRET') != '1':
        parser.error('--device cpu needs TRITON_INTERPRET=1')
    rows = bench(tuple(args.shape), args.dtypes, args.width, args.directions,
                 args.reps, args.device, warmup=3 if args.device == 'cuda'
                 else 0)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
