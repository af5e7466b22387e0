"""Export an mmssm model to ONNX and check it with ONNX Runtime.

Usage::

    python tools/deployment/pytorch2onnx.py CONFIG [CHECKPOINT] --shape H W \\
        [--backbone-only] [--output-file F] [--verify] [--benchmark]

mmpretrain configs export the classifier (image -> class scores); mmdet and
mmseg configs (or ``--backbone-only``) the backbone (image -> feature maps).
The batch dimension is dynamic, the input size fixed (``--shape``). Every
selective scan is exported as standard operators (the portable ``chunked``
scan, equal to the CPU/Triton paths to float32 round-off). ``--verify`` runs
the file with onnxruntime at batch 1 and 3 and compares it with PyTorch
(exit status 1 above ``--tolerance``); ``--benchmark`` prints onnxruntime
and PyTorch times at batch 1. Needs ``onnx``, ``onnxscript`` and
``onnxruntime`` (installed by tools/install.sh). Details:
mmssm/apis/onnx_export.py.
"""
import argparse
import os.path as osp
import sys

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.dirname(osp.dirname(HERE)))

import mmssm  # noqa: E402,F401


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='checkpoint (loaded strictly); random weights '
                        'without one')
    parser.add_argument('--shape', type=int, nargs=2, required=True,
                        metavar=('H', 'W'), help='input height and width')
    parser.add_argument('--backbone-only', action='store_true',
                        help='export the backbone of a classifier config')
    parser.add_argument('--output-file', default=None,
                        help='default: work_dirs/onnx/<config name>.onnx')
    parser.add_argument('--opset', type=int, default=None)
    parser.add_argument('--verify', action='store_true',
                        help='compare with PyTorch in onnxruntime')
    parser.add_argument('--tolerance', type=float, default=1e-4,
                        help='largest relative error --verify accepts')
    parser.add_argument('--benchmark', action='store_true',
                        help='time onnxruntime and PyTorch at batch 1')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        metavar='KEY=VALUE',
                        help='override config settings (mmengine syntax)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmengine.config import Config, DictAction

    from mmssm.apis import build_model
    from mmssm.apis.onnx_export import (export_onnx, export_target,
                                        time_onnx, verify_onnx)
    if not osp.isfile(args.config):
        raise SystemExit(f'config not found: {args.config}')
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise SystemExit(f'ONNX export needs onnx, onnxscript and '
                         f'onnxruntime ({e}); bash tools/install.sh installs '
                         'them') from None
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        action = DictAction(option_strings=[], dest='cfg_options')
        namespace = argparse.Namespace()
        action(None, namespace, args.cfg_options)
        cfg.merge_from_dict(namespace.cfg_options)
    model = build_model(cfg)
    module, kind = export_target(model, backbone_only=args.backbone_only)
    if args.checkpoint:
        from mmssm.utils.checkpoint import CheckpointError, load_pretrained
        target = model if kind == 'classifier' else module.module
        try:
            load_pretrained(target, args.checkpoint,
                            prefix='' if kind == 'classifier' else None)
        except CheckpointError as e:
            raise SystemExit(str(e)) from None
    in_channels = getattr(module.module, 'in_channels', 3)
    if not isinstance(in_channels, int):
        in_channels = 3
    output = args.output_file or osp.join(
        'work_dirs', 'onnx',
        osp.splitext(osp.basename(args.config))[0] + '.onnx')
    export_onnx(module, args.shape, output, in_channels=in_channels,
                opset=args.opset)
    print(f'exported the {kind} of {args.config} at {args.shape[0]}x'
          f'{args.shape[1]} (dynamic batch) to {output}')
    status = 0
    if args.verify:
        results = verify_onnx(module, output, args.shape,
                              in_channels=in_channels)
        worst = max(r['rel_err'] for r in results)
        for r in results:
            print(f'verify: batch {r["batch"]} output {r["output"]}: '
                  f'relative error {r["rel_err"]:.2e}')
        verdict = 'OK' if worst <= args.tolerance else 'FAILED'
        print(f'verify: {verdict} (largest relative error {worst:.2e}, '
              f'tolerance {args.tolerance:g})')
        status = 0 if worst <= args.tolerance else 1
    if args.benchmark:
        times = time_onnx(module, output, args.shape, in_channels=in_channels)
        print(f'benchmark (batch 1, {args.shape[0]}x{args.shape[1]}): '
              f'onnxruntime {times["onnxruntime_s"]:.4f} s, PyTorch '
              f'{times["pytorch_s"]:.4f} s')
    return status


if __name__ == '__main__':
    sys.exit(main())
