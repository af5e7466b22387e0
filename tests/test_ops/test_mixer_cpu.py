"""The fused CPU inference path of the Mamba mixers (``mmssm.ops.mixer_cpu``).

Every check compares the fused path with an independent computation: the
training path with the readable reference scan (``scan_impl='ref'``, torch
conv1d, ``selective_scan_ref``), torch's own softplus/SiLU/RMSNorm, or an
explicit loop. The backbone-level official-math tests (tests/test_models/
test_backbones/test_vim*.py) run under ``torch.no_grad()`` and so check the
fused path against the official Vim forward too.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmssm.models.backbones.vim import Vim
from mmssm.models.layers import BiMambaMixer, MambaMixer, RMSNorm
from mmssm.models.layers.mamba import causal_conv1d
from mmssm.ops import mixer_cpu

pytest.importorskip('numba')
from mmssm.ops import _mixer_numba  # noqa: E402


def _perturbed(module, seed=0, scale=0.2):
    """Move every parameter away from its init (A_log, D, biases...)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return module.eval()


def _both_paths(module, *inputs, monkeypatch):
    with torch.no_grad():
        monkeypatch.setenv(mixer_cpu.FAST_PATH_ENV, '0')
        ref = module(*inputs)
        monkeypatch.setenv(mixer_cpu.FAST_PATH_ENV, '1')
        out = module(*inputs)
    return out, ref


@pytest.mark.parametrize('cls', [BiMambaMixer, MambaMixer])
@pytest.mark.parametrize('embed_dims,length,d_state,d_conv', [
    (16, 37, 4, 4),    # d_inner 32: one partial channel block
    (20, 9, 16, 4),    # d_inner 40, not a multiple of 16
    (24, 2, 1, 4),     # L shorter than the conv kernel, d_state 1
    (16, 1, 8, 3),     # one token, kernel 3
    (96, 65, 16, 4),   # d_inner 192: several blocks per thread
    (16, 21, 5, 4),    # odd d_state: state pairs and a last single state
    (144, 11, 4, 4),   # dt_rank 9: two passes of four ranks and one more
])
def test_mixer_fast_path_equals_reference(cls, embed_dims, length, d_state,
                                          d_conv, monkeypatch):
    torch.manual_seed(0)
    mixer = _perturbed(
        cls(embed_dims, d_state=d_state, d_conv=d_conv, scan_impl=None))
    ref_mixer = _perturbed(
        cls(embed_dims, d_state=d_state, d_conv=d_conv, scan_impl='ref'))
    ref_mixer.load_state_dict(mixer.state_dict())
    x = torch.randn(2, length, embed_dims)
    with torch.no_grad():
        assert mixer_cpu.fast_path_enabled(x, mixer.scan_impl)
        out = mixer(x)
        ref = ref_mixer(x)   # scan_impl='ref' never takes the fast path
    assert out.shape == ref.shape == (2, length, embed_dims)
    err = (out - ref).abs().max() / ref.abs().max()
    assert err < 2e-6, err


def test_bimamba_sum_instead_of_mean(monkeypatch):
    mixer = _perturbed(BiMambaMixer(16, d_state=4, divide_out=False))
    x = torch.randn(1, 30, 16)
    out, ref = _both_paths(mixer, x, monkeypatch=monkeypatch)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    # averaging gives half the sum (out_proj is linear without bias)
    half = BiMambaMixer(16, d_state=4, divide_out=True).eval()
    half.load_state_dict(mixer.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(half(x), out / 2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('kwargs', [
    dict(arch=dict(embed_dims=32, num_layers=3, d_state=8)),
    dict(arch=dict(embed_dims=32, num_layers=2, d_state=8), num_registers=4,
         with_cls_token=False),
    dict(arch=dict(embed_dims=32, num_layers=2, d_state=4), stride=8),
])
def test_vim_fast_path_equals_training_path(kwargs, monkeypatch):
    torch.manual_seed(0)
    model = _perturbed(
        Vim(img_size=64, out_indices=(0, 1), out_type='featmap', **kwargs),
        scale=0.05)
    img = torch.randn(2, 3, 64, 48)
    out, ref = _both_paths(model, img, monkeypatch=monkeypatch)
    assert len(out) == len(ref) == 2
    for o, r in zip(out, ref):
        err = (o - r).abs().max() / r.abs().max()
        assert err < 1e-5, err


def test_fast_path_conditions(monkeypatch):
    x = torch.randn(1, 4, 8)
    with torch.no_grad():
        assert mixer_cpu.fast_path_enabled(x)
        assert mixer_cpu.fast_path_enabled(x, 'cpu')
        assert not mixer_cpu.fast_path_enabled(x, 'ref')
        assert not mixer_cpu.fast_path_enabled(x.double())
        assert not mixer_cpu.fast_path_enabled(x.bfloat16())
        monkeypatch.setenv('MMSSM_SCAN_IMPL', 'ref')
        assert not mixer_cpu.fast_path_enabled(x)
        monkeypatch.delenv('MMSSM_SCAN_IMPL')
        monkeypatch.setenv(mixer_cpu.FAST_PATH_ENV, '0')
        assert not mixer_cpu.fast_path_enabled(x)
    monkeypatch.delenv(mixer_cpu.FAST_PATH_ENV)
    # training (grad mode on) never takes it, even for frozen weights
    assert not mixer_cpu.fast_path_enabled(x)


def test_training_path_unchanged_and_differentiable():
    """With grad mode on, the mixer keeps its autograd path: gradients
    reach every parameter."""
    mixer = _perturbed(BiMambaMixer(16, d_state=4)).train()
    x = torch.randn(2, 11, 16, requires_grad=True)
    mixer(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in mixer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.filterwarnings('ignore::torch.jit.TracerWarning')
@pytest.mark.filterwarnings('ignore:.*torch.jit.trace.*:FutureWarning')
def test_trace_does_not_take_the_fast_path():
    """FLOP counting traces the model: the scan must stay visible."""
    mixer = _perturbed(MambaMixer(16, d_state=4))
    x = torch.randn(1, 5, 16)
    with torch.no_grad():
        graph = torch.jit.trace(mixer, (x, ), check_trace=False).graph
    kinds = {n.kind() for n in graph.nodes()}
    assert any('PythonOp' in k for k in kinds), kinds


def _elementwise(fn, x):
    """The numba elementary function ``fn`` applied to each element of the
    float32 array ``x``, compiled as the kernels compile it."""
    out = np.empty_like(x)

    @_mixer_numba.njit(cache=False)
    def run(x, out):
        for i in range(x.size):
            out[i] = fn(x[i])

    run(x, out)
    return out


def test_softplus_and_silu_kernels_vs_torch():
    x = np.concatenate([
        np.linspace(-80, 30, 200001), [-100., -20., -1e-3, 0., 1e-3, 19.99,
                                      20., 20.01, 50.]
    ]).astype(np.float32)
    sp = _elementwise(_mixer_numba.softplus, x)
    si = _elementwise(_mixer_numba.silu, x)
    xt = torch.from_numpy(x).double()
    ref_sp = F.softplus(xt).numpy()
    ref_si = F.silu(xt).numpy()
    assert np.all(np.abs(sp - ref_sp) <= 1e-6 * np.abs(ref_sp) + 1e-37)
    # where exp(-|x|) is a normal float32: the exp (2.1e-7) and the log1p
    # polynomial (1.8e-7) together stay below 4e-7 (2.5e-7 measured)
    normal = x > -86
    rel = np.abs(sp - ref_sp)[normal] / np.abs(ref_sp)[normal]
    assert rel.max() <= 4e-7, rel.max()
    # torch returns x itself above its threshold 20; the kernel has no
    # threshold, the added term rounds away
    assert np.array_equal(sp[x > 20], x[x > 20])
    assert np.all(np.abs(si - ref_si) <= 1e-6 * np.abs(ref_si) + 1e-30)


def test_exp_kernels_vs_float64():
    """``fast_exp`` (any sign) and ``exp_nonpos`` (the scan's
    ``exp(delta * A)``) against float64 ``exp``: 2.1e-7 relative where the
    result is a normal float32 (integer multiples of ln 2, where the
    reduction switches, included), values at and past the clamps finite and
    of the right size."""
    from mmssm.ops import _scan_numba
    x = np.concatenate([
        np.linspace(-86.5, 88.0, 400001),
        np.arange(-120, 128) * np.log(2.0),
        [-1e4, -100., -87.5, -86.5, -1e-30, 0., 1e-30, 88.0, 89., 1e4]
    ]).astype(np.float32)
    fe = _elementwise(_scan_numba.fast_exp, x)
    fn = _elementwise(_scan_numba.exp_nonpos, np.minimum(x, np.float32(0)))
    x64 = x.astype(np.float64)
    ref = np.exp(np.clip(x64, -86.5, 88.0))
    assert np.all(np.isfinite(fe)) and np.all(np.isfinite(fn))
    normal = (x64 >= -86.5) & (x64 <= 88.0)
    rel = np.abs(fe.astype(np.float64) - ref) / ref
    assert rel[normal].max() <= 2.5e-7, rel[normal].max()
    nonpos = normal & (x64 <= 0)
    rel_n = np.abs(fn.astype(np.float64) - ref) / ref
    assert rel_n[nonpos].max() <= 2.5e-7
    # below the clamp: the value at the clamp (< 3e-38), never 0 * inf
    assert np.all(fn[x64 < -86.5] <= 3e-38) and np.all(fn[x64 < -86.5] > 0)
    assert fe[x64 > 88.0].min() >= np.exp(88.0) * (1 - 3e-7)
    # x = 0 gives exactly 1 up to the fit's constant term (1 + 1.2e-7)
    assert abs(float(fe[x64 == 0][0]) - 1.0) <= 2.5e-7


def test_exp2_kernel_vs_float64():
    """``exp2_nonpos`` (the inference scans' ``exp(delta * A)`` as
    ``2 ** (delta * A log2 e)``) against float64 ``2 ** x``: 2.5e-7 relative
    down to the clamp at -125 (half-integers, where the rounding of ``k``
    switches, included); below it the value at the clamp, never 0 or a
    wrapped exponent."""
    from mmssm.ops import _scan_numba
    x = np.concatenate([
        np.linspace(-125.0, 0.0, 400001),
        np.arange(-250, 1) * 0.5,
        [-1e4, -200., -126., -125.5, -1e-30, 0.]
    ]).astype(np.float32)
    out = _elementwise(_scan_numba.exp2_nonpos, x)
    x64 = x.astype(np.float64)
    ref = np.exp2(np.maximum(x64, -125.0))
    rel = np.abs(out.astype(np.float64) - ref) / ref
    assert rel.max() <= 2.5e-7, rel.max()
    assert np.all(out[x64 < -125] == out[x64 == -125][0])
    assert 2.3e-38 < out[x64 == -125][0] < 2.4e-38


@pytest.mark.parametrize('ndir', [1, 2])
@pytest.mark.parametrize('length', [13, 70])   # one tile; tiles of 32 + 6
def test_conv_kernel_vs_torch_conv(ndir, length):
    """Across tile borders too: the in-place anti-causal pass reads three
    tokens of the next tile before that tile is written."""
    torch.manual_seed(0)
    dim, ksize = 40, 4
    assert _mixer_numba.CONV_TILE == 32
    xz = torch.randn(2, length, 2 * dim)
    wf, wb = torch.randn(dim, 1, ksize), torch.randn(dim, 1, ksize)
    bf, bb = torch.randn(dim), torch.randn(dim)
    x = xz[..., :dim].transpose(1, 2)
    ref_f = F.silu(causal_conv1d(x, wf, bf)).transpose(1, 2)
    # the official backward branch: flip, causal conv, flip back
    ref_b = F.silu(causal_conv1d(x.flip(-1), wb, bb)).flip(-1).transpose(1, 2)
    uf = torch.empty(2, length, dim)
    work = xz[..., :dim].contiguous()
    _mixer_numba.conv_silu(work.numpy(), wf[:, 0].t().contiguous().numpy(),
                           bf.numpy(), wb[:, 0].t().contiguous().numpy(),
                           bb.numpy(), ndir, 16, uf.numpy(), 0, 2 * 3)
    torch.testing.assert_close(uf, ref_f, rtol=1e-5, atol=1e-6)
    if ndir == 2:
        torch.testing.assert_close(work, ref_b, rtol=1e-5, atol=1e-6)
    else:
        assert torch.equal(work, xz[..., :dim])   # x untouched


@pytest.mark.parametrize('with_residual', [False, True])
def test_add_rmsnorm_vs_module(with_residual):
    torch.manual_seed(0)
    norm = RMSNorm(24)
    with torch.no_grad():
        norm.weight.normal_()
    hidden = torch.randn(2, 300, 24) * 3
    residual = torch.randn(2, 300, 24) if with_residual else None
    res, out = mixer_cpu.add_rmsnorm_cpu(hidden, residual, norm.weight,
                                         norm.eps)
    ref_res = hidden if residual is None else residual + hidden
    torch.testing.assert_close(res, ref_res)
    with torch.no_grad():
        torch.testing.assert_close(out, norm(ref_res), rtol=2e-6, atol=1e-6)
    assert res.data_ptr() != hidden.data_ptr()   # inputs left as they were


def test_mixer_inference_argument_checks():
    conv = [torch.zeros(4, 1, 4)]
    with pytest.raises(ValueError, match='1 or 2 directions'):
        mixer_cpu.prepare_mixer_weights(conv * 3, [None] * 3, [None] * 3,
                                        [None] * 3, [None] * 3, [None] * 3)
    weights = mixer_cpu.prepare_mixer_weights(
        conv, [None], [torch.zeros(4, 2)], [torch.zeros(4)],
        [torch.zeros(4, 3)], [torch.zeros(4)])
    with pytest.raises(ValueError, match='float32 CPU'):
        mixer_cpu.mamba_mixer_cpu_inference(
            torch.zeros(1, 2, 6).double(), torch.zeros(8, 6), None, weights,
            [torch.zeros(8, 4)])
    with pytest.raises(ValueError, match='d_inner=4'):
        mixer_cpu.mamba_mixer_cpu_inference(
            torch.zeros(1, 2, 6), torch.zeros(12, 6), None, weights,
            [torch.zeros(8, 4)])


def test_cached_weights_follow_parameter_updates(monkeypatch):
    """The kernels' parameter copies are rebuilt after an in-place update
    (an optimizer step, load_state_dict)."""
    mixer = _perturbed(BiMambaMixer(16, d_state=4))
    x = torch.randn(1, 9, 16)
    with torch.no_grad():
        before = mixer(x)
        mixer.A_b_log.add_(0.5)
        mixer.conv1d.bias.mul_(-1)
    out, ref = _both_paths(mixer, x, monkeypatch=monkeypatch)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    assert (out - before).abs().max() > 1e-3


def test_projection_biases(monkeypatch):
    """``bias=True`` mixers (in_proj/out_proj with biases): the split
    ``in_proj`` of the fused path keeps each half's bias."""
    mixer = _perturbed(BiMambaMixer(16, d_state=4, bias=True))
    assert mixer.in_proj.bias is not None
    x = torch.randn(2, 10, 16)
    out, ref = _both_paths(mixer, x, monkeypatch=monkeypatch)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_cpu_autocast_keeps_the_torch_path(monkeypatch):
    """Under CPU autocast the linear layers give bfloat16 activations: the
    fused float32 path must step aside, and the model must still run."""
    model = _perturbed(
        Vim(arch=dict(embed_dims=32, num_layers=2, d_state=4), img_size=32,
            out_type='cls_token'), scale=0.05)
    img = torch.randn(1, 3, 32, 32)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        assert not mixer_cpu.fast_path_enabled(torch.zeros(1, 2, 3))
        out = model(img)[0]
    with torch.no_grad():
        ref = model(img)[0]
    assert torch.isfinite(out.float()).all()
    assert (out.float() - ref).abs().max() < 0.1 * ref.abs().max()


def test_vim_on_exclusive_threads_equals_training_path(monkeypatch):
    """Without torch's OpenMP team for the kernels (``MMSSM_CPU_OMP=0``),
    long sequences run on mmssm's threads alone (torch's set to one for the
    pass, matrix products split by rows): same features, and torch's thread
    count is restored afterwards."""
    from mmssm.ops import cpu_threads
    monkeypatch.setenv('MMSSM_CPU_OMP', '0')
    monkeypatch.setattr(Vim, '_EXCLUSIVE_MIN_TOKENS', 1)
    seen = []
    real = cpu_threads.parallel_linear

    def spy(x, w, b=None):
        seen.append((torch.get_num_threads(), cpu_threads.num_threads()))
        return real(x, w, b)

    monkeypatch.setattr(cpu_threads, 'parallel_linear', spy)
    monkeypatch.setattr(mixer_cpu, 'parallel_linear', spy)
    import mmssm.models.layers.mamba as mamba_module
    monkeypatch.setattr(mamba_module, 'parallel_linear', spy)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = _perturbed(
            Vim(arch=dict(embed_dims=32, num_layers=2, d_state=4),
                img_size=64, out_type='raw'), scale=0.05)
        img = torch.randn(2, 3, 64, 64)
        out, ref = _both_paths(model, img, monkeypatch=monkeypatch)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert seen and all(s == (1, 2) for s in seen), seen
    err = (out[0] - ref[0]).abs().max() / ref[0].abs().max()
    assert err < 1e-5, err


def test_thread_helpers():
    from mmssm.ops import cpu_threads
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        # every item exactly once, split over the threads
        hits = np.zeros(37, dtype=np.int64)

        def kernel(arr, begin, end):
            arr[begin:end] += 1

        cpu_threads.run_parallel(kernel, (hits, ), 37)
        assert (hits == 1).all()
        # an error in a worker range is raised after every range finished
        done = []

        def failing(begin, end):
            if begin > 0:
                raise RuntimeError('worker range failed')
            done.append((begin, end))

        with pytest.raises(RuntimeError, match='worker range failed'):
            cpu_threads.run_parallel(failing, (), 10)
        assert done == [(0, 5)]
        # exclusive mode: torch at one thread inside, restored on errors
        with pytest.raises(ValueError):
            with cpu_threads.exclusive_threads():
                assert torch.get_num_threads() == 1
                assert cpu_threads.num_threads() == 2
                x, w, b = torch.randn(3, 50, 8), torch.randn(6, 8), \
                    torch.randn(6)
                with torch.no_grad():
                    torch.testing.assert_close(
                        cpu_threads.parallel_linear(x, w, b),
                        F.linear(x, w, b))
                # the pool's threads write inference tensors too (they are
                # not in inference mode unless told)
                with torch.inference_mode():
                    torch.testing.assert_close(
                        cpu_threads.parallel_linear(x, w, b),
                        F.linear(x, w, b))
                raise ValueError
        assert torch.get_num_threads() == 2
        assert cpu_threads.num_threads() == 2
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize('mixer', ['group', 'ss2d4'])
def test_groupmamba_inference_equals_training_path(mixer, monkeypatch):
    """GroupMamba (four orders in one scan call) and the ss2d4 variant: the
    fused inference forward of the scan op gives the training path's
    features."""
    from mmssm.models.backbones.groupmamba import GroupMamba
    torch.manual_seed(0)
    arch = dict(embed_dims=[16, 32, 48, 64], depths=[1, 1, 1, 1],
                mlp_ratios=[2, 2, 2, 2], stem_channels=8)
    model = _perturbed(GroupMamba(arch, mixer=mixer, out_indices=(0, 3)),
                       scale=0.05)
    img = torch.randn(2, 3, 64, 96)
    out, ref = _both_paths(model, img, monkeypatch=monkeypatch)
    for o, r in zip(out, ref):
        err = (o - r).abs().max() / r.abs().max()
        assert err < 1e-5, err


def test_vit_adapter_inference_equals_training_path(monkeypatch):
    """ViT-Adapter around a Vim with registers: its Vim layers take the fused
    path (the adapter drives them layer by layer)."""
    pytest.importorskip('mmcv.ops')
    from mmssm.models.backbones.vit_adapter import PlainAdapter
    torch.manual_seed(0)
    model = _perturbed(
        PlainAdapter(
            backbone=dict(type='Vim', arch=dict(embed_dims=32, num_layers=4,
                                                d_state=4),
                          img_size=64, num_registers=2),
            conv_inplane=8, deform_num_heads=4, norm_cfg=dict(type='BN')),
        scale=0.05)
    img = torch.randn(1, 3, 64, 64)
    out, ref = _both_paths(model, img, monkeypatch=monkeypatch)
    assert len(out) == 4
    for o, r in zip(out, ref):
        err = (o - r).abs().max() / r.abs().max()
        assert err < 1e-5, err


def _record_ranges(out, width, flag, value, begin, end):
    # every work item writes its own index, the flag and the value into its
    # row: a range run twice, skipped or given the wrong arguments shows
    for w in range(begin, end):
        for j in range(width):
            out[w, j] += w + 1
        out[w, 0] += 1000 * flag + value


def test_kernels_on_torchs_openmp_team(monkeypatch):
    """numba kernels launched as parallel regions of torch's OpenMP team
    (mmssm.ops._omp_launch): each work item exactly once, with its
    arguments (arrays of any rank, bool, int, float) unpacked as given; the
    fused Vim path gives the same features as on the thread pool; arguments
    that cannot be passed (a non-contiguous array) keep the thread pool."""
    numba = pytest.importorskip('numba')
    from mmssm.ops import _omp_launch, cpu_threads
    if not _omp_launch.available():
        pytest.skip('torch does not use GNU OpenMP here')
    kernel = numba.njit(_record_ranges)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for items in (1, 2, 7, 64):
            out = np.zeros((items, 3), dtype=np.float32)
            launch = _omp_launch.launcher(kernel, (out, 3, True, 0.25))
            assert launch is not None
            launch(items, 2)
            expected = np.repeat(np.arange(1, items + 1, dtype=np.float32),
                                 3).reshape(items, 3)
            expected[:, 0] += 1000.25
            np.testing.assert_array_equal(out, expected)
        # through run_parallel, with False and a negative value
        out = np.zeros((5, 4), dtype=np.float32)
        cpu_threads.run_parallel(kernel, (out, 4, False, -2.0), 5)
        assert (out[:, 1] == np.arange(1, 6)).all()
        assert (out[:, 0] == np.arange(1, 6) - 2).all()
        # a non-contiguous array cannot be unpacked: the thread pool runs it
        strided = np.zeros((5, 8), dtype=np.float32)[:, ::2]
        assert _omp_launch.launcher(kernel, (strided, 4, False, 0.0)) is None
        cpu_threads.run_parallel(kernel, (strided, 4, False, 0.0), 5)
        assert (strided[:, 2] == np.arange(1, 6)).all()
        # the switch
        monkeypatch.setenv('MMSSM_CPU_OMP', '0')
        assert not cpu_threads.launch_is_cheap()
        assert _omp_launch.launcher(kernel, (out, 4, False, 0.0)) is None
        monkeypatch.delenv('MMSSM_CPU_OMP')
        assert cpu_threads.launch_is_cheap()
        # a whole Vim: team launches == thread pool == training path
        model = _perturbed(
            Vim(arch=dict(embed_dims=32, num_layers=2, d_state=4),
                img_size=64, out_type='raw'), scale=0.05)
        img = torch.randn(2, 3, 64, 64)
        out_team, ref = _both_paths(model, img, monkeypatch=monkeypatch)
        monkeypatch.setenv('MMSSM_CPU_OMP', '0')
        with torch.no_grad():
            out_pool = model(img)
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(out_team[0], out_pool[0], rtol=0, atol=0)
    err = (out_team[0] - ref[0]).abs().max() / ref[0].abs().max()
    assert err < 1e-5, err


def test_openmp_trampolines_are_cached_on_disk(tmp_path):
    """The trampoline of a kernel of mmssm is written to a file and compiled
    with numba's cache: a second process loads it instead of compiling it
    (the first compile costs 0.3-1 s a kernel), and a changed kernel source
    would give another file (the fingerprint is part of the source)."""
    pytest.importorskip('numba')
    from mmssm.ops import _omp_launch
    if not _omp_launch.available():
        pytest.skip('torch does not use GNU OpenMP here')
    code = (
        'import numpy as np, torch\n'
        'torch.set_num_threads(2)\n'
        'from mmssm.ops import _mixer_numba, _omp_launch\n'
        'y = np.ones((3, 40), np.float32); z = np.full((3, 40), 2, '
        'np.float32)\n'
        'launch = _omp_launch.launcher(_mixer_numba.gate, (z, y, 0.5))\n'
        'launch(3, 2)\n'
        'entry, = _omp_launch._TRAMPOLINES.values()\n'
        'import inspect\n'
        'print(entry[0].cache_hits, float(z[2, 7]), '
        'inspect.getfile(entry[0]._pyfunc))\n')
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    runs = [
        subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, env=env, timeout=300) for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
    (hits0, z0, path0), (hits1, z1, path1) = (r.stdout.split()
                                                for r in runs)
    assert int(hits1) == 1 and path0 == path1
    # silu(2) * 1 * 0.5
    assert abs(float(z1) - 2 / (1 + np.exp(-2)) * 0.5) < 1e-6
    with open(path1) as f:
        assert 'kernel sources ' + _omp_launch._kernel_fingerprint(
            __import__('mmssm.ops._mixer_numba', fromlist=['gate']).gate) \
            in f.read()
