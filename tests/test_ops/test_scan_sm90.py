"""The Triton scan kernels compiled for an H100/H200 (sm_90) without a GPU.

The interpreter tests (``test_selective_scan_triton.py``) check what the
kernels compute; they cannot see what the compiler does with them. Here each
kernel is compiled ahead of time with Triton's bundled ``ptxas`` for sm_90 in
the specialisations the launcher uses (float32 and bfloat16, contiguous and
channels-last strides, the default plan), which catches code that the
interpreter accepts and the compiler rejects, and the forward's resource
usage is read from the cubin (``cuobjdump -res-usage``): no spills to local
memory and no shared memory, i.e. no per-position layout conversion through
shared memory and barriers. That was the state of the first GPU version,
whose ``(channel, state)`` tiles put the channels across the registers of a
thread and cost a shared-memory round trip and a barrier per position; the
state tiles are now stored channel-contiguous, which makes the compiler put
one channel's states in a thread.
"""
import os
import re
import subprocess

import pytest

triton = pytest.importorskip('triton')

if os.environ.get('TRITON_INTERPRET') == '1':
    pytest.skip('the kernels are interpreted functions here',
                allow_module_level=True)


def _aot(fn, constexprs, ptr_dtype, num_warps):
    from triton.backends.compiler import GPUTarget
    sig = {}
    for name in fn.arg_names:
        if name in constexprs:
            sig[name] = 'constexpr'
        elif name.endswith('_ptr'):
            sig[name] = ('*i32' if name in ('perm_ptr', 'kind_ptr') else
                         ptr_dtype if name in ('u_ptr', 'dl_ptr', 'z_ptr',
                                               'b_ptr', 'c_ptr', 'out_ptr',
                                               'go_ptr', 'du_ptr', 'ddl_ptr',
                                               'dz_ptr') else '*fp32')
        else:
            sig[name] = 'i32'
    src = triton.compiler.ASTSource(fn=fn, signature=sig,
                                    constexprs=constexprs)
    return triton.compile(src, target=GPUTarget('cuda', 90, 32),
                          options=dict(num_warps=num_warps))


def _resources(kernel, tmp_path):
    tool = os.path.join(os.path.dirname(triton.__file__), 'backends',
                        'nvidia', 'bin', 'cuobjdump')
    if not os.path.exists(tool):
        pytest.skip('this triton bundles no cuobjdump')
    path = tmp_path / 'k.cubin'
    path.write_bytes(kernel.asm['cubin'])
    out = subprocess.run([tool, '-res-usage', str(path)], capture_output=True,
                         text=True, check=True).stdout
    found = re.search(r'REG:(\d+) STACK:(\d+) SHARED:(\d+)', out)
    assert found, out
    return dict(zip(('regs', 'stack', 'shared'),
                    (int(x) for x in found.groups())))


FLAGS = dict(SOFTPLUS=True, HAS_BIAS=True, HAS_D=True, HAS_Z=True)
#: unit strides of the two layouts (the launcher's specialisation)
LAYOUTS = dict(bdl=dict(su_l=1, sd_l=1, sz_l=1, sb_l=1, sc_l=1),
               cl=dict(su_d=1, sd_d=1, sz_d=1, sb_n=1, sc_n=1))


@pytest.mark.parametrize('dtype', ['fp32', 'bf16'])
@pytest.mark.parametrize('layout', ['bdl', 'cl'])
def test_forward_compiles_without_spills_or_shared_memory(
        dtype, layout, tmp_path):
    from mmssm.kernels import selective_scan as ks
    plan = ks.plan_scan(8, 1536, 4096, 16, 1, 1, __import__('torch').device(
        'cpu'))
    strides = dict(LAYOUTS[layout])
    strides['so_' + ('l' if layout == 'bdl' else 'd')] = 1
    for unroll in (1, 4):
        kernel = _aot(ks._fwd_kernel,
                      dict(N=16, NP=16, BLOCK_D=plan['block_d'],
                           CHUNK=plan['chunk'], UNROLL=unroll, WRITE_Y=True,
                           **FLAGS, **strides), '*' + dtype,
                      plan['num_warps'])
        res = _resources(kernel, tmp_path)
        assert res['stack'] == 0 and res['shared'] == 0, (unroll, res)
        assert res['regs'] <= 128, (unroll, res)


@pytest.mark.parametrize('dtype', ['fp32', 'bf16'])
def test_backward_kernels_compile(dtype, tmp_path):
    """Both backward kernels, default plans, contiguous strides: they
    compile, and the sequential one does not spill."""
    import torch

    from mmssm.kernels import selective_scan as ks
    strides = dict(LAYOUTS['bdl'], si_l=1)
    cpu = torch.device('cpu')
    scan = ks.plan_scan(8, 1536, 4096, 16, 1, 1, cpu)
    kernel = _aot(ks._bwd_kernel,
                  dict(N=16, NP=16, BLOCK_D=scan['bwd_block_d'],
                       CHUNK=scan['chunk'], GRADS=True, **FLAGS, **strides),
                  '*' + dtype, scan['bwd_num_warps'])
    assert kernel.asm['cubin']
    seq = ks.plan_scan(8, 1536, 4096, 16, 1, 1, cpu, bwd='seq')
    kernel = _aot(ks._bwd_seq_kernel,
                  dict(N=16, NP=16, BLOCK_D=seq['bwd_block_d'],
                       CHUNK=seq['chunk'], UNROLL=seq['unroll'], GRADS=True,
                       **FLAGS, **strides), '*' + dtype,
                  seq['bwd_num_warps'])
    assert _resources(kernel, tmp_path)['stack'] == 0
