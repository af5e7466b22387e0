"""Selective-scan Triton kernels vs the reference under TRITON_INTERPRET=1.

Run as a script by ``test_selective_scan_triton.py`` in a subprocess, because
``TRITON_INTERPRET`` must be set before triton is imported. Prints the case
names as one JSON line, then one JSON line per case with its status (see
``main``); exits 1 when a case fails. The test counts the results itself.
"""
import json
import os
import sys

os.environ['TRITON_INTERPRET'] = '1'

import torch  # noqa: E402
from scan_testutils import compare, make_inputs, run_scan  # noqa: E402

from mmssm.ops import (resolve_scan_order, selective_scan,  # noqa: E402
                       selective_scan_ref)
from mmssm.ops.scan_triton import selective_scan_triton  # noqa: E402


def triton_scan(block_d=None, block_l=8, split_l=None):
    """The kernels with small tiles (L is never a multiple of 8 below) and,
    with ``split_l``, in split-L mode."""

    def fn(u, delta, A, B, C, D, z, bias, softplus, last, order=None,
           grid=None):
        perm = resolve_scan_order(order, u.shape[-1], u.shape[1], grid)
        return selective_scan_triton(u, delta, A, B, C, D, z, bias, softplus,
                                     last, perm, block_d=block_d,
                                     block_l=block_l, split_l=split_l)

    return fn


GM = ['row', 'col', 'row_reverse', 'col_reverse']
# (name, make_inputs kwargs, run kwargs, block_d[, split_l])
CASES = [
    ('fwd_n16_all_options', dict(dim=8, length=21, nstate=16), {}, None),
    ('fwd_n1_groups', dict(dim=8, length=21, nstate=1, groups=2), {}, None),
    ('no_options', dict(dim=6, length=13, nstate=4, with_d=False,
                        with_z=False, with_bias=False),
     dict(delta_softplus=False), None),
    ('reverse_groups', dict(dim=8, length=20, nstate=4, groups=4),
     dict(order='reverse'), 2),
    ('col_grid', dict(dim=4, length=20, nstate=2),
     dict(order='col_reverse', grid=(4, 5)), None),
    ('groupmamba_4_orders_n1', dict(dim=12, length=20, nstate=1),
     dict(order=GM, grid=(5, 4)), None),
    ('orders_blocks_straddle_chunks', dict(dim=12, length=19, nstate=3,
                                           groups=3),
     dict(order=[torch.randperm(19, generator=torch.Generator().manual_seed(
         1)), 'reverse']), 4),
    # Split-L mode: 3 tiles of 8 in 3 splits (one tile each, the last one
    # partial), and 6 tiles in 2 splits of 3 with the GroupMamba orders.
    ('split3_n16_all_options', dict(dim=8, length=21, nstate=16), {}, None,
     3),
    ('split2_groupmamba_orders_n1', dict(dim=8, length=45, nstate=1,
                                         groups=2),
     dict(order=GM, grid=(5, 9)), None, 2),
    ('split_reverse_blocks_straddle', dict(dim=12, length=30, nstate=3,
                                           groups=3),
     dict(order='reverse'), 4, 4),
    # More splits than tiles: capped to one tile per split.
    ('split_capped_no_options', dict(dim=6, length=13, nstate=4,
                                     with_d=False, with_z=False,
                                     with_bias=False),
     dict(delta_softplus=False), None, 9),
]


def _table_case(index, mk, kw, block_d, split_l):
    """A case of ``CASES``: inputs seeded with its index."""

    def run():
        t = make_inputs(batch=2, seed=index, **mk)
        want = run_scan(selective_scan_ref, t, **kw)
        got = run_scan(triton_scan(block_d, split_l=split_l), t, **kw)
        return compare(got, want)

    return run


def bf16():
    """bf16 inputs: output in bf16, state in float32, looser tolerance."""
    t = make_inputs(1, 8, 20, 4, 2, dtype=torch.bfloat16, seed=9)
    got = run_scan(triton_scan(), t)
    t32 = {k: None if v is None else v.detach().float().requires_grad_()
           for k, v in t.items()}
    want = run_scan(selective_scan_ref, t32)
    want = {k: None if v is None else v.to(got[k].dtype)
            for k, v in want.items()}
    bad = compare(got, want, rtol=3e-2, atol=5e-2)
    if got['y'].dtype != torch.bfloat16:
        bad.append(f"y dtype {got['y'].dtype}")
    return bad


def public_op_impl_triton():
    """The public op dispatches CPU tensors to Triton under the
    interpreter; a first call under ``torch.inference_mode()`` (which
    resolves and caches the order) does not break a later training call
    (no inference tensor is kept for its backward)."""
    t = make_inputs(1, 4, 10, 2, seed=3)
    with torch.inference_mode():
        selective_scan(*(t[k].detach() for k in ('u', 'delta', 'A', 'B',
                                                   'C')), impl='triton',
                       order='reverse')
    got = run_scan(lambda *a, **k: selective_scan(*a, impl='triton', **k), t,
                   order='reverse')
    return compare(got, run_scan(selective_scan_ref, t, order='reverse'))


def public_op_split_l():
    """... and passes split_l on (L = 300: 5 tiles of 64, 3 splits)."""
    t = make_inputs(1, 4, 300, 2, seed=4)
    got = run_scan(
        lambda *a, **k: selective_scan(*a, impl='triton', split_l=3, **k), t)
    return compare(got, run_scan(selective_scan_ref, t))


def shared_gate_strided_inputs():
    """A gate shared by two channel chunks (``z`` ``(B, D/2, L)``) and
    ``u``/``delta``/``B``/``C`` as transposed views of ``(B, L, .)``
    tensors (read through their strides, not copied; the outputs come back
    channels-last), against the reference with the gate repeated and
    contiguous inputs."""
    t = make_inputs(2, 8, 19, 4, groups=2, seed=11)
    zs = t['z'][:, :4].detach().clone().requires_grad_()
    kw = dict(order=['forward', 'reverse'])

    def strided(x):  # same values, (B, ..., L) seen through a transpose
        return x.detach().transpose(-1, -2).contiguous().transpose(
            -1, -2).requires_grad_()

    ts = {k: (strided(v) if k in ('u', 'delta', 'B', 'C') else v)
          for k, v in t.items()}
    ts['z'] = zs
    bad = []
    if ts['u'].is_contiguous() or ts['B'].is_contiguous():
        bad.append('inputs are not strided views')
    got = run_scan(triton_scan(), ts, **kw)
    # channels-last in, channels-last out (and du/ddelta), written in place
    for name in ('y', 'du', 'ddelta'):
        if got[name].stride(1) != 1:
            bad.append(f'{name} is not channels-last: {got[name].stride()}')
    tr = dict(t, z=zs.detach().repeat(1, 2, 1).requires_grad_())
    want = run_scan(selective_scan_ref, tr, **kw)
    want['dz'] = want['dz'].view(2, 2, 4, 19).sum(1)
    return bad + compare(got, want)


def core_function_custom_op_path():
    """The core Function (no bias/softplus/D/gate in the kernel: what the
    compiled custom op runs) with the shared prologue and epilogue."""
    from mmssm.ops.scan_common import run_scan_function
    from mmssm.ops.scan_triton import SelectiveScanTritonFunction
    t = make_inputs(2, 8, 21, 16, seed=12)
    kw = dict(order='col', grid=(3, 7))

    def fn(u, delta, A, B, C, D, z, bias, softplus, last, order, grid):
        perm = resolve_scan_order(order, u.shape[-1], u.shape[1], grid)
        return run_scan_function(SelectiveScanTritonFunction, (None, 8, 2),
                                 u, delta, A, B, C, D, z, bias, softplus,
                                 last, perm)

    return compare(run_scan(fn, t, **kw), run_scan(selective_scan_ref, t,
                                                   **kw))


def other_plans():
    """The associative-scan backward kernel (``bwd='scan'``, atomic dB/dC)
    in split mode, and unroll factors that do not divide the chunk (3) or
    are 1, with a chunk that does not divide L."""
    t = make_inputs(2, 8, 45, 16, groups=2, seed=14)
    kw = dict(order=['reverse', 'col'], grid=(5, 9))
    want = run_scan(selective_scan_ref, t, **kw)
    bad = []
    for plan, split in ((dict(bwd='scan'), 3), (dict(unroll=3), 2),
                        (dict(unroll=1, bwd_block_d=2), None)):

        def fn(u, delta, A, B, C, D, z, bias, softplus, last, order, grid):
            perm = resolve_scan_order(order, u.shape[-1], u.shape[1], grid)
            return selective_scan_triton(u, delta, A, B, C, D, z, bias,
                                         softplus, last, perm, block_l=16,
                                         split_l=split, plan=plan)

        bad += [f'{plan}: {e}' for e in compare(run_scan(fn, t, **kw), want)]
    return bad


def long_default_chunk():
    """The default plan (chunk 64 for N = 16) over several chunks."""
    t = make_inputs(1, 4, 150, 16, seed=13)
    got = run_scan(lambda *a, **k: selective_scan(*a, impl='triton', **k), t,
                   order='reverse')
    return compare(got, run_scan(selective_scan_ref, t, order='reverse'))


def all_cases():
    """[(name, function returning the list of mismatches)], in run order."""
    cases = [(name, _table_case(i, mk, kw, block_d, (split or [None])[0]))
             for i, (name, mk, kw, block_d, *split) in enumerate(CASES)]
    return cases + [(fn.__name__, fn)
                    for fn in (bf16, public_op_impl_triton, public_op_split_l,
                               shared_gate_strided_inputs,
                               core_function_custom_op_path,
                               long_default_chunk, other_plans)]


def main():
    """Print the case names as one JSON line, then one JSON line per case
    (``case``, ``ok``, ``errors``; an exception counts as a failure and is
    reported, the remaining cases still run). Returns 1 if any case failed."""
    cases = all_cases()
    print(json.dumps({'cases': [name for name, _ in cases]}), flush=True)
    failed = 0
    for name, fn in cases:
        try:
            bad = fn()
        except Exception as exc:  # reported as a failed case
            bad = [f'{type(exc).__name__}: {exc}']
        failed += bool(bad)
        print(json.dumps({'case': name, 'ok': not bad, 'errors': bad}),
              flush=True)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
