"""Parameters and FLOPs of an mmssm model (detector, segmentor, classifier or
backbone), per module, counting the selective scan.

Usage::

    python tools/analysis_tools/get_flops.py CONFIG --shape H W \
        [--backbone-only] [--max-depth 3] [--json out.json]
    python tools/analysis_tools/get_flops.py --backbone MambaOut --arch tiny \
        --shape 224 224

FLOPs here are **multiply-adds** (one fused multiply-add = 1), the convention
of the papers (Swin, VMamba, GroupMamba, MambaOut, Vim) and of mmengine's
jit-based :class:`~mmengine.analysis.FlopAnalyzer`, which this tool uses (not
mmseg 1.2.2's ``get_flops.py``, which fails on mmengine >= 0.7.3). The model
runs once on a random ``(1, 3, H, W)`` input in ``mode='tensor'`` (mmdet:
backbone, neck, RPN with its proposals (up to ``test_cfg.rpn.max_per_img``),
box head on every proposal and mask head on the first 100, as
``TwoStageDetector._forward``; mmseg: backbone, neck, decode and auxiliary
heads; mmpretrain: backbone, neck, head).

mmengine counts convolutions, linear layers, matmuls/einsums, norms (2 per
element, 1 per element for BatchNorm at inference), bilinear upsampling (4 per
output) and pooling; elementwise ops and activations are not counted. Custom
``autograd.Function``\\ s are invisible to it (they trace as
``prim::PythonOp.<Name>``); this tool adds handles:

* the selective scan (``SelectiveScan*Function``) with input ``u`` of shape
  ``(B, D, L)`` and state size ``N`` (``A`` is ``(D, N)``) counts
  ``B * D * L * (4 * N + 1)``: per ``(b, d, l, n)`` the discretisation
  ``delta * A`` (1; the ``exp`` is not counted, like every activation), the
  input term ``(delta * u) * B`` (1, plus ``delta * u`` once per
  ``(b, d, l)``), the state update ``h = dA * h + dBu`` (1) and the output
  contraction ``y += C * h`` (1). The ``D`` skip, softplus and ``z`` gate are
  elementwise and not counted;
* mmcv's ``RoIAlign`` counts 4 multiply-adds (one bilinear sample) per
  sampling point: ``output.numel() * s * s * 4`` with ``s`` the sampling ratio
  (2 when adaptive, ``sampling_ratio=0``);
* NMS (mmcv ``NMSop``) counts 0.
"""
import argparse
import json
import os.path as osp
import sys
import warnings
from functools import partial
from typing import Any, Dict, List, Sequence, Union

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from mmengine.analysis import FlopAnalyzer, parameter_count  # noqa: E402
from mmengine.analysis.jit_handles import get_shape  # noqa: E402
from mmengine.config import Config  # noqa: E402

import mmssm  # noqa: E402,F401
from mmssm.apis import build_model  # noqa: E402,F401

__all__ = [
    'scan_flop_jit', 'roi_align_flop_jit', 'CUSTOM_OP_HANDLES',
    'selective_scan_flops', 'build_model', 'count_flops', 'get_flops'
]


def selective_scan_flops(batch: int, dim: int, length: int,
                         d_state: int) -> int:
    """Multiply-adds of one selective scan: ``B * D * L * (4 * N + 1)``."""
    return batch * dim * length * (4 * d_state + 1)


def scan_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """FLOP handle of the selective scan's ``prim::PythonOp``.

    ``u`` is the first 3-D tensor input ``(B, D, L)`` and ``A`` the first 2-D
    one ``(D, N)`` (true for mmssm's CPU and Triton functions and mamba-ssm's
    ``SelectiveScanFn``).
    """
    u_shape = a_shape = None
    for val in inputs:
        shape = get_shape(val)
        if shape is None:
            continue
        if len(shape) == 3 and u_shape is None:
            u_shape = shape
        elif len(shape) == 2 and a_shape is None:
            a_shape = shape
    if u_shape is None or a_shape is None:
        raise ValueError('selective scan FLOP handle: could not find u '
                         '(B, D, L) and A (D, N) among the op inputs')
    return selective_scan_flops(u_shape[0], u_shape[1], u_shape[2],
                                a_shape[1])


def roi_align_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """FLOP handle of mmcv's ``RoIAlignFunction``: 4 per sampling point."""
    out_shape = get_shape(outputs[0])
    numel = 1
    for s in out_shape:
        numel *= s
    sampling = 0
    try:
        # scalar args: output_size, spatial_scale, sampling_ratio, ...
        scalars = outputs[0].node().scalar_args()
        sampling = int(scalars[2])
    except Exception:  # noqa: BLE001 (no scalars: adaptive)
        sampling = 0
    if sampling <= 0:
        sampling = 2
    return numel * sampling * sampling * 4


def _zero_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    return 0


#: Handles for custom ops (``prim::PythonOp.<Function name>``).
CUSTOM_OP_HANDLES = {
    'prim::PythonOp.SelectiveScanCPUFunction': scan_flop_jit,
    'prim::PythonOp.SelectiveScanTritonFunction': scan_flop_jit,
    'prim::PythonOp.SelectiveScanFunction': scan_flop_jit,
    'prim::PythonOp.SelectiveScanFn': scan_flop_jit,
    'prim::PythonOp.RoIAlignFunction': roi_align_flop_jit,
    'prim::PythonOp.NMSop': _zero_flop_jit,
}


def _register_scan_functions() -> None:
    """Add a handle for every autograd Function of the scan modules."""
    modules = []
    try:
        from mmssm.ops import scan_cpu
        modules.append(scan_cpu)
    except ImportError:
        pass
    try:
        from mmssm.ops import scan_triton
        modules.append(scan_triton)
    except Exception:  # noqa: BLE001 (no triton on this machine)
        pass
    for module in modules:
        for name, obj in vars(module).items():
            if (isinstance(obj, type)
                    and issubclass(obj, torch.autograd.Function)
                    and 'scan' in name.lower()):
                CUSTOM_OP_HANDLES.setdefault(f'prim::PythonOp.{name}',
                                             scan_flop_jit)


def _task_of(model: nn.Module) -> str:
    module = type(model).__module__
    for task in ('mmdet', 'mmseg', 'mmpretrain'):
        if module.startswith(task):
            return task
    # mmssm subclasses: look at the base classes
    for base in type(model).__mro__:
        for task in ('mmdet', 'mmseg', 'mmpretrain'):
            if base.__module__.startswith(task):
                return task
    return 'backbone'


def _data_samples(task: str, height: int, width: int):
    meta = dict(
        img_shape=(height, width),
        ori_shape=(height, width),
        pad_shape=(height, width),
        batch_input_shape=(height, width),
        scale_factor=(1.0, 1.0))
    if task == 'mmdet':
        from mmdet.structures import DetDataSample
        return [DetDataSample(metainfo=meta)]
    if task == 'mmseg':
        from mmseg.structures import SegDataSample
        return [SegDataSample(metainfo=meta)]
    return None


def count_flops(model: nn.Module,
                inputs: Sequence[torch.Tensor],
                max_depth: int = 3) -> Dict[str, Any]:
    """FLOPs (multiply-adds) and parameters of ``model(*inputs)``.

    Returns:
        dict: ``flops`` (int), ``params`` (int), ``by_module`` (dict of
        module name -> flops), ``by_operator`` (dict), ``unsupported``
        (dict op name -> count of ops that were not counted), ``table`` (str).
    """
    from mmengine.analysis.print_helper import complexity_stats_table
    _register_scan_functions()
    analyzer = FlopAnalyzer(model, tuple(inputs))
    analyzer.set_op_handle(**CUSTOM_OP_HANDLES)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        total = analyzer.total()
        by_module = dict(analyzer.by_module())
        by_operator = dict(analyzer.by_operator())
        unsupported = dict(analyzer.unsupported_ops())
    params = parameter_count(model)['']
    table = complexity_stats_table(
        flops=analyzer, max_depth=max_depth, show_param_shapes=False)
    missed = [k for k in unsupported if 'scan' in k.lower()]
    if missed:
        raise RuntimeError(f'selective scan op(s) {missed} have no FLOP '
                           'handle; add them to CUSTOM_OP_HANDLES')
    return dict(
        flops=int(total),
        params=int(params),
        by_module=by_module,
        by_operator=by_operator,
        unsupported=unsupported,
        table=table)


def get_flops(cfg: Union[str, Config, nn.Module],
              shape: Sequence[int],
              backbone_only: bool = False,
              max_depth: int = 3,
              seed: int = 0) -> Dict[str, Any]:
    """FLOPs and parameters of a config's model (or of its backbone).

    Args:
        cfg (str | Config | nn.Module): Config path, loaded config, or a
            built model / backbone.
        shape (Sequence[int]): Input ``(H, W)``.
        backbone_only (bool): Count ``model.backbone`` alone.
        max_depth (int): Depth of the per-module table.
        seed (int): Seed of the random input.

    Returns:
        dict: see :func:`count_flops`, plus ``task`` and ``shape``.
    """
    height, width = (int(s) for s in shape)
    model = cfg if isinstance(cfg, nn.Module) else build_model(cfg)
    model.eval()
    task = _task_of(model)
    if backbone_only:
        if not hasattr(model, 'backbone'):
            raise ValueError('--backbone-only: the model has no backbone')
        model, task = model.backbone, 'backbone'
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(1, 3, height, width, generator=gen)
    if task in ('mmdet', 'mmseg', 'mmpretrain'):
        forward = model.forward
        model.forward = partial(
            forward, data_samples=_data_samples(task, height, width),
            mode='tensor')
        try:
            res = count_flops(model, (inputs, ), max_depth)
        finally:
            del model.forward
    else:
        res = count_flops(model, (inputs, ), max_depth)
    res.update(task=task, shape=(height, width))
    return res


def _fmt(num: float, unit: str = 'G') -> str:
    div = dict(G=1e9, M=1e6)[unit]
    return f'{num / div:.3f} {unit}'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Parameters and FLOPs (multiply-adds) of an mmssm model, '
        'counting the selective scan')
    parser.add_argument('config', nargs='?', help='config file')
    parser.add_argument(
        '--shape', type=int, nargs=2, default=[224, 224], metavar=('H', 'W'),
        help='input height and width (COCO 1280x800: --shape 800 1280)')
    parser.add_argument('--backbone-only', action='store_true',
                        help='count the config\'s backbone alone')
    parser.add_argument('--backbone', help='a backbone type instead of a '
                        'config (e.g. MambaOut, Vim, GroupMamba)')
    parser.add_argument('--arch', default='tiny', help='arch of --backbone')
    parser.add_argument('--max-depth', type=int, default=3,
                        help='depth of the per-module table')
    parser.add_argument('--json', help='also write the totals to this file')
    args = parser.parse_args(argv)
    if (args.config is None) == (args.backbone is None):
        parser.error('give either CONFIG or --backbone TYPE')
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.backbone:
        from mmengine.registry import MODELS
        target = MODELS.build(dict(type=args.backbone, arch=args.arch))
        name = f'{args.backbone}-{args.arch}'
    else:
        target, name = args.config, args.config
    res = get_flops(target, args.shape, args.backbone_only, args.max_depth)
    print(res['table'])
    height, width = res['shape']
    split = '=' * 60
    print(f'{split}\n{name}\nInput shape: (1, 3, {height}, {width})'
          f'{" (backbone only)" if args.backbone_only else ""}\n'
          f'Flops (multiply-adds): {_fmt(res["flops"])}\n'
          f'Params: {_fmt(res["params"], "M")}')
    scan = sum(v for k, v in res['by_operator'].items() if 'Scan' in k)
    print(f'  of which selective scan: {_fmt(scan)}')
    if res['unsupported']:
        print('Not counted (no FLOP handle): ' + ', '.join(
            f'{k} x{v}' for k, v in sorted(res['unsupported'].items())))
    print(split)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(
                dict(
                    config=name,
                    shape=[height, width],
                    backbone_only=args.backbone_only,
                    flops=res['flops'],
                    params=res['params'],
                    scan_flops=scan,
                    by_operator=res['by_operator'],
                    unsupported=res['unsupported']), f, indent=2)
    return res


if __name__ == '__main__':
    main()
