"""torch.compile and torch.export see the scan as one custom op.

While compiling or exporting, the scan's core runs through
``mmssm::scan_core`` (:mod:`mmssm.ops.scan_custom_op`) instead of the
``autograd.Function`` whose numba kernels dynamo cannot trace. Checked here:
the op's registration (torch.library.opcheck: schema, fake tensors,
autograd), its values and gradients against the readable reference, and
whole backbones compiled with ``fullgraph=True`` (no graph break) or exported,
giving the eager outputs (and gradients for Vim).
"""
import warnings

import pytest
import torch

from mmssm.models.backbones import GroupMamba, MambaOut, MambaVision, Vim
from mmssm.ops import selective_scan_ref
from mmssm.ops.scan_custom_op import scan_core

from scan_testutils import make_inputs


def _core_inputs(seed=0):
    """Core op inputs: dt already positive, B/C grouped (B, G, N, L), two
    channel chunks scanned in different orders."""
    t = make_inputs(2, 8, 12, 4, groups=2, seed=seed, with_z=False)
    dt = torch.nn.functional.softplus(t['delta'].detach())
    perm = torch.stack([torch.arange(12), torch.arange(12).flip(0)])
    return (t['u'].detach(), dt, t['A'].detach(), t['B'].detach(),
            t['C'].detach(), perm)


def test_scan_core_op_registration():
    u, dt, A, B, C, perm = _core_inputs()
    args = [x.requires_grad_() if x.is_floating_point() else x
            for x in (u, dt, A, B, C, perm)] + ['cpu', 's:numba']
    torch.library.opcheck(scan_core, args)


def test_scan_core_matches_reference_values_and_gradients():
    u, dt, A, B, C, perm = (x.requires_grad_() if x.is_floating_point() else x
                            for x in _core_inputs(seed=3))
    y, last = scan_core(u, dt, A, B, C, perm, 'cpu', 's:numba')
    # the reference with the same orders: channel chunk 0 forward, chunk 1
    # reverse (B/C of group g for channels [4g, 4g + 4))
    leaves = [u, dt, A, B, C]
    gy, glast = torch.randn_like(y), torch.randn_like(last)
    grads = torch.autograd.grad((y, last), leaves, (gy, glast))
    ref_leaves = [x.detach().clone().requires_grad_() for x in leaves]
    ry, rlast = selective_scan_ref(*ref_leaves[:5], return_last_state=True,
                                   order=['forward', 'reverse'])
    ref_grads = torch.autograd.grad((ry, rlast), ref_leaves, (gy, glast))
    torch.testing.assert_close(y, ry, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last, rlast, rtol=1e-5, atol=1e-5)
    for name, g, r in zip('u dt A B C'.split(), grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5, msg=name)
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        scan_core(*_core_inputs(), 'cuda', '')


def _outputs(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _tiny_vim():
    return Vim(arch=dict(embed_dims=32, num_layers=2, d_state=4),
               img_size=64, out_type='raw')


def _tiny_vim_reg():
    # Mamba-Reg: the register layout is traced too (it once graph-broke on
    # torch.nonzero)
    return Vim(arch=dict(embed_dims=32, num_layers=2, d_state=4),
               img_size=64, num_registers=3, out_type='raw')


def _tiny_groupmamba():
    return GroupMamba(arch=dict(embed_dims=[16, 32, 48, 64],
                                depths=[1, 1, 1, 1], mlp_ratios=[2, 2, 2, 2],
                                stem_channels=8))


def _tiny_mambavision():
    return MambaVision(arch=dict(dim=16, in_dim=8, depths=[1, 2, 3, 2],
                                 num_heads=[1, 2, 2, 4], layer_scale=0.5,
                                 window_size=[8, 8, 4, 3]))


def _tiny_gmambavision(attn_type):
    # the seed-002 options: shifted-window masks or the relative bias,
    # registers, attention pooling between the levels
    return lambda: MambaVision(
        arch=dict(dim=16, in_dim=8, depths=[1, 2, 4, 2],
                  num_heads=[1, 2, 2, 4], layer_scale=0.5,
                  window_size=[8, 8, 6, 4]),
        attn_type=attn_type, num_registers=2, downsample='attn_pool')


@pytest.mark.parametrize('build,grad', [(_tiny_vim, True),
                                        (_tiny_vim_reg, False),
                                        (_tiny_groupmamba, False),
                                        (lambda: MambaOut(arch='femto'),
                                         False),
                                        (_tiny_mambavision, False),
                                        (_tiny_gmambavision('shifted_window'),
                                         False),
                                        (_tiny_gmambavision('relative'),
                                         False)],
                         ids=['vim', 'vim-reg', 'groupmamba', 'mambaout',
                              'mambavision', 'gmambavision-shifted',
                              'gmambavision-relative'])
def test_compile_fullgraph_equals_eager(build, grad):
    torch.manual_seed(0)
    model = build()
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend='aot_eager')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # dynamo's notes on lru_cache
        with torch.no_grad():
            ref, out = _outputs(model(x)), _outputs(compiled(x))
        for r, o in zip(ref, out):
            # eager no_grad takes the fused CPU path: equal to round-off
            torch.testing.assert_close(o, r, rtol=1e-4, atol=1e-5)
        if not grad:
            return
        grads = []
        for fn in (compiled, model):
            xg = x.clone().requires_grad_()
            sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum()
                for o in _outputs(fn(xg))).backward()
            grads.append(xg.grad)
            param = next(model.parameters())
            grads.append(param.grad.clone())
            model.zero_grad()
    torch.testing.assert_close(grads[0], grads[2], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(grads[1], grads[3], rtol=1e-4, atol=1e-6)
    assert grads[0].abs().max() > 0


def test_export_vim_one_op_per_layer():
    torch.manual_seed(0)
    model = _tiny_vim()
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        program = torch.export.export(model, (x, ))
    scans = [
        n for n in program.graph.nodes
        if n.op == 'call_function' and 'mmssm.scan_core' in str(n.target)
    ]
    assert len(scans) == 2  # one per layer, both directions in one call
    with torch.no_grad():
        ref = _outputs(model(x))
        out = _outputs(program.module()(x))
    for r, o in zip(ref, out):
        torch.testing.assert_close(o, r, rtol=1e-4, atol=1e-5)
