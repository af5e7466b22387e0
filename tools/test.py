"""Evaluate a trained mmdet, mmseg or mmpretrain model.

Prints COCO box/mask AP for detectors, mIoU for segmentors, accuracy for
classifiers. ``--tta`` runs the config's multi-scale/flip test-time
augmentation (``tta_model`` and ``tta_pipeline``).

Examples::

    python tools/test.py CONFIG CHECKPOINT
    python tools/test.py CONFIG CHECKPOINT --tta --out results.pkl
    python tools/test.py CONFIG CHECKPOINT --show-dir vis/   # WORK_DIR/vis/
    python tools/test.py CONFIG CHECKPOINT --data-root /data/coco_shapes
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmssm  # noqa: E402,F401  (stack fixes before any config is parsed)
from mmengine.config import Config, ConfigDict  # noqa: E402

from mmssm.apis import (add_common_args, apply_common_args,  # noqa: E402
                        build_runner, export_local_rank,
                        check_checkpoint_file, check_checkpoint_fits,
                        check_data_roots, get_task, reroot_data,
                        shutdown_distributed)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a model (mmssm)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--non-strict', action='store_true',
        help='load the weights of the checkpoint that fit the model and '
        'evaluate anyway (default: stop, naming the missing, unexpected and '
        'shape-mismatched keys)')
    parser.add_argument('--work-dir', help='the dir to save the metrics')
    parser.add_argument(
        '--out', help='dump the predictions to a pickle file (mmdet, '
        'mmpretrain) or save the predicted maps to a folder (mmseg)')
    parser.add_argument('--show', action='store_true', help='show results')
    parser.add_argument(
        '--show-dir', help='save every test image with the predictions '
        'drawn on it to this folder (a relative one is inside the work dir)')
    parser.add_argument(
        '--show-interval', type=int, default=1, metavar='N',
        help='with --show-dir: draw every N-th test image (default 1: all)')
    parser.add_argument('--wait-time', type=float, default=2)
    parser.add_argument(
        '--tta', action='store_true', help='test-time augmentation '
        '(multi-scale and flip as the config\'s tta_pipeline says)')
    add_common_args(parser)
    args = parser.parse_args(argv)
    export_local_rank(args)
    return args


#: The visualization hook each task's default_runtime defines.
_VIS_HOOKS = {
    'mmdet': dict(type='DetVisualizationHook'),
    'mmseg': dict(type='SegVisualizationHook'),
    'mmpretrain': dict(type='VisualizationHook'),
}


def trigger_visualization(cfg, args, task):
    """``--show``: the task's visualization hook shows every test image
    (added when the config lacks one). ``--show-dir``: mmssm's
    :class:`~mmssm.engine.hooks.ShowDirHook` draws every
    ``--show-interval``-th test image into the folder."""
    if args.show_interval < 1:
        raise SystemExit(
            f'--show-interval must be >= 1, got {args.show_interval}')
    if args.show_dir:
        cfg.custom_hooks = list(cfg.get('custom_hooks', None) or []) + [
            dict(type='ShowDirHook', out_dir=args.show_dir,
                 interval=args.show_interval)
        ]
    if not args.show:
        return
    if cfg.get('default_hooks', None) is None:
        cfg.default_hooks = ConfigDict()
    hooks = cfg.default_hooks
    if hooks.get('visualization', None) is None:
        hooks['visualization'] = ConfigDict(_VIS_HOOKS[task])
    hook = hooks['visualization']
    if task == 'mmpretrain':
        hook['enable'] = True
        hook['interval'] = 1
    else:
        hook['draw'] = True
        hook['interval'] = 1
    hook['show'] = True
    hook['wait_time'] = args.wait_time


def enable_tta(cfg):
    """Wrap the model in the config's TTA model and use its TTA pipeline."""
    for key in ('tta_model', 'tta_pipeline'):
        if key not in cfg:
            raise SystemExit(
                f'--tta: the config defines no `{key}`; inherit an mmssm '
                'config that sets test-time augmentation')
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def main(argv=None):
    args = parse_args(argv)
    # before the config, model and dataset: a missing, empty, truncated or
    # non-checkpoint file is named in one line within a second
    ckpt_shapes = check_checkpoint_file(args.checkpoint)
    cfg = Config.fromfile(args.config)
    task = get_task(cfg)
    apply_common_args(cfg, args)
    cfg.load_from = args.checkpoint
    data_root_log = None
    if args.data_root:
        changes = reroot_data(cfg, args.data_root)
        data_root_log = f'--data-root {args.data_root}: ' + (
            '; '.join(changes) or 'nothing to change')

    if args.show or args.show_dir:
        trigger_visualization(cfg, args, task)
    if args.tta:
        enable_tta(cfg)
    if args.out is not None and task == 'mmseg':
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True

    check_data_roots(cfg, splits=('test', ),
                     root_flag='--data-root' if args.data_root else None)
    runner = build_runner(cfg)
    if data_root_log:
        runner.logger.info(data_root_log)
    # the model exists, the dataset is not built yet
    check_checkpoint_fits(runner, ckpt_shapes, args.checkpoint,
                          strict=not args.non_strict)

    if args.out is not None and task != 'mmseg':
        if not args.out.endswith(('.pkl', '.pickle')):
            raise SystemExit('--out must be a .pkl file for this task')
        if task == 'mmdet':
            from mmdet.evaluation import DumpDetResults
            runner.test_evaluator.metrics.append(
                DumpDetResults(out_file_path=args.out))
        else:
            from mmpretrain.evaluation import DumpResults
            runner.test_evaluator.metrics.append(
                DumpResults(out_file_path=args.out))
    metrics = runner.test()
    del runner
    shutdown_distributed()
    return metrics


if __name__ == '__main__':
    main()
