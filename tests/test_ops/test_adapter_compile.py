"""torch.compile of the ViT-Adapter (``PlainAdapter`` around a tiny Vim) on
CPU gives the eager feature maps.

Without registers the whole adapter compiles with ``fullgraph=True``: the
deformable attention gets its level sizes as Python ints
(``PlainAdapter.deform_inputs``), so neither its token count nor mmcv's
PyTorch sampling (``value.split`` per level) reads a size back from tensor
data (before, ``int(spatial_shapes.prod(1).sum())`` and mmcv's split over a
shape tensor broke the graph in every injector and extractor: 23 breaks for
this 4-interaction adapter with registers).

With registers (Mamba-Reg) it compiles with ``fullgraph=True`` too: Vim's
register layout (``mmssm/models/backbones/vim.py``, ``_reg_layout_cpu``)
places the patches in closed form (it used ``torch.nonzero``, a
data-dependent output shape, and broke the graph in ``prepare_tokens`` and
``token_layout``).

Backend ``aot_eager`` as in ``test_scan_compile.py`` (dynamo + AOT autograd
without inductor's C++ compilation); ~10 s per case on 2 cores.
"""
import warnings

import pytest
import torch

from mmssm.models.backbones import PlainAdapter


def _tiny_adapter(num_registers):
    torch.manual_seed(0)
    model = PlainAdapter(
        backbone=dict(
            type='Vim',
            arch=dict(embed_dims=32, num_layers=4, d_state=4),
            img_size=64,
            num_registers=num_registers),
        conv_inplane=8,
        deform_num_heads=4,
        # a non-zero injection, so that the adapter changes the tokens
        init_values=0.5,
        norm_cfg=dict(type='BN'))
    # data-dependent sampling offsets (~0.6 cells) and attention weights, as
    # after training (the init predicts fixed ones); at 0.5 instead of 0.1
    # the 4 interactions amplify round-off to ~1e-3 (chaotic sampling)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'sampling_offsets' in name or 'attention_weights' in name:
                p.normal_(0, 0.1)
    return model.eval()


@pytest.mark.parametrize('num_registers,fullgraph', [(0, True), (2, True)],
                         ids=['vim-fullgraph', 'vim-reg-fullgraph'])
def test_adapter_compile_equals_eager(num_registers, fullgraph):
    model = _tiny_adapter(num_registers)
    # 80 x 112: padded to 96 x 128 inside, outputs cropped back
    x = torch.randn(2, 3, 80, 112)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=fullgraph, backend='aot_eager')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # dynamo's notes on lru_cache
        with torch.no_grad():
            ref, out = model(x), compiled(x)
    assert len(out) == len(ref) == 4
    for stride, r, o in zip((4, 8, 16, 32), ref, out):
        assert o.shape == r.shape == (2, 32, -(-80 // stride),
                                      -(-112 // stride))
        torch.testing.assert_close(o, r, rtol=1e-4, atol=1e-4)
    # the injection is live: the adapter's maps depend on the deformable
    # sampling (zeroing the injectors' gamma changes the outputs)
    with torch.no_grad():
        for block in model.interactions:
            block.injector.gamma.zero_()
        plain = model(x)
    assert (plain[2] - ref[2]).abs().max() > 1e-3
