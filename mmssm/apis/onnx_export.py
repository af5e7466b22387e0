"""ONNX export of mmssm models (``tools/deployment/pytorch2onnx.py``).

What is exported:

* an mmpretrain classifier config: the whole classifier, image -> class
  scores (``model(x, mode='tensor')``);
* an mmdet/mmseg config, or any config with ``backbone_only=True``: the
  backbone, image -> its feature maps (the detection/segmentation heads and
  their post-processing are not exported).

How: ``torch.onnx.export(..., dynamo=True)`` (torch.export, then ONNX with
onnxscript), with a dynamic batch dimension and a fixed input size. While
exporting, every selective scan takes the portable ``impl='chunked'`` path
(:mod:`mmssm.ops.scan_chunked`: standard operators only; the CPU and Triton
kernels are opaque to ONNX), which computes the same scan to float32
round-off. The example input has batch 2: torch.export specialises size-1
dimensions, which would fix the batch at 1.

:func:`verify_onnx` runs the file with onnxruntime (CPU) and compares it with
the PyTorch model in eager mode (its default scan path).
"""
import contextlib
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from .runner_utils import build_model

__all__ = ['export_target', 'export_onnx', 'verify_onnx', 'time_onnx']


class _Outputs(nn.Module):
    """``module(x)`` as a tuple of tensors (``mode='tensor'`` for
    classifiers)."""

    def __init__(self, module: nn.Module, classifier: bool):
        super().__init__()
        self.module = module
        self.classifier = classifier

    def forward(self, x):
        out = self.module(x, mode='tensor') if self.classifier \
            else self.module(x)
        if isinstance(out, torch.Tensor):
            return (out, )
        return tuple(out)


def _is_classifier(model: nn.Module) -> bool:
    return any(
        base.__module__.startswith('mmpretrain')
        and base.__name__.endswith('Classifier')
        for base in type(model).__mro__)


def export_target(model: nn.Module,
                  backbone_only: bool = False) -> Tuple[nn.Module, str]:
    """The module to export and what it is (``'classifier'`` or
    ``'backbone'``); see the module docstring."""
    if _is_classifier(model) and not backbone_only:
        return _Outputs(model, classifier=True).eval(), 'classifier'
    backbone = getattr(model, 'backbone', None)
    if backbone is None:
        if hasattr(model, 'data_preprocessor'):  # a task model
            raise ValueError(f'{type(model).__name__} has no `backbone` to '
                             'export')
        backbone = model  # a backbone given as it is
    return _Outputs(backbone, classifier=False).eval(), 'backbone'


@contextlib.contextmanager
def _scan_impl(impl: str):
    old = os.environ.get('MMSSM_SCAN_IMPL')
    os.environ['MMSSM_SCAN_IMPL'] = impl
    try:
        yield
    finally:
        if old is None:
            del os.environ['MMSSM_SCAN_IMPL']
        else:
            os.environ['MMSSM_SCAN_IMPL'] = old


def export_onnx(module: nn.Module,
                shape: Sequence[int],
                output_file: str,
                in_channels: int = 3,
                opset: Optional[int] = None) -> str:
    """Export ``module`` (image ``(N, C, H, W)`` -> tuple of tensors) to
    ``output_file`` with a dynamic batch; returns the path.

    The file is written next to its final name and moved there when
    complete, so an interrupted export leaves no truncated ``.onnx``.
    """
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f'export_onnx: shape must be (H, W), got {shape}')
    height, width = int(shape[0]), int(shape[1])
    example = torch.randn(2, in_channels, height, width)
    batch = torch.export.Dim('batch', min=1, max=4096)
    kwargs = {} if opset is None else dict(opset_version=opset)
    with _scan_impl('chunked'), torch.no_grad():
        program = torch.onnx.export(
            module, (example, ),
            dynamo=True,
            input_names=['image'],
            dynamic_shapes=({0: batch}, ),
            verbose=False,
            **kwargs)
    folder = os.path.dirname(os.path.abspath(output_file))
    os.makedirs(folder, exist_ok=True)
    tmp = output_file + '.partial'
    program.save(tmp)
    os.replace(tmp, output_file)
    return output_file


def _session(path: str):
    import onnxruntime as ort
    return ort.InferenceSession(path, providers=['CPUExecutionProvider'])


def verify_onnx(module: nn.Module,
                path: str,
                shape: Sequence[int],
                batches: Sequence[int] = (1, 3),
                in_channels: int = 3,
                seed: int = 0) -> List[Dict[str, Union[int, float]]]:
    """Relative error of the ONNX file against ``module`` in eager mode.

    For each batch size a random image batch goes through onnxruntime and
    through ``module``; returns one dict per (batch, output):
    ``max_abs_err / max_abs_ref``.
    """
    session = _session(path)
    gen = torch.Generator().manual_seed(seed)
    results = []
    for batch in batches:
        x = torch.randn(batch, in_channels, *shape, generator=gen)
        outs = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        with torch.no_grad():
            refs = module(x)
        if len(outs) != len(refs):
            raise RuntimeError(f'{path}: {len(outs)} ONNX outputs, '
                               f'{len(refs)} PyTorch outputs')
        for i, (o, r) in enumerate(zip(outs, refs)):
            r = r.numpy()
            if o.shape != r.shape:
                raise RuntimeError(f'{path}: output {i} has shape {o.shape} '
                                   f'in ONNX Runtime, {r.shape} in PyTorch')
            err = float(np.abs(o - r).max() / max(np.abs(r).max(), 1e-12))
            results.append(dict(batch=batch, output=i, rel_err=err))
    return results


def time_onnx(module: nn.Module,
              path: str,
              shape: Sequence[int],
              runs: int = 5,
              in_channels: int = 3) -> Dict[str, float]:
    """Median seconds of one batch-1 forward in onnxruntime and in PyTorch
    (eager, ``torch.no_grad()``, its default scan path), after a warm-up."""
    session = _session(path)
    x = torch.randn(1, in_channels, *shape)
    feed = {session.get_inputs()[0].name: x.numpy()}

    def median(fn):
        fn()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    with torch.no_grad():
        torch_s = median(lambda: module(x))
    ort_s = median(lambda: session.run(None, feed))
    return dict(onnxruntime_s=ort_s, pytorch_s=torch_s)
