"""One-shot GPU check of mmssm: scan correctness, scan speed, model speed.

Written to run once, in under 8 minutes, on a lent CUDA machine that has only
torch, triton, numpy, packaging (and optionally timm) plus the pure-Python
wheels mmengine, mmcv-lite, addict, termcolor, yapf and platformdirs; mmssm
need not be installed (the repository's copy is used, ``kernels/`` mapped to
``mmssm.kernels``). Sections (run in the order a, b, d, c):

(a) correctness: ``selective_scan(..., impl='triton')`` forward output, last
    state and the gradients of u, delta, A, B, C, D, z and delta_bias against
    a float64 reference, for every case of :func:`correctness_cases`
    (dtype x order x B/C layout x d_state x L x split_l). The reference is
    :func:`mmssm.ops.selective_scan_ref` in its *forward* order on float64
    copies of the inputs that this script gathers into each channel's visiting
    order itself (its own permutations, built from the documented meaning of
    the order names) and scatters back, so the op's order handling is checked
    against an independent construction. The inputs are rounded to bfloat16
    values once, so one reference serves the float32 and the bfloat16 runs of
    a case. Error = max |got - ref| / max |ref| per tensor; tolerance 1e-4
    (float32) and 3e-2 (bfloat16 u/delta/z/B/C with float32 A/D/delta_bias,
    the AMP layout). TF32 is switched off first.
(b) speed of the scan: Triton forward and forward+backward (``do_bench``
    median on CUDA) at the shapes of :func:`bench_shapes`, with GB/s of the
    minimal traffic against the device-to-device copy bandwidth measured in
    the same run; the reference where its loop is short enough (L <= 1024).
(c) Vim-Ti vs DeiT-Ti (timm, fused and explicit attention) inference:
    median ms per batch and peak memory, fp32 and bf16 autocast.
(d) one bf16-autocast training step of Vim-Ti, GroupMamba-T and MambaOut-T
    at 512x512, batch 2: time, peak memory, all gradients finite. It runs
    before (c): an order resolved first under ``torch.inference_mode()`` is
    cached by mmssm.ops as an inference tensor, and a later training call
    with the same shapes then fails ("Inference tensors cannot be saved for
    backward"); running (c) first would turn that into a train/vim failure.

Everything printed also goes to the JSON file ``--out`` (rewritten after
every section and every 20 correctness cases, so a run cut short keeps what
it measured). Exit status: 0 when everything passed, 1 when a correctness
case, a model check or a section item failed, 2 on a usage error.

On the CPU (``--device cpu --quick`` with ``TRITON_INTERPRET=1``) the Triton
kernels run in the Triton interpreter on tiny shapes: that is how the test
suite runs this script; timings there mean nothing.

Usage on a GPU machine (from the repository root)::

    python tools/analysis_tools/gpu_check.py                  # everything
    python tools/analysis_tools/gpu_check.py --skip-bench --skip-models
    python tools/analysis_tools/gpu_check.py --only L16384    # a subset

Imports: when ``cv2``, ``rich``, ``yaml`` or ``PIL`` is not installed (mmcv,
mmengine and mmssm.datasets import them at import time, for image I/O,
pretty printing and config files this script never uses), placeholder modules
stand in for them while mmssm is imported (and only then); any use of a
placeholder raises. The JSON lists them under ``meta.stubbed_modules``. When
``import mmssm`` still fails (e.g. mmengine without ``packaging``), the scan
sections run on ``mmssm.ops`` imported without the package ``__init__`` and
the model sections fail naming the import error. ``import
mmssm.models.backbones`` needs neither mmdet, mmseg nor mmpretrain.
"""
import argparse
import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import math
import os
import os.path as osp
import platform
import statistics
import sys
import time
import traceback
import types
import zlib

import torch

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))

FP32_TOL = 1e-4
BF16_TOL = 3e-2
TOLS = {'fp32': FP32_TOL, 'bf16': BF16_TOL}
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16}
#: Order names of the cases -> the ``order`` argument of selective_scan.
ORDERS = {
    'forward': 'forward',
    'reverse': 'reverse',
    'col': 'col',
    'col_reverse': 'col_reverse',
    'groupmamba4': ['row', 'col', 'row_reverse', 'col_reverse'],
    'bidir': ['forward', 'reverse'],
}
#: The tensors compared in every correctness case.
RESULT_NAMES = ('y', 'last_state', 'du', 'ddelta', 'dA', 'dB', 'dC', 'dD',
                'dz', 'ddelta_bias')
INPUT_NAMES = ('u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias')
#: Inputs that stay float32 in the bf16 cases (parameters under AMP).
PARAM_NAMES = ('A', 'D', 'delta_bias')
#: ``--inject-error`` adds this fraction of max |y_ref| to one element of y.
INJECT_AMOUNT = 0.05
#: The reference is timed only up to this length (a Python loop over L).
REF_BENCH_MAX_LEN = 1024
#: Missing modules replaced by placeholders (imported, never used here).
STUBBABLE = ('cv2', 'rich', 'yaml', 'PIL')


# --------------------------------------------------------------- the cases
def correctness_cases(quick: bool, full: bool = True):
    """The correctness cases, in run order (cases sharing a reference are
    adjacent). Each is a dict with its ``name``.

    Default run (``full=False``, what fits the 8 minutes: each new
    specialisation of the kernels compiles for seconds): the full list below
    less the split-off runs (``split_l=1``) of L 196/1024 and, at those
    lengths, only d_state 1 with shared B/C and d_state 16 with grouped
    B/C; every dtype, order, d_state and length is still covered.

    Full: dtype {fp32, bf16} x order {forward, reverse, col, col_reverse,
    groupmamba4 (['row', 'col', 'row_reverse', 'col_reverse']), bidir
    (['forward', 'reverse'])} x d_state {1, 16} x split_l {None (auto), 1}
    x (L, B/C layout): L 196 (grid 14x14) and 1024 (grid 16x64) at batch 2,
    48 channels, B/C shared (B, N, L) and grouped (B, 3, N, L) (the 16
    channels of a group straddle the 12 of an order chunk); L 16384 (grid
    64x256) at batch 2, 16 channels, grouped (B, 2, N, L) only.

    Quick (CPU, interpreter): L 33 (grid 3x11), batch 1, 8 channels,
    d_state 1 with shared B/C and d_state 4 with (B, 2, N, L).
    """
    if quick:
        full = True  # 48 tiny cases: all of them
        geoms = [dict(length=33, grid=(3, 11), batch=1, dim=8,
                      layouts=((1, None), (4, 2)))]
    else:
        geoms = []
        for length, grid in ((196, (14, 14)), (1024, (16, 64))):
            geoms.append(dict(length=length, grid=grid, batch=2, dim=48,
                              layouts=[(n, g) for n in (1, 16)
                                       for g in (None, 3)
                                       if full or (n == 1) == (g is None)]))
        geoms.append(dict(length=16384, grid=(64, 256), batch=2, dim=16,
                          layouts=((1, 2), (16, 2))))
    cases = []
    for geom in geoms:
        for d_state, groups in geom['layouts']:
            layout = 'shared' if groups is None else f'G{groups}'
            for order in ORDERS:
                ref_key = f"{order}/{layout}/N{d_state}/L{geom['length']}"
                for dtype in DTYPES:
                    for split_l in ((None, 1) if full or geom['length'] > 1024
                                    else (None, )):
                        split = 'auto' if split_l is None else split_l
                        cases.append(dict(
                            name=f'{dtype}/{ref_key}/split_{split}',
                            ref_key=ref_key, dtype=dtype, order=order,
                            groups=groups, d_state=d_state,
                            length=geom['length'], grid=geom['grid'],
                            batch=geom['batch'], dim=geom['dim'],
                            split_l=split_l, tol=TOLS[dtype]))
    return cases


def bench_shapes(quick: bool):
    """(batch, channels, L, d_state, dtype) of the scan benchmark."""
    if quick:
        return [(1, 8, 33, 4, 'fp32'), (1, 8, 33, 4, 'bf16')]
    shapes = [(8, 768, 6085, 16), (1, 768, 6085, 16), (64, 768, 197, 16),
              (8, 1536, 4096, 16)]
    return ([s + ('fp32', ) for s in shapes] +
            [s + ('bf16', ) for s in shapes] + [(2, 384, 65536, 16, 'fp32')])


def model_sizes(quick: bool):
    """(image size, batch) of the Vim-Ti vs DeiT-Ti inference comparison."""
    return [(64, 2)] if quick else [(224, 64), (512, 8), (1024, 8), (1248, 8)]


# ------------------------------------------------------------------ output
class Report:
    """Prints and records: every printed line goes to ``log`` in the JSON."""

    def __init__(self, path: str):
        self.path = path
        self.data = dict(meta={}, correctness={}, bandwidth=None, bench=[],
                         models_inference=[], models_train=[], failures=[],
                         skipped=[], log=[])

    def say(self, msg: str = '') -> None:
        print(msg, flush=True)
        self.data['log'].append(msg)

    def fail(self, name: str, why: str) -> None:
        self.data['failures'].append(name)
        self.say(f'FAIL {name}: {why}')

    def skip(self, name: str, why: str) -> None:
        self.data['skipped'].append(dict(name=name, why=why))
        self.say(f'SKIP {name}: {why}')

    def save(self) -> None:
        folder = osp.dirname(osp.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        tmp = self.path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(self.data, f, indent=1, default=str)
        os.replace(tmp, self.path)


# ------------------------------------------------------- environment setup
class _PlaceholderMeta(type):

    def __getattr__(cls, name):
        if name.startswith('__'):
            raise AttributeError(name)
        return _placeholder(f'{cls.__qualname__}.{name}')


def _placeholder(qualname: str):
    """A class standing for any attribute of a stubbed module; instantiating
    it raises."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError(
            f'{qualname} is a placeholder: its module is not installed '
            '(stubbed by tools/analysis_tools/gpu_check.py)')

    module, _, name = qualname.rpartition('.')
    return _PlaceholderMeta(name, (), dict(__init__=__init__,
                                           __qualname__=qualname,
                                           __module__=module))


class _StubModule(types.ModuleType):

    def __getattr__(self, name):
        if name.startswith('__'):
            raise AttributeError(name)
        value = _placeholder(f'{self.__name__}.{name}')
        setattr(self, name, value)
        return value


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves a placeholder package for the stubbed roots and their
    submodules (``rich.console``...)."""

    def __init__(self, roots):
        self.roots = frozenset(roots)

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition('.')[0] not in self.roots:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):
        return _StubModule(spec.name)

    def exec_module(self, module):
        pass


class _KernelsFinder(importlib.abc.MetaPathFinder):
    """``mmssm.kernels`` -> ``<repo>/kernels`` when mmssm is not installed
    (the last finder: an installed mapping wins)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != 'mmssm.kernels':
            return None
        init = osp.join(REPO, 'kernels', '__init__.py')
        return importlib.util.spec_from_file_location(
            fullname, init, submodule_search_locations=[osp.dirname(init)])


def _missing(name: str) -> bool:
    if name in sys.modules:
        return sys.modules[name] is None
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):
        return True


#: What :func:`setup_imports` could not import (the model sections say so).
_IMPORT_ERRORS = {}


def setup_imports() -> dict:
    """Import the repository's mmssm (ops and backbones) with only torch
    (+ triton) and the pure-Python OpenMMLab wheels; return what was done.

    Missing :data:`STUBBABLE` modules are served as placeholders only while
    mmssm is imported; afterwards they are unimportable again, so that other
    packages' optional imports (``try: import yaml``) still see them missing.
    """
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    sys.meta_path.append(_KernelsFinder())
    stubbed = [name for name in STUBBABLE if _missing(name)]
    blocked = [name for name in stubbed if name in sys.modules]
    finder = _StubFinder(stubbed)
    if stubbed:
        for name in stubbed:
            sys.modules.pop(name, None)
        sys.meta_path.insert(0, finder)
    backbones_error = mmssm_error = None
    try:
        try:
            import mmssm  # noqa: F401
        except ImportError as err:
            # e.g. mmengine without one of its own dependencies: keep the
            # scan sections alive with a bare package (mmssm.ops needs torch
            # only); the model sections will fail with this error.
            mmssm_error = backbones_error = repr(err)
            _bare_mmssm_package()
        import mmssm.ops  # noqa: F401
        if backbones_error is None:
            try:
                import mmssm.models.backbones  # noqa: F401
            except Exception as err:  # reported by the model sections
                backbones_error = repr(err)
    finally:
        if stubbed:
            sys.meta_path.remove(finder)
            for name in list(sys.modules):
                if isinstance(sys.modules[name], _StubModule):
                    del sys.modules[name]
            for name in blocked:
                sys.modules[name] = None
    modules = {}
    for name in ('triton', 'mmengine', 'mmcv', 'timm', 'numba', 'numpy'):
        modules[name] = None if _missing(name) else 'installed'
    _IMPORT_ERRORS['backbones'] = backbones_error
    return dict(stubbed_modules=stubbed, optional_modules=modules,
                mmssm_import_error=mmssm_error,
                backbones_import_error=backbones_error)


def _bare_mmssm_package() -> None:
    """``mmssm`` as a namespace without its ``__init__`` (which imports
    mmengine), so that ``mmssm.ops`` and ``mmssm.kernels`` still import."""
    for name in [m for m in sys.modules
                 if m == 'mmssm' or m.startswith('mmssm.')]:
        del sys.modules[name]
    pkg = types.ModuleType('mmssm')
    pkg.__path__ = [osp.join(REPO, 'mmssm')]
    pkg.__file__ = osp.join(REPO, 'mmssm', '__init__.py')
    sys.modules['mmssm'] = pkg
    from mmssm.version import __version__
    pkg.__version__ = __version__


def _git_commit():
    try:
        with open(osp.join(REPO, '.git', 'HEAD')) as f:
            head = f.read().strip()
        if head.startswith('ref: '):
            with open(osp.join(REPO, '.git', head[5:])) as f:
                return f.read().strip()
        return head
    except OSError:
        return None


# ------------------------------------------------------------------ device
class Device:
    """Synchronisation, timing and memory; GPU APIs only on CUDA."""

    def __init__(self, kind: str, quick: bool):
        self.kind = kind
        self.is_cuda = kind == 'cuda'
        self.device = torch.device('cuda', torch.cuda.current_device()
                                   ) if self.is_cuda else torch.device('cpu')
        self.quick = quick

    def sync(self) -> None:
        if self.is_cuda:
            torch.cuda.synchronize()

    def time_ms(self, fn, warmup_ms: int = 25, rep_ms: int = 100) -> float:
        """Median ms of ``fn``: ``triton.testing.do_bench`` on CUDA, else
        ``time.perf_counter`` over a few calls after one warm-up call."""
        if self.is_cuda:
            from triton.testing import do_bench
            return float(do_bench(fn, warmup=warmup_ms, rep=rep_ms,
                                  return_mode='median'))
        fn()
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)

    def peak_mib(self, fn):
        """Peak allocated memory of one call of ``fn`` above what was
        allocated before it (MiB); None off CUDA."""
        if not self.is_cuda:
            fn()
            return None
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20

    def wall(self, fn):
        """(result, seconds) of one synchronised call."""
        self.sync()
        t0 = time.perf_counter()
        out = fn()
        self.sync()
        return out, time.perf_counter() - t0

    def autocast(self, dtype: str):
        if dtype == 'fp32':
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)


# ------------------------------------------------------------- correctness
def _bf16_exact(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16).to(torch.float64)


def make_inputs(case: dict, seed: int) -> dict:
    """float64 inputs and cotangents (CPU), every value exact in bfloat16."""
    gen = torch.Generator().manual_seed(seed)
    b, d, length, n = (case['batch'], case['dim'], case['length'],
                       case['d_state'])
    groups = case['groups']

    def rnd(*shape, scale=1.0):
        return _bf16_exact(torch.randn(*shape, generator=gen) * scale)

    bc = (b, n, length) if groups is None else (b, groups, n, length)
    return dict(
        u=rnd(b, d, length), delta=rnd(b, d, length, scale=0.5),
        A=_bf16_exact(-(torch.rand(d, n, generator=gen) * 2 + 0.1)),
        B=rnd(*bc), C=rnd(*bc), D=rnd(d), z=rnd(b, d, length),
        delta_bias=rnd(d, scale=0.3), gy=rnd(b, d, length),
        glast=rnd(b, d, n))


def visit_index(order: str, length: int, dim: int, grid) -> torch.Tensor:
    """``(dim, L)``: ``index[c, i]`` is the token channel ``c`` visits at
    step ``i``, from the documented meaning of the order names (built here,
    independently of mmssm's order resolution)."""
    height, width = grid
    row = torch.arange(length)
    col = row.view(height, width).t().reshape(-1)
    named = dict(forward=row, row=row, reverse=row.flip(0),
                 row_reverse=row.flip(0), col=col, col_reverse=col.flip(0))
    spec = ORDERS[order]
    seq = [spec] if isinstance(spec, str) else list(spec)
    per = dim // len(seq)
    return torch.stack([named[o] for o in seq]).repeat_interleave(per, 0)


def reference(t64: dict, case: dict, device: torch.device) -> dict:
    """float64 results of a case: ``selective_scan_ref`` in forward order on
    inputs gathered into each channel's visiting order, scattered back."""
    from mmssm.ops import selective_scan_ref
    leaves = {k: t64[k].to(device).requires_grad_() for k in INPUT_NAMES}
    u = leaves['u']
    batch, dim, length = u.shape
    idx = visit_index(case['order'], length, dim, case['grid']).to(device)
    idx = idx[None].expand(batch, dim, length)

    def per_channel(x):  # (B, [G,] N, L) -> (B, D, N, L), then visit order
        x4 = x[:, None] if x.dim() == 3 else x
        x4 = x4.repeat_interleave(dim // x4.shape[1], dim=1)
        return x4.gather(-1, idx[:, :, None].expand_as(x4))

    y_v, last = selective_scan_ref(
        u.gather(-1, idx), leaves['delta'].gather(-1, idx), leaves['A'],
        per_channel(leaves['B']), per_channel(leaves['C']), leaves['D'],
        leaves['z'].gather(-1, idx), leaves['delta_bias'],
        delta_softplus=True, return_last_state=True)
    y = torch.zeros_like(y_v).scatter(-1, idx, y_v)
    gy, glast = t64['gy'].to(device), t64['glast'].to(device)
    loss = (y * gy).sum() + (last * glast).sum()
    grads = torch.autograd.grad(loss, [leaves[k] for k in INPUT_NAMES])
    out = dict(y=y.detach(), last_state=last.detach())
    out.update({'d' + k: g for k, g in zip(INPUT_NAMES, grads)})
    return out


def run_triton(t64: dict, case: dict, device: torch.device) -> dict:
    """Results of ``selective_scan(..., impl='triton')`` on the case's
    dtype (bf16: u/delta/z/B/C bf16, A/D/delta_bias float32)."""
    from mmssm.ops import selective_scan
    dtype = DTYPES[case['dtype']]
    leaves = {
        k: t64[k].to(device=device, dtype=torch.float32 if k in PARAM_NAMES
                     else dtype).requires_grad_()
        for k in INPUT_NAMES
    }
    y, last = selective_scan(
        *(leaves[k] for k in INPUT_NAMES), delta_softplus=True,
        return_last_state=True, order=ORDERS[case['order']],
        grid=case['grid'], impl='triton', split_l=case['split_l'])
    gy = t64['gy'].to(device=device, dtype=torch.float32)
    glast = t64['glast'].to(device=device, dtype=torch.float32)
    loss = (y.float() * gy).sum() + (last.float() * glast).sum()
    grads = torch.autograd.grad(loss, [leaves[k] for k in INPUT_NAMES])
    out = dict(y=y.detach(), last_state=last.detach())
    out.update({'d' + k: g for k, g in zip(INPUT_NAMES, grads)})
    return out


def relative_errors(got: dict, want: dict) -> dict:
    """max |got - want| / max |want| per tensor (NaN when got is not
    finite or the shapes differ)."""
    errors = {}
    for name in RESULT_NAMES:
        g, w = got[name], want[name]
        if g.shape != w.shape:
            errors[name] = float('nan')
            continue
        g = g.to(torch.float64)
        if not bool(torch.isfinite(g).all()):
            errors[name] = float('nan')
            continue
        scale = w.abs().max().item()
        errors[name] = (g - w).abs().max().item() / max(scale, 1e-300)
    return errors


def check_correctness(rep: Report, dev: Device, cases, inject) -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    section = rep.data['correctness']
    section.update(n_cases=len(cases), tolerances=dict(TOLS),
                   metric='max |got - ref| / max |ref| per tensor, ref in '
                   'float64', tensors=list(RESULT_NAMES),
                   inject_error=inject, cases=[])
    rep.say(f'== (a) correctness: {len(cases)} cases, Triton vs float64 '
            'reference (TF32 off)')
    ref, ref_key = None, None
    for i, case in enumerate(cases):
        record = {k: v for k, v in case.items() if k != 'ref_key'}
        t0 = time.perf_counter()
        try:
            if case['ref_key'] != ref_key:
                ref, ref_key = None, case['ref_key']
                t64 = make_inputs(case, zlib.crc32(ref_key.encode()))
                ref, ref_s = dev.wall(lambda: reference(t64, case,
                                                        dev.device))
                rep.say(f'   reference {ref_key}: {ref_s:.2f} s')
            got, run_s = dev.wall(lambda: run_triton(t64, case, dev.device))
            if case['name'] == inject:
                y = got['y'].clone()
                y.view(-1)[0] += INJECT_AMOUNT * ref['y'].abs().max().item()
                got['y'] = y
            errors = relative_errors(got, ref)
            worst = max(errors, key=lambda k: (math.isnan(errors[k]),
                                               errors[k]))
            max_err = errors[worst]
            dtype_ok = (got['y'].dtype == DTYPES[case['dtype']]
                        and got['last_state'].dtype == torch.float32)
            passed = max_err <= case['tol'] and dtype_ok
            record.update(errors=errors, max_error=max_err, worst=worst,
                          passed=passed, triton_s=run_s,
                          y_dtype=str(got['y'].dtype),
                          last_state_dtype=str(got['last_state'].dtype))
            line = (f"{'ok  ' if passed else 'FAIL'} {case['name']}: max "
                    f"rel err {max_err:.2e} ({worst}), tol "
                    f"{case['tol']:.0e}, {run_s:.2f} s")
            if not dtype_ok:
                line += (f"; dtypes y {got['y'].dtype}, last_state "
                         f"{got['last_state'].dtype} (want "
                         f"{DTYPES[case['dtype']]}, torch.float32)")
            rep.say(line)
            if not passed:
                rep.data['failures'].append(case['name'])
        except Exception as err:  # a crash fails the case, the run goes on
            record.update(passed=False, error=repr(err),
                          traceback=traceback.format_exc())
            rep.fail(case['name'], repr(err))
            if ref is None:  # the reference itself failed: retry next case
                ref_key = None
        record['wall_s'] = time.perf_counter() - t0
        section['cases'].append(record)
        if (i + 1) % 20 == 0:
            rep.save()
    failed = [c['name'] for c in section['cases'] if not c['passed']]
    section['n_passed'] = len(cases) - len(failed)
    section['n_failed'] = len(failed)
    rep.say(f'(a) {len(cases) - len(failed)} cases passed, {len(failed)} '
            'failed' + (': ' + ', '.join(failed) if failed else ''))
    rep.save()


# ------------------------------------------------------------------- bench
def measure_bandwidth(rep: Report, dev: Device) -> float:
    """Device-to-device copy bandwidth, GB/s = 2 * bytes / time."""
    numel = 2**28 if dev.is_cuda else 2**22  # 1 GiB / 16 MiB of float32
    src = torch.empty(numel, dtype=torch.float32, device=dev.device)
    src.fill_(1.0)
    dst = torch.empty_like(src)
    ms = dev.time_ms(lambda: dst.copy_(src))
    nbytes = numel * 4
    gbs = 2 * nbytes / (ms * 1e-3) / 1e9
    rep.data['bandwidth'] = dict(bytes=nbytes, ms=ms, gb_per_s=gbs,
                                 method='dst.copy_(src), 2 * bytes / time')
    rep.say(f'copy bandwidth: {gbs:.0f} GB/s ({nbytes / 2**20:.0f} MiB '
            f'copy in {ms:.3f} ms)')
    del src, dst
    return gbs


def scan_traffic(batch, dim, length, d_state, itemsize):
    """Minimal bytes: fwd reads u, delta, z, B, C and writes y; bwd reads
    u, delta, z, B, C, dy and writes du, ddelta, dz, dB, dC."""
    bdl, bnl = batch * dim * length, batch * d_state * length
    fwd = itemsize * (4 * bdl + 2 * bnl)
    bwd = itemsize * (7 * bdl + 4 * bnl)
    return fwd, fwd + bwd


def bench_scan(rep: Report, dev: Device, deadline: float) -> None:
    from mmssm.ops import selective_scan, selective_scan_ref
    rep.say('== (b) scan speed: Triton (delta_softplus, z, D, delta_bias; '
            'B/C (B, N, L); forward order) vs the reference')
    bw = measure_bandwidth(rep, dev)
    for batch, dim, length, n, dtype in bench_shapes(dev.quick):
        name = f'bench/{dtype}/({batch},{dim},{length},{n})'
        if time.time() > deadline:
            rep.skip(name, 'time budget (--budget-s) spent')
            continue
        row = dict(name=name, shape=[batch, dim, length, n], dtype=dtype)
        try:
            dt = DTYPES[dtype]
            gen = torch.Generator(device=dev.device).manual_seed(0)

            def rnd(*shape, scale=1.0, dtype=dt):
                x = torch.randn(*shape, generator=gen, device=dev.device)
                return (x * scale).to(dtype).requires_grad_()

            args = [rnd(batch, dim, length), rnd(batch, dim, length,
                                                 scale=0.5)]
            A = (-torch.rand(dim, n, generator=gen, device=dev.device) * 2 -
                 0.1).requires_grad_()
            args += [A, rnd(batch, n, length), rnd(batch, n, length),
                     rnd(dim, dtype=torch.float32), rnd(batch, dim, length),
                     rnd(dim, scale=0.3, dtype=torch.float32)]
            gy = torch.randn(batch, dim, length, generator=gen,
                             device=dev.device).to(dt)
            fwd_bytes, fb_bytes = scan_traffic(batch, dim, length, n,
                                               torch.finfo(dt).bits // 8)
            impls = [('triton', lambda *a, **k: selective_scan(
                *a, impl='triton', **k))]
            if length <= REF_BENCH_MAX_LEN:
                impls.append(('ref', selective_scan_ref))
            else:
                row['ref'] = (f'skipped: L > {REF_BENCH_MAX_LEN} (a Python '
                              'loop over L, minutes)')
            for impl, fn in impls:

                def fwd(fn=fn):
                    with torch.no_grad():
                        fn(*args, delta_softplus=True)

                def fwd_bwd(fn=fn):
                    for x in args:
                        x.grad = None
                    fn(*args, delta_softplus=True).backward(gy)

                fwd_ms = dev.time_ms(fwd)
                fb_ms = dev.time_ms(fwd_bwd)
                row[impl] = dict(
                    fwd_ms=fwd_ms, fwd_bwd_ms=fb_ms,
                    fwd_gb_per_s=fwd_bytes / (fwd_ms * 1e-3) / 1e9,
                    fwd_bwd_gb_per_s=fb_bytes / (fb_ms * 1e-3) / 1e9)
                row[impl]['fwd_frac_bw'] = row[impl]['fwd_gb_per_s'] / bw
                row[impl]['fwd_bwd_frac_bw'] = (
                    row[impl]['fwd_bwd_gb_per_s'] / bw)
            row.update(fwd_bytes=fwd_bytes, fwd_bwd_bytes=fb_bytes)
            t = row['triton']
            line = (f"{name}: triton fwd {t['fwd_ms']:.3f} ms "
                    f"{t['fwd_gb_per_s']:.0f} GB/s ({t['fwd_frac_bw']:.0%} "
                    f"of copy), fwd+bwd {t['fwd_bwd_ms']:.3f} ms "
                    f"{t['fwd_bwd_gb_per_s']:.0f} GB/s "
                    f"({t['fwd_bwd_frac_bw']:.0%})")
            if isinstance(row.get('ref'), dict):
                r = row['ref']
                line += (f"; ref fwd {r['fwd_ms']:.2f} ms "
                         f"(ref/triton {r['fwd_ms'] / t['fwd_ms']:.1f}x), "
                         f"fwd+bwd {r['fwd_bwd_ms']:.2f} ms (ref/triton "
                         f"{r['fwd_bwd_ms'] / t['fwd_bwd_ms']:.1f}x)")
            rep.say(line)
            del args, A, gy
        except Exception as err:
            row.update(error=repr(err), traceback=traceback.format_exc())
            rep.fail(name, repr(err))
        rep.data['bench'].append(row)
        rep.save()


# ------------------------------------------------------------------ models
#: Tiny architectures of ``--quick`` (64x64 images).
QUICK_ARCHS = dict(
    vim=dict(embed_dims=32, num_layers=2, d_state=4),
    groupmamba=dict(embed_dims=[16, 32, 48, 64], depths=[1, 1, 1, 1],
                    mlp_ratios=[2, 2, 2, 2], stem_channels=8),
    mambaout=dict(depths=[1, 1, 1, 1], dims=[16, 24, 32, 48]))


def _outputs(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out, )


def build_model(name: str, size: int, quick: bool):
    """'vim' (Vim-Ti, class token), 'groupmamba', 'mambaout', 'deit'
    (timm DeiT-Ti, fused attention), 'deit-explicit' (fused_attn off)."""
    if not name.startswith('deit') and _IMPORT_ERRORS.get('backbones'):
        raise RuntimeError('mmssm.models.backbones could not be imported: '
                           + _IMPORT_ERRORS['backbones'])
    if name == 'vim-cls':
        from mmssm.models.backbones import Vim
        return Vim(arch=QUICK_ARCHS['vim'] if quick else 'tiny',
                   img_size=size, out_type='cls_token')
    if name == 'vim':
        from mmssm.models.backbones import Vim
        return Vim(arch=QUICK_ARCHS['vim'] if quick else 'tiny',
                   img_size=size)
    if name == 'groupmamba':
        from mmssm.models.backbones import GroupMamba
        return GroupMamba(arch=QUICK_ARCHS['groupmamba'] if quick else 'tiny')
    if name == 'mambaout':
        from mmssm.models.backbones import MambaOut
        return MambaOut(arch=QUICK_ARCHS['mambaout'] if quick else 'tiny')
    if name in ('deit', 'deit-explicit'):
        import timm
        model = timm.create_model('deit_tiny_patch16_224', pretrained=False,
                                  num_classes=0, img_size=size)
        if name == 'deit-explicit':
            switched = 0
            for module in model.modules():
                if isinstance(getattr(module, 'fused_attn', None), bool):
                    module.fused_attn = False
                    switched += 1
            if not switched:
                raise RuntimeError('no timm attention module with a '
                                   '`fused_attn` flag found')
        return model
    raise ValueError(f'unknown model {name!r}')


def _weights_mib(model) -> float:
    return sum(p.numel() * p.element_size()
               for p in model.parameters()) / 2**20


def bench_models(rep: Report, dev: Device, deadline: float) -> None:
    rep.say('== (c) Vim-Ti vs DeiT-Ti inference (inference_mode; median ms '
            'per batch; peak allocated above weights and input)')
    names = ['vim-cls']
    if _missing('timm'):
        rep.skip('models/deit', 'timm is not installed: DeiT-Ti skipped')
    else:
        names += ['deit', 'deit-explicit']
    rows = rep.data['models_inference']
    for size, batch in model_sizes(dev.quick):
        for name in names:
            label = f'models/{name}/{size}'
            if time.time() > deadline:
                rep.skip(label, 'time budget (--budget-s) spent')
                continue
            try:
                model = build_model(name, size, dev.quick).to(
                    dev.device).eval()
                x = torch.randn(batch, 3, size, size, device=dev.device)
                for dtype in DTYPES:

                    def fwd(model=model, dtype=dtype):
                        with torch.inference_mode(), dev.autocast(dtype):
                            return _outputs(model(x))

                    outs = fwd()
                    finite = all(bool(torch.isfinite(o).all()) for o in outs)
                    mem = dev.peak_mib(fwd)
                    ms = dev.time_ms(fwd, rep_ms=200)
                    row = dict(name=label, model=name, size=size,
                               batch=batch, dtype=dtype, ms=ms, peak_mib=mem,
                               weights_mib=_weights_mib(model),
                               finite=finite)
                    rows.append(row)
                    mem_s = '-' if mem is None else f'{mem:.0f} MiB'
                    rep.say(f'{label} {dtype} batch {batch}: {ms:.2f} ms, '
                            f'peak {mem_s}')
                    if not finite:
                        rep.fail(f'{label}/{dtype}', 'non-finite output')
                del model, x, outs
            except Exception as err:
                rows.append(dict(name=label, error=repr(err),
                                 traceback=traceback.format_exc()))
                rep.fail(label, repr(err))
            if dev.is_cuda:
                torch.cuda.empty_cache()
            rep.save()
    ratios = []
    for size, batch in model_sizes(dev.quick):
        for dtype in DTYPES:
            found = {r['model']: r for r in rows
                     if r.get('size') == size and r.get('dtype') == dtype}
            vim = found.get('vim-cls')
            for other in ('deit', 'deit-explicit'):
                if vim is None or other not in found:
                    continue
                o = found[other]
                ratio = dict(size=size, dtype=dtype, vs=other,
                             time_ratio=vim['ms'] / o['ms'])
                if vim['peak_mib'] is not None and o['peak_mib']:
                    ratio['memory_ratio'] = vim['peak_mib'] / o['peak_mib']
                ratios.append(ratio)
                mem = ratio.get('memory_ratio')
                rep.say(f'Vim-Ti / {other} at {size} {dtype}: time '
                        f"{ratio['time_ratio']:.2f}x"
                        + ('' if mem is None else f', memory {mem:.2f}x')
                        + ' (< 1: Vim-Ti faster / smaller)')
    rep.data['models_ratios'] = ratios
    rep.save()


def train_models(rep: Report, dev: Device, deadline: float) -> None:
    size, batch = (64, 2) if dev.quick else (512, 2)
    rep.say(f'== (d) one bf16-autocast training step at {size}x{size}, '
            f'batch {batch}: loss = sum of the outputs\' means')
    for name in ('vim', 'groupmamba', 'mambaout'):
        label = f'train/{name}'
        if time.time() > deadline:
            rep.skip(label, 'time budget (--budget-s) spent')
            continue
        row = dict(name=label, size=size, batch=batch)
        try:
            model = build_model(name, size, dev.quick).to(dev.device).train()
            x = torch.randn(batch, 3, size, size, device=dev.device)

            def step(model=model):
                model.zero_grad(set_to_none=True)
                with dev.autocast('bf16'):
                    outs = _outputs(model(x))
                loss = sum(o.float().mean() for o in outs)
                loss.backward()
                return loss.detach()

            _, first_s = dev.wall(step)  # compiles the kernels
            model.zero_grad(set_to_none=True)
            mem = dev.peak_mib(step)
            loss, step_s = dev.wall(step)
            params = [(n, p) for n, p in model.named_parameters()
                      if p.requires_grad]
            no_grad = [n for n, p in params if p.grad is None]
            bad = [n for n, p in params if p.grad is not None
                   and not bool(torch.isfinite(p.grad).all())]
            finite = bool(torch.isfinite(loss)) and not bad
            row.update(first_step_s=first_s, step_s=step_s, peak_mib=mem,
                       weights_mib=_weights_mib(model), loss=loss.item(),
                       n_params=len(params), params_without_grad=no_grad,
                       non_finite_grads=bad, finite=finite)
            mem_s = '-' if mem is None else f'{mem:.0f} MiB'
            rep.say(f'{label}: step {step_s * 1e3:.1f} ms (first '
                    f'{first_s:.2f} s), peak {mem_s}, loss '
                    f'{loss.item():.4g}, {len(params)} params, '
                    f'{len(no_grad)} without grad, {len(bad)} non-finite')
            if not finite:
                rep.fail(label, f'non-finite loss or gradients: {bad[:5]}')
            del model, x
        except Exception as err:
            row.update(error=repr(err), traceback=traceback.format_exc())
            rep.fail(label, repr(err))
        rep.data['models_train'].append(row)
        if dev.is_cuda:
            torch.cuda.empty_cache()
        rep.save()


# -------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='One-shot GPU check of mmssm (see the module docstring)')
    parser.add_argument('--quick', action='store_true',
                        help='tiny shapes and models (the CPU test)')
    parser.add_argument('--skip-bench', action='store_true',
                        help='skip (b), the scan benchmark')
    parser.add_argument('--skip-models', action='store_true',
                        help='skip (c) and (d), the model runs')
    parser.add_argument('--skip-correctness', action='store_true',
                        help='skip (a) (for a rerun of the timings only)')
    parser.add_argument('--device', default='cuda',
                        help="'cuda' (default) or 'cpu' (only with "
                        'TRITON_INTERPRET=1 and --quick)')
    parser.add_argument('--out', default='work_dirs/gpu_check.json',
                        help='JSON file of the results')
    parser.add_argument('--only', default=None, metavar='SUBSTR[,SUBSTR]',
                        help='run only the correctness cases whose name '
                        'contains one of the comma-separated SUBSTRs')
    parser.add_argument('--inject-error', default=None, metavar='CASE',
                        help='add %g x max|y_ref| to one element of the '
                        'Triton output of correctness case CASE (tests that '
                        'a wrong result fails the run)' % INJECT_AMOUNT)
    parser.add_argument('--budget-s', type=float, default=450.0,
                        help='after this many seconds from the start, the '
                        'remaining (b)-(d) items are skipped (the '
                        'correctness cases always run). Default 450')
    parser.add_argument('--full', action='store_true',
                        help='all 240 correctness cases (default: the 96 of '
                        'correctness_cases(full=False), which fit the 8 '
                        'minutes with the other sections)')
    parser.add_argument('--list-cases', action='store_true',
                        help='print the correctness case names and exit')
    args = parser.parse_args(argv)
    if args.device not in ('cuda', 'cpu'):
        parser.error(f"--device must be one of ('cuda', 'cpu'), got "
                     f'{args.device!r}')
    if args.list_cases:
        return args
    if args.device == 'cpu':
        if os.environ.get('TRITON_INTERPRET') != '1' or not args.quick:
            parser.error('--device cpu runs the Triton kernels in the Triton '
                         'interpreter: set TRITON_INTERPRET=1 and pass '
                         '--quick')
    elif not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA device is available (on a CPU '
                     'machine: TRITON_INTERPRET=1 ... --quick --device cpu)')
    names = [c['name'] for c in correctness_cases(args.quick, True)]
    if args.only is not None:
        for sub in args.only.split(','):
            if not any(sub in n for n in names):
                parser.error(f'--only {sub!r} matches no case (see '
                             '--list-cases)')
    if args.inject_error is not None and args.inject_error not in names:
        parser.error(f'--inject-error {args.inject_error!r} is not a case '
                     'name (see --list-cases)')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    cases = correctness_cases(args.quick, args.full)
    if args.list_cases:
        for case in cases:
            print(case['name'])
        return 0
    start = time.time()
    deadline = start + args.budget_s
    rep = Report(args.out)
    setup = setup_imports()
    dev = Device(args.device, args.quick)
    import mmssm
    meta = rep.data['meta']
    meta.update(
        args=vars(args), python=platform.python_version(),
        torch=torch.__version__, device=str(dev.device),
        device_name=(torch.cuda.get_device_name(dev.device)
                     if dev.is_cuda else platform.processor() or 'cpu'),
        triton_interpret=os.environ.get('TRITON_INTERPRET'),
        mmssm_version=mmssm.__version__, mmssm_path=osp.dirname(
            mmssm.__file__), git_commit=_git_commit(),
        started=time.strftime('%Y-%m-%d %H:%M:%S'), allow_tf32=False,
        **setup)
    if setup['optional_modules']['triton'] is not None:
        import triton
        meta['triton'] = triton.__version__
    rep.say(f"gpu_check: {meta['device_name']} ({dev.device}), torch "
            f"{torch.__version__}, triton {meta.get('triton')}, python "
            f"{meta['python']}, mmssm {mmssm.__version__} "
            f"({meta['git_commit'] or 'no git'})")
    if setup['stubbed_modules']:
        rep.say('NOTE: not installed, replaced by placeholders while mmssm '
                'was imported (imported by mmcv/mmengine/mmssm.datasets, '
                'unused here): ' + ', '.join(setup['stubbed_modules']))
    if setup['mmssm_import_error']:
        rep.say('NOTE: import mmssm failed, its scan ops were imported '
                'without the package __init__: ' + setup['mmssm_import_error'])
    elif setup['backbones_import_error']:
        rep.say('NOTE: import mmssm.models.backbones failed: '
                + setup['backbones_import_error'])
    timings = meta['section_s'] = {}
    todo = [c for c in cases if args.only is None
            or any(sub in c['name'] for sub in args.only.split(','))]
    sections = []
    if not args.skip_correctness:
        sections.append(('correctness', lambda: check_correctness(
            rep, dev, todo, args.inject_error)))
    else:
        rep.skip('correctness', '--skip-correctness')
    if not args.skip_bench:
        sections.append(('bench', lambda: bench_scan(rep, dev, deadline)))
    if not args.skip_models:
        # (d) before (c): a scan order first resolved under inference_mode
        # is cached as an inference tensor and breaks later training calls
        # with the same shapes (mmssm.ops bug at the time of writing).
        sections.append(('models_train',
                         lambda: train_models(rep, dev, deadline)))
        sections.append(('models_inference',
                         lambda: bench_models(rep, dev, deadline)))
    for name, run in sections:
        t0 = time.perf_counter()
        try:
            run()
        except Exception as err:  # a section that cannot run at all
            rep.data.setdefault('section_errors', {})[name] = (
                traceback.format_exc())
            rep.fail(name, f'section crashed: {err!r}')
        timings[name] = time.perf_counter() - t0
        rep.save()
    failures = rep.data['failures']
    rep.data['status'] = 'failed' if failures else 'passed'
    meta['elapsed_s'] = time.time() - start
    rep.say(f"gpu_check {rep.data['status']} in {meta['elapsed_s']:.1f} s "
            f'(sections: ' + ', '.join(f'{k} {v:.1f} s'
                                       for k, v in timings.items()) + ')'
            + (f'; {len(failures)} failures: ' + ', '.join(failures)
               if failures else ''))
    rep.say(f'results: {args.out}')
    rep.save()
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
