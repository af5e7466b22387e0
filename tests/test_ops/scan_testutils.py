"""Helpers shared by the selective-scan tests (CPU and interpreted Triton)."""
import torch

# mamba_ssm's own tolerances for float32 (tests/ops/test_selective_scan.py).
RTOL, ATOL = 6e-4, 2e-3
NAMES = ('y', 'last_state', 'du', 'ddelta', 'dA', 'dB', 'dC', 'dD', 'dz',
         'ddelta_bias')


def make_inputs(batch=2, dim=8, length=20, nstate=3, groups=None,
                dtype=torch.float32, seed=0, with_d=True, with_z=True,
                with_bias=True):
    """Random scan inputs with ``requires_grad``; absent options are None."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).to(dtype)

    bc_shape = ((batch, nstate, length) if groups is None else
                (batch, groups, nstate, length))
    tensors = dict(
        u=rnd(batch, dim, length),
        delta=rnd(batch, dim, length, scale=0.5),
        A=(-torch.rand(dim, nstate, generator=gen) * 2 - 0.1).to(dtype),
        B=rnd(*bc_shape),
        C=rnd(*bc_shape),
        D=rnd(dim) if with_d else None,
        z=rnd(batch, dim, length) if with_z else None,
        delta_bias=rnd(dim, scale=0.3) if with_bias else None)
    for x in tensors.values():
        if x is not None:
            x.requires_grad_(True)
    return tensors


def run_scan(fn, tensors, delta_softplus=True, seed=1, **kwargs):
    """Forward with the last state, backward with random cotangents.

    Returns a dict name -> tensor of the outputs and of every input gradient
    (None for absent inputs).
    """
    for x in tensors.values():
        if x is not None:
            x.grad = None
    t = tensors
    y, last = fn(t['u'], t['delta'], t['A'], t['B'], t['C'], t['D'], t['z'],
                 t['delta_bias'], delta_softplus, True, **kwargs)
    gen = torch.Generator().manual_seed(seed)
    gy = torch.randn(y.shape, generator=gen).to(y.dtype)
    glast = torch.randn(last.shape, generator=gen)
    ((y.float() * gy.float()).sum() +
     (last.float() * glast).sum()).backward()
    out = dict(y=y.detach(), last_state=last.detach())
    for name, key in (('du', 'u'), ('ddelta', 'delta'), ('dA', 'A'),
                      ('dB', 'B'), ('dC', 'C'), ('dD', 'D'), ('dz', 'z'),
                      ('ddelta_bias', 'delta_bias')):
        x = tensors[key]
        out[name] = None if x is None else x.grad.detach().clone()
    return out


def compare(got, want, rtol=RTOL, atol=ATOL):
    """Return a list of 'name: max error' strings for mismatching entries."""
    bad = []
    for name in NAMES:
        g, w = got[name], want[name]
        if (g is None) != (w is None):
            bad.append(f'{name}: present in one result only')
            continue
        if g is None:
            continue
        if g.shape != w.shape or g.dtype != w.dtype:
            bad.append(f'{name}: shape/dtype {tuple(g.shape)} {g.dtype} vs '
                       f'{tuple(w.shape)} {w.dtype}')
            continue
        g, w = g.double(), w.double()
        if not torch.allclose(g, w, rtol=rtol, atol=atol):
            err = (g - w).abs().max().item()
            bad.append(f'{name}: max abs error {err:.3g}')
    return bad
