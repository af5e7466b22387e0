"""ONNX export (tools/deployment/pytorch2onnx.py, mmssm.apis.onnx_export):
every family's backbone at two input sizes, run in onnxruntime, equals
PyTorch's eager output; the CLI exports a classifier with its checkpoint and
refuses another family's checkpoint."""
import os.path as osp
import subprocess
import sys

import pytest
import torch

onnx = pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')
pytest.importorskip('onnxscript')

from mmssm.apis.onnx_export import (export_onnx, export_target,  # noqa: E402
                                    verify_onnx)
from mmssm.models.backbones import (GroupMamba, MambaOut,  # noqa: E402
                                    MambaVision, Vim)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO, 'tools', 'deployment', 'pytorch2onnx.py')


def _vim():
    return Vim(arch=dict(embed_dims=32, num_layers=2, d_state=4),
               img_size=64, out_type='raw', final_norm=True)


def _groupmamba():
    return GroupMamba(arch=dict(embed_dims=[16, 32, 48, 64],
                                depths=[1, 1, 1, 1], mlp_ratios=[2, 2, 2, 2],
                                stem_channels=8))


def _mambaout():
    return MambaOut(arch='femto', out_indices=(0, 1, 2, 3))


def _mambavision():
    # every kind of block (conv, mixer, attention), layer scale, windows
    # smaller and larger than the maps
    return MambaVision(arch=dict(dim=16, in_dim=8, depths=[1, 2, 3, 2],
                                 num_heads=[1, 2, 2, 4], layer_scale=0.5,
                                 window_size=[8, 8, 4, 3]))


def _gmambavision():
    # the seed-002 options: shifted-window masks, registers, attention pooling
    return MambaVision(arch=dict(dim=16, in_dim=8, depths=[1, 2, 4, 2],
                                 num_heads=[1, 2, 2, 4], layer_scale=0.5,
                                 window_size=[8, 8, 6, 4]),
                       attn_type='shifted_window', num_registers=2,
                       downsample='attn_pool')


@pytest.mark.parametrize('build', [_vim, _groupmamba, _mambaout,
                                   _mambavision, _gmambavision],
                         ids=['vim', 'groupmamba', 'mambaout',
                              'mambavision', 'gmambavision'])
def test_backbone_onnx_equals_pytorch(build, tmp_path):
    torch.manual_seed(0)
    module, kind = export_target(build())
    assert kind == 'backbone'
    # two sizes: square, and one that is not a multiple of 32 (padding,
    # position-embedding resize)
    for shape in ((64, 64), (48, 80)):
        path = export_onnx(module, shape, str(tmp_path / f'{shape[0]}.onnx'))
        graph = onnx.load(path).graph
        # standard operators only: the scan went through the portable path
        domains = {node.domain for node in graph.node}
        assert domains <= {'', 'ai.onnx'}, domains
        # the batch dimension is dynamic: batch 1 and 3 both run
        results = verify_onnx(module, path, shape, batches=(1, 3))
        assert {r['batch'] for r in results} == {1, 3}
        worst = max(r['rel_err'] for r in results)
        assert worst < 1e-4, results


def test_cli_classifier_with_checkpoint(tmp_path):
    cfg = osp.join(REPO, 'configs', 'mambaout',
                   'mambaout-femto_32xb128_in1k.py')
    from mmssm.apis import build_model
    torch.manual_seed(1)
    model = build_model(cfg)
    ckpt = tmp_path / 'cls.pth'
    torch.save({'state_dict': model.state_dict()}, ckpt)
    out = tmp_path / 'cls.onnx'
    run = subprocess.run(
        [sys.executable, TOOL, cfg, str(ckpt), '--shape', '64', '64',
         '--verify', '--output-file', str(out)],
        capture_output=True, text=True, timeout=900, cwd=REPO)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert 'exported the classifier' in run.stdout
    assert 'verify: OK' in run.stdout
    # the file holds the checkpoint's weights: its scores equal the model's
    import onnxruntime as ort
    session = ort.InferenceSession(str(out),
                                   providers=['CPUExecutionProvider'])
    x = torch.randn(2, 3, 64, 64)
    scores = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        ref = model(x, mode='tensor')
    torch.testing.assert_close(torch.from_numpy(scores), ref, rtol=1e-4,
                               atol=1e-5)
    # another family's weights: one message naming the problem, no file
    wrong = tmp_path / 'vim.pth'
    torch.save({'state_dict': _vim().state_dict()}, wrong)
    bad_out = tmp_path / 'bad.onnx'
    run = subprocess.run(
        [sys.executable, TOOL, cfg, str(wrong), '--shape', '64', '64',
         '--output-file', str(bad_out)],
        capture_output=True, text=True, timeout=900, cwd=REPO)
    assert run.returncode != 0
    assert 'does not fit' in run.stderr and 'Traceback' not in run.stderr
    assert not bad_out.exists()
