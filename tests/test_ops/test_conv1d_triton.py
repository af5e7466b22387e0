"""The fused causal conv1d + SiLU (:mod:`mmssm.ops.conv1d_triton`,
:mod:`mmssm.kernels.conv1d`) and the mixers' fused CUDA layout.

* The Triton kernels run in the Triton interpreter on the CPU
  (``TRITON_INTERPRET=1`` must be set before triton is imported), so this
  file, run as a script, is the list of interpreter cases that
  :func:`test_triton_conv_interpreted_matches_torch` runs in a fresh process:
  forward and every gradient (``x``, weights, biases) against the torch
  reference for one direction (forward or reverse) and two (forward +
  reverse), kernel widths 3 and 4, odd lengths 1, 3, 37, the ``(B, C, L)``
  contiguous input and the mixer's transposed ``(B, L, 2C)`` view, float32
  (1e-5) and bfloat16/float16 (loose, against float32); then the mixers with
  the Triton conv on the fused path against their per-direction path (to
  1e-5, outputs and all gradients), with the check that the forward makes no
  ``torch.cat``/``repeat``/``contiguous`` of a full activation and hands the
  scan the gate unrepeated.
* The kernels are compiled for sm_90 without a GPU (Triton's bundled
  ``ptxas``): the interpreter accepts code the compiler rejects (e.g. a
  reassigned ``tl.constexpr``).
* Dispatch and argument checks, in process.

Speed on a GPU: ``tools/analysis_tools/benchmark_conv1d.py``.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent

# Interpreter cases. Adding one needs no change here; dropping one does.
MIN_CASES = 19


# ----------------------------------------------------------------------
# The interpreter cases (this file run as a script)
# ----------------------------------------------------------------------
def _conv_inputs(batch, dim, length, width, ndir, layout, dtype, bias, seed):
    import torch
    g = torch.Generator().manual_seed(seed)
    if layout == 'blc':  # the mixer's layout: half of in_proj's output
        xz = torch.randn(batch, length, 2 * dim, generator=g)
        x = xz[..., :dim].transpose(1, 2)
    else:
        x = torch.randn(batch, dim, length, generator=g)
    ws = [torch.randn(dim, 1, width, generator=g) * 0.5 for _ in range(ndir)]
    bs = ([torch.randn(dim, generator=g) * 0.5 for _ in range(ndir)]
          if bias else None)
    gu = torch.randn(batch, ndir * dim, length, generator=g)
    return x.to(dtype), ws, bs, gu.to(dtype)


def _run_conv(x, ws, bs, revs, gu, impl):
    """Output and the gradients of x, the weights and the biases."""
    import torch
    from mmssm.ops.conv1d_triton import causal_conv1d_silu
    x = x.detach().requires_grad_()
    ws = [w.detach().requires_grad_() for w in ws]
    bs = None if bs is None else [b.detach().requires_grad_() for b in bs]
    u = causal_conv1d_silu(x, ws, bs, revs, impl=impl)
    leaves = [x] + ws + (bs or [])
    grads = torch.autograd.grad(u, leaves, gu)
    return [u] + list(grads)


def _compare(got, want, names, rtol, atol):
    import torch
    bad = []
    for name, a, b in zip(names, got, want):
        if a.shape != b.shape:
            bad.append(f'{name}: shape {tuple(a.shape)} != {tuple(b.shape)}')
            continue
        try:
            torch.testing.assert_close(a.float(), b.float(), rtol=rtol,
                                       atol=atol)
        except AssertionError as err:
            bad.append(f'{name}: {str(err).splitlines()[0:4]}')
    return bad


def conv_case(length, width, revs, layout='bcl', dtype='float32', bias=True,
              batch=2, dim=5, seed=0):
    """Triton vs the torch reference: float32 at 1e-5; a half type against
    the float32 reference of the same (rounded) inputs, loosely, and the
    output and ``dx`` in the input's dtype."""
    import torch
    dtype = getattr(torch, dtype)
    x, ws, bs, gu = _conv_inputs(batch, dim, length, width, len(revs),
                                 layout, dtype, bias, seed)
    got = _run_conv(x, ws, bs, revs, gu, 'triton')
    want = _run_conv(x.float(), ws, bs, revs, gu.float(), 'torch')
    names = ['u', 'dx'] + [f'dw{k}' for k in range(len(revs))] + (
        [f'db{k}' for k in range(len(revs))] if bias else [])
    tol = (dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else
           dict(rtol=2e-2, atol=2e-2))
    bad = _compare(got, want, names, **tol)
    for name, t in zip(names, got):
        want_dtype = dtype if name in ('u', 'dx') else torch.float32
        if t.dtype != want_dtype:
            bad.append(f'{name} dtype {t.dtype}, want {want_dtype}')
    if got[0].shape != (batch, len(revs) * dim, length) or \
            not got[0].is_contiguous():
        bad.append(f'u {tuple(got[0].shape)} {got[0].stride()}')
    if layout == 'blc' and dim > 1 and got[1].stride(1) != 1:
        bad.append(f'dx not channels-contiguous like x: {got[1].stride()}')
    return bad


def _mixer_run(cls, fused, conv_impl, scan_impl, length, embed_dims=12,
               d_state=4, batch=2, watch=False, **kwargs):
    """Output and the gradients of x and every parameter; with ``watch``,
    also what the fused forward did (see :func:`_watch`)."""
    import torch
    sys.path.insert(0, str(TESTS))
    from tiny_demo_configs import randomize_params
    torch.manual_seed(0)
    m = cls(embed_dims, d_state=d_state, scan_impl=scan_impl, **kwargs)
    randomize_params(m, seed=1, add=True)
    m.fused_path, m.conv_impl = fused, conv_impl
    x = torch.randn(batch, length, embed_dims,
                    generator=torch.Generator().manual_seed(2))
    x.requires_grad_()
    if watch:
        with _watch(batch, m.d_inner, length) as seen:
            y = m(x)
    else:
        y, seen = m(x), None
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(3))
    grads = torch.autograd.grad(y, [x] + list(m.parameters()), gy)
    names = ['y', 'dx'] + [f'd{n}' for n, _ in m.named_parameters()]
    return names, [y] + list(grads), seen, m


class _watch:
    """Record, during a mixer forward but outside the selective scan, every
    ``torch.cat``, ``Tensor.repeat`` and ``Tensor.contiguous`` (that copies)
    with a full activation as input or result, i.e. a ``(batch, ...)``
    tensor with a dimension ``length`` and at least ``batch * d_inner *
    length`` elements, and the arguments the mixer hands the scan."""

    def __init__(self, batch, d_inner, length):
        self.batch, self.length = batch, length
        self.full = batch * d_inner * length
        self.calls, self.scan_args, self.active = [], None, False

    def _is_activation(self, t):
        return (t.dim() >= 3 and t.shape[0] == self.batch
                and self.length in t.shape[1:] and t.numel() >= self.full)

    def _wrap(self, name, fn):
        def wrapped(*args, **kwargs):
            out = fn(*args, **kwargs)
            if self.active:
                import torch
                tensors = [a for a in args if isinstance(a, torch.Tensor)]
                for a in args:
                    if isinstance(a, (list, tuple)):
                        tensors += [t for t in a
                                    if isinstance(t, torch.Tensor)]
                # contiguous() of a contiguous tensor is no copy
                copy = not (name == 'contiguous' and out is args[0])
                if copy and any(map(self._is_activation, tensors + [out])):
                    self.calls.append((name, [tuple(t.shape)
                                              for t in tensors]))
            return out
        return wrapped

    def __enter__(self):
        import torch
        import mmssm.models.layers.mamba as mamba
        self.saved = (torch.cat, torch.Tensor.repeat,
                      torch.Tensor.contiguous, mamba.selective_scan)
        torch.cat = self._wrap('cat', self.saved[0])
        torch.Tensor.repeat = self._wrap('repeat', self.saved[1])
        torch.Tensor.contiguous = self._wrap('contiguous', self.saved[2])
        scan = self.saved[3]

        def watched_scan(u, delta, A, B, C, D=None, z=None, *args, **kw):
            self.scan_args = dict(u=u, delta=delta, B=B, C=C, z=z)
            self.active = False
            try:
                return scan(u, delta, A, B, C, D, z, *args, **kw)
            finally:
                self.active = True

        mamba.selective_scan = watched_scan
        self.active = True
        return self

    def __exit__(self, *exc):
        import torch
        import mmssm.models.layers.mamba as mamba
        self.active = False
        (torch.cat, torch.Tensor.repeat, torch.Tensor.contiguous,
         mamba.selective_scan) = self.saved
        return False


def mixer_case(cls_name, scan_impl='cpu', length=37, **kwargs):
    """The fused path with the Triton conv equals the per-direction path
    (outputs and all gradients, 1e-5); its forward copies no full
    activation outside the scan and gives the scan ``u``/``delta``
    ``(B, K * d_inner, L)`` contiguous and ``z`` ``(B, d_inner, L)`` (a view
    of in_proj's output)."""
    import mmssm.models.layers.mamba as mamba
    cls = getattr(mamba, cls_name)
    names, want, _, _ = _mixer_run(cls, False, None, scan_impl, length,
                                   **kwargs)
    _, got, seen, m = _mixer_run(cls, True, 'triton', scan_impl, length,
                                 watch=True, **kwargs)
    bad = _compare(got, want, names, rtol=1e-5, atol=1e-5)
    if seen.calls:
        bad.append(f'full-size copies in the fused forward: {seen.calls}')
    args, k = seen.scan_args, len(m.directions)
    shape = (2, k * m.d_inner, length)
    for name in ('u', 'delta'):
        t = args[name]
        if tuple(t.shape) != shape or not t.is_contiguous():
            bad.append(f'{name} {tuple(t.shape)} {t.stride()}, want {shape} '
                       'contiguous')
    z = args['z']
    if tuple(z.shape) != (2, m.d_inner, length) or \
            z.stride(2) != 2 * m.d_inner:
        bad.append(f'z {tuple(z.shape)} {z.stride()}: not the unrepeated '
                   'in_proj view')
    if tuple(args['B'].shape) != (2, k, m.d_state, length):
        bad.append(f"B {tuple(args['B'].shape)}")
    return bad


#: (name, function, kwargs)
CASES = [
    ('k1_fwd_w4_L1', conv_case, dict(length=1, width=4, revs=[False])),
    ('k1_fwd_w4_L3', conv_case, dict(length=3, width=4, revs=[False])),
    ('k1_fwd_w4_L37', conv_case, dict(length=37, width=4, revs=[False])),
    ('k1_rev_w3_L37_nobias', conv_case,
     dict(length=37, width=3, revs=[True], bias=False)),
    ('k2_w4_L1_view', conv_case,
     dict(length=1, width=4, revs=[False, True], layout='blc')),
    ('k2_w4_L3_view', conv_case,
     dict(length=3, width=4, revs=[False, True], layout='blc')),
    ('k2_w4_L37_view', conv_case,
     dict(length=37, width=4, revs=[False, True], layout='blc')),
    ('k2_w3_L37_view', conv_case,
     dict(length=37, width=3, revs=[False, True], layout='blc')),
    ('k2_w3_L3', conv_case, dict(length=3, width=3, revs=[False, True])),
    # more channels than one block (32) and more tokens than one tile
    ('k2_w4_L70_C40_view', conv_case,
     dict(length=70, width=4, revs=[False, True], layout='blc', dim=40,
          batch=1)),
    ('k3_w4_L37_mixed', conv_case,
     dict(length=37, width=4, revs=[True, False, True], layout='blc')),
    ('k2_w4_L37_bf16', conv_case,
     dict(length=37, width=4, revs=[False, True], layout='blc',
          dtype='bfloat16')),
    ('k2_w3_L37_fp16', conv_case,
     dict(length=37, width=3, revs=[False, True], dtype='float16')),
    ('mixer_bimamba', mixer_case, dict(cls_name='BiMambaMixer')),
    ('mixer_bimamba_sum_L1', mixer_case,
     dict(cls_name='BiMambaMixer', length=1, divide_out=False)),
    ('mixer_mamba', mixer_case, dict(cls_name='MambaMixer')),
    ('mixer_bimamba_w3', mixer_case,
     dict(cls_name='BiMambaMixer', length=9, d_conv=3)),
    # the whole CUDA path: Triton conv and Triton scan (tiny: slow here)
    ('mixer_bimamba_triton_scan', mixer_case,
     dict(cls_name='BiMambaMixer', scan_impl='triton', length=5,
          embed_dims=4, d_state=2, batch=2)),
    ('mixer_mamba_triton_scan', mixer_case,
     dict(cls_name='MambaMixer', scan_impl='triton', length=5, embed_dims=4,
          d_state=2, batch=2)),
]


def main():
    """Print the case names as one JSON line, then one JSON line per case
    (``case``, ``ok``, ``errors``; an exception counts as a failure); exit 1
    if any failed."""
    import torch
    torch.set_num_threads(1)
    print(json.dumps({'cases': [c[0] for c in CASES]}), flush=True)
    failed = 0
    for name, fn, kwargs in CASES:
        try:
            bad = fn(**kwargs)
        except Exception as exc:  # reported as a failed case
            import traceback
            bad = [f'{type(exc).__name__}: {exc}',
                   traceback.format_exc()[-2000:]]
        failed += bool(bad)
        print(json.dumps({'case': name, 'ok': not bad, 'errors': bad}),
              flush=True)
    return 1 if failed else 0


# ----------------------------------------------------------------------
# The tests
# ----------------------------------------------------------------------
def test_triton_conv_interpreted_matches_torch():
    import pytest
    pytest.importorskip('triton')
    env = dict(os.environ, TRITON_INTERPRET='1', OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, __file__], cwd=HERE, env=env,
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()
               if line.startswith('{')]
    assert records and 'cases' in records[0], out
    names, results = records[0]['cases'], records[1:]
    assert len(names) == len(set(names)) >= MIN_CASES, names
    assert [r['case'] for r in results] == names, out
    failed = {r['case']: r['errors'] for r in results if not r['ok']}
    assert not failed, failed
    assert proc.returncode == 0, out


def _aot_compile(fn, signature, constexprs, num_warps):
    """Compile ``fn`` for sm_90 (no GPU needed: Triton's bundled ptxas)."""
    import triton
    from triton.backends.compiler import GPUTarget
    src = triton.compiler.ASTSource(fn=fn, signature=signature,
                                    constexprs=constexprs)
    return triton.compile(src, target=GPUTarget('cuda', 90, 32),
                          options=dict(num_warps=num_warps))


def test_kernels_compile_for_sm90():
    """Every kernel compiles to a cubin for sm_90 in two specialisations:
    float32, two directions, width 4, bias, channels-contiguous ``x``; and
    bfloat16, one reverse direction, width 3, no bias, generic strides."""
    import pytest
    pytest.importorskip('triton')
    if os.environ.get('TRITON_INTERPRET') == '1':
        pytest.skip('the kernels are interpreted functions here')
    try:
        from triton.backends.compiler import GPUTarget  # noqa: F401
        from triton.compiler import ASTSource  # noqa: F401
    except ImportError:
        pytest.skip('this triton has no ASTSource/GPUTarget')
    from mmssm.kernels import conv1d as kc
    for dt, K, W, revs, bias, sxc in (('fp32', 2, 4, 2, True, 1),
                                       ('bf16', 1, 3, 1, False, None)):
        strides = {}
        if sxc == 1:  # what the launcher's specialisation gives
            strides = dict(sxc=1, sgl=1, sdc=1)
        common = dict(K=K, W=W, REVS=revs)

        def sig(names, **types):
            out = {n: types.get(n, 'i32') for n in names}
            for n in strides:
                if n in out:
                    out[n] = 'constexpr'
            for n in common:
                out[n] = 'constexpr'
            for n in ('HAS_BIAS', 'BLOCK_C', 'BLOCK_L'):
                if n in out:
                    out[n] = 'constexpr'
            return out

        ptr = '*' + dt
        fwd = _aot_compile(
            kc._conv_silu_fwd_kernel,
            sig(kc._conv_silu_fwd_kernel.arg_names, x_ptr=ptr,
                w_ptr='*fp32', b_ptr='*fp32', u_ptr=ptr, sxb='i64'),
            dict(common, HAS_BIAS=bias, BLOCK_C=kc.FWD_BLOCK_C,
                 BLOCK_L=kc.FWD_BLOCK_L,
                 **{n: 1 for n in ('sxc', ) if n in strides}),
            kc.FWD_WARPS)
        g = _aot_compile(
            kc._conv_silu_bwd_g_kernel,
            sig(kc._conv_silu_bwd_g_kernel.arg_names, x_ptr=ptr,
                w_ptr='*fp32', b_ptr='*fp32', gu_ptr=ptr, g_ptr=ptr,
                part_ptr='*fp32', sxb='i64', sgb='i64'),
            dict(common, HAS_BIAS=bias, BLOCK_C=kc.BWD_BLOCK_C,
                 BLOCK_L=kc.BWD_BLOCK_L,
                 **{n: 1 for n in ('sxc', 'sgl') if n in strides}),
            kc.BWD_WARPS)
        dx = _aot_compile(
            kc._conv_bwd_dx_kernel,
            sig(kc._conv_bwd_dx_kernel.arg_names, g_ptr=ptr, w_ptr='*fp32',
                dx_ptr=ptr, sdb='i64'),
            dict(common, BLOCK_C=kc.DX_BLOCK_C, BLOCK_L=kc.DX_BLOCK_L,
                 **{n: 1 for n in ('sdc', ) if n in strides}),
            kc.DX_WARPS)
        for compiled in (fwd, g, dx):
            assert compiled.asm['cubin'], compiled.metadata


def test_benchmark_script_runs_interpreted(tmp_path):
    """tools/analysis_tools/benchmark_conv1d.py (meant for a GPU) runs end to
    end: on the CPU under the interpreter, tiny shape, one rep; without
    mmengine (it loads mmssm/ops and kernels/ directly)."""
    import pytest
    pytest.importorskip('triton')
    script = TESTS.parent / 'tools' / 'analysis_tools' / 'benchmark_conv1d.py'
    out_json = tmp_path / 'rows.json'
    code = ('import runpy, sys\n'
            'sys.modules["mmengine"] = None  # unimportable\n'
            f'sys.argv = ["b", "--device", "cpu", "--shape", "1", "4", "5", '
            f'"--reps", "1", "--json", {str(out_json)!r}]\n'
            f'runpy.run_path({str(script)!r}, run_name="__main__")\n')
    env = dict(os.environ, TRITON_INTERPRET='1', OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-c', code], cwd=tmp_path,
                          env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(out_json.read_text())
    timed = [r for r in rows if 'ms' in r]
    assert {(r['dtype'], r['impl'], r['mode']) for r in timed} == {
        (d, i, m) for d in ('float32', 'bfloat16')
        for i in ('torch', 'triton') for m in ('fwd', 'fwd+bwd')}
    errs = {r['dtype']: r['max_abs_err_vs_fp32_torch'] for r in rows
            if 'max_abs_err_vs_fp32_torch' in r}
    assert errs['float32'] < 1e-5 and errs['bfloat16'] < 3e-2, errs


def test_torch_path_is_the_reference_math():
    """``impl='torch'``: ``silu(causal_conv1d(...))`` per direction, the
    directions concatenated along the channels; a bare tensor and a bool
    mean one direction; 'auto' takes it for CPU tensors."""
    import torch
    import torch.nn.functional as F

    from mmssm.ops.conv1d_triton import causal_conv1d, causal_conv1d_silu
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 11, generator=g)
    w0, w1 = torch.randn(5, 1, 4, generator=g), torch.randn(5, 1, 4,
                                                             generator=g)
    b0 = torch.randn(5, generator=g)
    want = torch.cat([F.silu(causal_conv1d(x, w0, b0)),
                      F.silu(causal_conv1d(x, w1, None, reverse=True))], 1)
    for impl in ('torch', None, 'auto'):
        got = causal_conv1d_silu(x, [w0, w1], [b0, None], [False, True],
                                 impl=impl)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(
        causal_conv1d_silu(x, w1, reverse=True),
        F.silu(causal_conv1d(x, w1, reverse=True)), rtol=0, atol=0)
    # (C, W) weights are accepted too
    torch.testing.assert_close(causal_conv1d_silu(x, w0[:, 0], b0),
                               want[:, :5], rtol=0, atol=0)


def test_argument_errors(monkeypatch):
    import pytest
    import torch

    from mmssm.ops.conv1d_triton import causal_conv1d_silu
    x, w = torch.randn(1, 3, 6), torch.randn(3, 1, 4)
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    with pytest.raises(ValueError, match="impl='triton' needs CUDA"):
        causal_conv1d_silu(x, w, impl='triton')
    with pytest.raises(ValueError, match='`impl` must be one of'):
        causal_conv1d_silu(x, w, impl='cuda')
    with pytest.raises(ValueError, match=r'\(B, C, L\)'):
        causal_conv1d_silu(x[0], w)
    with pytest.raises(ValueError, match=r'\(C, 1, W\) = \(3, 1, 4\)'):
        causal_conv1d_silu(x, [w, torch.randn(4, 1, 4)])
    with pytest.raises(ValueError, match='2 directions but 1 `reverse`'):
        causal_conv1d_silu(x, [w, w], reverse=[False])


if __name__ == '__main__':
    sys.exit(main())
