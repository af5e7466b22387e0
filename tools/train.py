"""Train an mmdet, mmseg or mmpretrain model with an mmssm backbone.

Examples::

    python tools/train.py configs/mambaout/mask-rcnn_mambaout-femto_fpn_demo_coco-shapes.py
    python tools/train.py CONFIG --resume                  # newest checkpoint that loads
    python tools/train.py CONFIG --resume work_dirs/x/iter_100.pth
    bash tools/dist_train.sh CONFIG 8                       # torchrun, 8 processes
    python tools/train.py CONFIG --max-iters 30             # schedule rescaled to 30 iterations
"""
import argparse
import copy
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmssm  # noqa: E402,F401  (stack fixes before any config is parsed)
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402

from mmssm.apis import (add_common_args, apply_common_args,  # noqa: E402
                        build_runner, export_local_rank,
                        check_checkpoint_file, check_checkpoint_fits,
                        check_data_roots, find_resumable_checkpoint,
                        get_task, reroot_data, rescale_schedule,
                        shutdown_distributed, unscaled_schedule_warning)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model (mmssm)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp', action='store_true',
        help='automatic mixed precision (needs a CUDA GPU)')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the lr by the actual total batch size')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the given checkpoint, or from the latest one in '
        'the work dir when no path is given')
    length = parser.add_mutually_exclusive_group()
    length.add_argument(
        '--max-iters', type=int, metavar='N',
        help='train N iterations, with the param schedulers (warm-up and '
        'decay begin/end, T_max, milestones) scaled by N / train_cfg.'
        'max_iters and val/checkpoint intervals clipped to N')
    length.add_argument(
        '--max-epochs', type=int, metavar='N',
        help='the same for epoch-based configs (train_cfg.max_epochs)')
    parser.add_argument(
        '--non-strict', action='store_true',
        help='load_from / --resume: load the weights of the checkpoint that '
        'fit the model (default: stop, naming the missing, unexpected and '
        'shape-mismatched keys)')
    add_common_args(parser)
    args = parser.parse_args(argv)
    export_local_rank(args)
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    get_task(cfg)
    cfg_file = copy.deepcopy(cfg)
    apply_common_args(cfg, args)
    data_root_log = None
    if args.data_root:
        changes = reroot_data(cfg, args.data_root)
        data_root_log = f'--data-root {args.data_root}: ' + (
            '; '.join(changes) or 'nothing to change')
    schedule_log, schedule_warning = None, None
    if args.max_iters is not None or args.max_epochs is not None:
        changes = rescale_schedule(cfg, args.max_iters, args.max_epochs)
        flag = (f'--max-iters {args.max_iters}' if args.max_iters is not None
                else f'--max-epochs {args.max_epochs}')
        schedule_log = f'{flag}: rescaled the schedule: ' + (
            ', '.join(changes) or 'nothing to change')
    else:
        schedule_warning = unscaled_schedule_warning(cfg_file, cfg,
                                                     args.cfg_options)

    if args.amp:
        if not torch.cuda.is_available():
            raise SystemExit(
                '--amp needs a CUDA GPU: mmengine\'s AmpOptimWrapper refuses '
                'to run on the CPU. Train without --amp on this machine.')
        optim_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if optim_type == 'OptimWrapper':
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
        elif optim_type != 'AmpOptimWrapper':
            raise SystemExit(f'--amp cannot convert optim_wrapper type '
                             f'{optim_type!r} to AmpOptimWrapper')

    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in \
                cfg.auto_scale_lr:
            raise SystemExit('--auto-scale-lr: the config has no '
                             'auto_scale_lr.base_batch_size')
        cfg.auto_scale_lr.enable = True

    resume_logs = []
    if args.resume == 'auto':
        # the newest checkpoint of the work dir that passes the checkpoint
        # check (mmengine's own lookup trusts last_checkpoint blindly)
        resume_from, skipped = find_resumable_checkpoint(cfg.work_dir)
        resume_logs = [('warning', line) for line in skipped]
        if resume_from is not None:
            cfg.resume = True
            cfg.load_from = resume_from
            resume_logs.append(
                ('info', f'--resume: resuming from {resume_from}, the newest '
                 f'checkpoint in {cfg.work_dir} that loads'))
        else:
            cfg.resume = False
            init = cfg.get('load_from', None)
            resume_logs.append(
                ('warning', f'--resume: no checkpoint to resume from in '
                 f'{cfg.work_dir}; training starts from scratch' +
                 (f' (load_from={init})' if init else '')))
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise SystemExit(f'--resume: checkpoint {args.resume!r} not found')
        cfg.resume = True
        cfg.load_from = args.resume

    # before the model and the dataset: an unusable checkpoint in one line
    load_from = cfg.get('load_from', None)
    ckpt_shapes = check_checkpoint_file(
        load_from, '--resume' if cfg.get('resume') else 'load_from') \
        if load_from else None

    check_data_roots(cfg, splits=('train', 'val'),
                     root_flag='--data-root' if args.data_root else None)
    # random states go into the checkpoints and come back on --resume
    hooks = list(cfg.get('custom_hooks', None) or [])
    if not any(str(h.get('type', '')).endswith('RNGStateHook')
               for h in hooks):
        cfg.custom_hooks = hooks + [dict(type='mmssm.RNGStateHook')]
    runner = build_runner(cfg)
    if data_root_log:
        runner.logger.info(data_root_log)
    for level, line in resume_logs:
        getattr(runner.logger, level)(line)
    if schedule_log:
        runner.logger.info(schedule_log)
    if schedule_warning:
        runner.logger.warning(schedule_warning)
    if ckpt_shapes is not None:
        check_checkpoint_fits(runner, ckpt_shapes, load_from,
                              strict=not args.non_strict)
    runner.train()
    del runner
    shutdown_distributed()


if __name__ == '__main__':
    main()
