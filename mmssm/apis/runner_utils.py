"""Helpers shared by ``tools/train.py`` and ``tools/test.py``.

They work for mmdet, mmseg and mmpretrain configs alike; the task is read
from the config's ``default_scope``.
"""
import gc
import logging
import os
import os.path as osp

import torch
import torch.distributed as torch_dist
from mmengine.config import Config


TASKS = ('mmdet', 'mmseg', 'mmpretrain')


def get_task(cfg: Config) -> str:
    """Return the OpenMMLab codebase a config belongs to.

    Args:
        cfg (Config): A loaded config.

    Returns:
        str: ``'mmdet'``, ``'mmseg'`` or ``'mmpretrain'``.
    """
    scope = cfg.get('default_scope', None)
    if scope not in TASKS:
        raise ValueError(
            f'default_scope of the config is {scope!r}; mmssm tools support '
            f'configs of {TASKS} (inherit their default_runtime)')
    return scope


def _dataset_cfgs(dataset):
    """Yield every leaf dataset config (unwrapping Repeat/Concat/...)."""
    if dataset is None:
        return
    if 'datasets' in dataset:
        for d in dataset['datasets']:
            yield from _dataset_cfgs(d)
    elif 'dataset' in dataset:
        yield from _dataset_cfgs(dataset['dataset'])
    else:
        yield dataset


def _evaluator_cfgs(evaluator):
    """Yield every metric config of an evaluator (dict or list)."""
    if not evaluator:
        return
    if isinstance(evaluator, (list, tuple)):
        for e in evaluator:
            yield from _evaluator_cfgs(e)
    elif 'metrics' in evaluator:
        yield from _evaluator_cfgs(evaluator['metrics'])
    else:
        yield evaluator


def check_data_roots(cfg: Config, splits=('train', 'val', 'test'),
                     root_flag: str = None) -> None:
    """Fail early, with instructions, when a dataset of ``cfg`` is missing.

    Checks, before any runner is built, the ``data_root``, ``ann_file`` and
    ``data_prefix`` folders of every dataset of the requested dataloaders
    (:func:`mmssm.datasets.check_dataset_paths`) and the ``ann_file`` of
    their evaluators (COCO's CocoMetric).

    Args:
        cfg (Config): A loaded config.
        splits (tuple[str]): Which of ``train``/``val``/``test`` to check.
        root_flag (str, optional): ``'--data-root'`` when the roots come from
            that flag, for the messages.

    Raises:
        FileNotFoundError: names the missing path and what to do.
    """
    from mmssm.datasets import check_dataset_paths
    for split in splits:
        loader = cfg.get(f'{split}_dataloader', None)
        if not loader:
            continue
        for ds in _dataset_cfgs(loader.get('dataset')):
            check_dataset_paths(ds, split, root_flag)
        if split == 'train':
            continue
        for metric in _evaluator_cfgs(cfg.get(f'{split}_evaluator', None)):
            ann = metric.get('ann_file', None)
            if isinstance(ann, str) and ann and '://' not in ann and \
                    not osp.isfile(ann):
                raise FileNotFoundError(
                    f'{split}_evaluator ({metric.get("type")}) annotation '
                    f'file {ann!r} does not exist; set {split}_evaluator.'
                    'ann_file to the annotation file of the '
                    f'{split} set, or pass --data-root DIR so that it is '
                    're-rooted with the dataloaders')


def _reroot(path, old, new):
    """``path`` with its ``old`` prefix replaced by ``new`` (None: no)."""
    if not isinstance(path, str) or not old:
        return None
    old_n = old.rstrip('/')
    if path.rstrip('/') == old_n:
        return new.rstrip('/') + ('/' if path.endswith('/') else '')
    if path.startswith(old_n + '/'):
        return osp.join(new, path[len(old_n) + 1:])
    return None


def reroot_data(cfg: Config, data_root: str) -> list:
    """Point every dataloader and evaluator of ``cfg`` at ``data_root``.

    The config's ``data_root`` (the top-level variable; for a dataset whose
    root differs, that dataset's own ``data_root``) is replaced by
    ``data_root`` as the prefix of: the ``data_root`` of every leaf dataset
    of ``train``/``val``/``test_dataloader`` (wrappers such as
    RepeatDataset/ConcatDataset are unwrapped), and the ``ann_file`` of
    every ``val``/``test_evaluator`` metric (CocoMetric). Relative
    ``ann_file``/``data_prefix`` of the datasets follow their root.

    Args:
        cfg (Config): Modified in place.
        data_root (str): The new root.

    Returns:
        list[str]: ``'field: old -> new'`` for every value changed.

    Raises:
        SystemExit: When the config names no data root at all.
    """
    top = cfg.get('data_root', None)
    changes, seen = [], set()
    roots = {}
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader', None)
        if not loader:
            continue
        for i, ds in enumerate(_dataset_cfgs(loader.get('dataset'))):
            old = ds.get('data_root', None)
            if not old:
                continue
            roots.setdefault(split, old)
            if id(ds) in seen:
                continue
            seen.add(id(ds))
            new = _reroot(old, top, data_root) or data_root
            if new != old:
                ds['data_root'] = new
                changes.append(f'{split}_dataloader dataset[{i}].data_root: '
                               f'{old} -> {new}')
    for split in ('val', 'test'):
        old_root = top or roots.get(split, None)
        for i, metric in enumerate(
                _evaluator_cfgs(cfg.get(f'{split}_evaluator', None))):
            ann = metric.get('ann_file', None)
            new = _reroot(ann, old_root, data_root)
            if id(metric) in seen or new is None or new == ann:
                continue
            seen.add(id(metric))
            metric['ann_file'] = new
            changes.append(f'{split}_evaluator[{i}].ann_file: {ann} -> {new}')
    if not roots and top is None:
        raise SystemExit('--data-root: the config names no data_root (no '
                         'dataloader has a dataset with data_root)')
    cfg.data_root = data_root
    return changes


def init_cpu_distributed(cfg: Config, launcher: str) -> None:
    """Start a ``gloo`` process group when a launcher is used without a GPU.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device`` unconditionally;
    this initialises the group first (mmengine then skips its own init) and
    selects :class:`mmssm.utils.CPUDistributedDataParallel` as model wrapper.

    Args:
        cfg (Config): The config, modified in place.
        launcher (str): ``'pytorch'`` or ``'slurm'``.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return
    if launcher == 'slurm':
        env = os.environ
        env.setdefault('RANK', env['SLURM_PROCID'])
        env.setdefault('WORLD_SIZE', env['SLURM_NTASKS'])
        env.setdefault('LOCAL_RANK', env.get('SLURM_LOCALID', '0'))
        env.setdefault('MASTER_PORT', '29500')
        if 'MASTER_ADDR' not in env:
            import subprocess
            nodes = env['SLURM_NODELIST']
            env['MASTER_ADDR'] = subprocess.getoutput(
                f'scontrol show hostname {nodes} | head -n1')
    elif launcher != 'pytorch':
        raise ValueError(f'launcher {launcher!r} is not supported on CPU')
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend='gloo')
    cfg.merge_from_dict({'env_cfg.dist_cfg.backend': 'gloo'})
    cfg.model_wrapper_cfg = cpu_model_wrapper_cfg(
        cfg.get('model_wrapper_cfg', None))


def cpu_model_wrapper_cfg(wrapper_cfg) -> dict:
    """The model wrapper of a CPU multi-process run, keeping the user's
    options (``find_unused_parameters``, ``broadcast_buffers`` ...).

    mmengine's default ``MMDistributedDataParallel`` (also when named
    explicitly) becomes :class:`~mmssm.utils.CPUDistributedDataParallel`;
    any other wrapper type the config names is kept as it is.
    """
    cfg = dict(wrapper_cfg or {})
    if cfg.get('type', 'MMDistributedDataParallel') in (
            'MMDistributedDataParallel', 'mmengine.MMDistributedDataParallel'):
        cfg['type'] = 'CPUDistributedDataParallel'
    return cfg


def shutdown_distributed() -> None:
    """Free the runner's objects, then end the process group, if any.

    Called by ``tools/train.py`` and ``tools/test.py`` after they dropped
    their runner. The runner holds reference cycles, so without the collection
    here its DDP reducer (and the gloo process group it holds) would be freed
    only while the interpreter shuts down, when a C++ worker thread can be
    destroyed unjoined: the process then aborts (``terminate called without
    an active exception``, SIGABRT) after a run that trained correctly.
    """
    gc.collect()
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()
    gc.collect()


def build_model(cfg):
    """The model of an mmdet/mmseg/mmpretrain config (a path or a
    ``Config``), built in the config's default scope, in eval mode; no
    checkpoint beyond what the config's ``init_cfg`` loads when the caller
    runs ``init_weights``."""
    from mmengine.registry import MODELS, init_default_scope
    if not isinstance(cfg, Config):
        cfg = Config.fromfile(cfg)
    scope = cfg.get('default_scope', None)
    if scope is not None:
        init_default_scope(scope)
    model = MODELS.build(cfg.model)
    model.eval()
    return model


def add_common_args(parser) -> None:
    """The arguments ``tools/train.py`` and ``tools/test.py`` share (after
    their own): ``--data-root``, ``--cfg-options``, ``--launcher`` and
    ``--local-rank``. Read back by :func:`apply_common_args`; call
    :func:`export_local_rank` after parsing."""
    from mmengine.config import DictAction
    parser.add_argument(
        '--data-root', metavar='DIR',
        help='read the data from DIR: replaces the config\'s data_root as '
        'the prefix of every dataloader\'s data_root (train/val/test) and '
        'of the evaluators\' ann_file (applied after --cfg-options)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value (xxx=[a,b] for lists)')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def export_local_rank(args) -> None:
    """``LOCAL_RANK`` from ``--local-rank`` unless the launcher set it."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)


def apply_common_args(cfg: Config, args) -> Config:
    """Apply ``--work-dir``, ``--cfg-options`` and ``--launcher``.

    Args:
        cfg (Config): The loaded config, modified in place.
        args (argparse.Namespace): Parsed arguments of a tool.

    Returns:
        Config: ``cfg``.
    """
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    init_cpu_distributed(cfg, args.launcher)
    return cfg


def build_runner(cfg: Config):
    """Build the runner the config asks for (``runner_type`` or Runner)."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from mmssm.datasets.loading import patch_data_errors
    patch_data_errors()  # errors of image loading / empty datasets
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


def _is_local_path(path: str) -> bool:
    return '://' not in path and not path.split(':', 1)[0] in (
        'open-mmlab', 'openmmlab', 'torchvision', 'mmcls', 'mmpretrain')


def check_checkpoint_file(path: str, flag: str = None) -> dict:
    """Fail in one line, before anything is built, on an unusable checkpoint.

    Args:
        path (str): The checkpoint (``load_from``, the test checkpoint).
            Remote ones (URLs, ``open-mmlab://``) are not checked.
        flag (str, optional): How the user gave it (``'load_from'``), to
            start the message with.

    Returns:
        dict[str, torch.Size] | None: The shapes of its weights (``None`` for
        a remote checkpoint), for :func:`check_checkpoint_fits`.

    Raises:
        SystemExit: names the file and what is wrong with it.
    """
    from mmssm.utils.checkpoint import CheckpointError, read_checkpoint_shapes
    if not _is_local_path(path):
        return None
    try:
        return read_checkpoint_shapes(path)
    except CheckpointError as e:
        raise SystemExit(f'{flag}: {e}' if flag else str(e)) from None


#: Names CheckpointHook gives its regular checkpoints (default templates).
_RESUMABLE_NAME = r'^(iter|epoch)_(\d+)\.pth$'


def find_resumable_checkpoint(work_dir: str):
    """The newest checkpoint of ``work_dir`` that passes the checkpoint check.

    Candidates are the ``iter_N.pth`` / ``epoch_N.pth`` files of the work dir
    and the file named by its ``last_checkpoint`` (which may live in the
    hook's ``out_dir``), newest (modification time, then N) first. Each is
    checked with :func:`mmssm.utils.read_checkpoint_shapes` (the check of
    ``--resume CKPT`` and ``tools/test.py``) until one passes. Other files
    (``best_*.pth``, ``last_finite_iter_N.pth``, hidden ``.*.tmp`` files of
    an interrupted save) are not candidates.

    Args:
        work_dir (str): The run's work dir.

    Returns:
        tuple[str | None, list[str]]: The checkpoint to resume from (None
        when there is none) and one message per skipped file, naming it and
        why it was skipped.
    """
    import re

    from mmssm.utils.checkpoint import CheckpointError, read_checkpoint_shapes
    candidates = {}

    def add(path):
        m = re.match(_RESUMABLE_NAME, osp.basename(path))
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            mtime = -1
        candidates[osp.abspath(path)] = (mtime, int(m.group(2)) if m else -1)

    if osp.isdir(work_dir):
        for name in os.listdir(work_dir):
            path = osp.join(work_dir, name)
            if re.match(_RESUMABLE_NAME, name) and osp.isfile(path):
                add(path)
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            last = f.read().strip()
        if last and _is_local_path(last):
            add(last)
    skipped = []
    for path in sorted(candidates, key=candidates.get, reverse=True):
        try:
            read_checkpoint_shapes(path)
        except CheckpointError as e:
            skipped.append(f'--resume: skipped {e}')
            continue
        return path, skipped
    return None, skipped


def check_checkpoint_fits(runner, shapes: dict, path: str,
                          strict: bool = True) -> None:
    """Compare the built model's weights with a checkpoint's, before loading.

    Args:
        runner: A built runner (its model exists; nothing was loaded yet),
            or the model itself (an ``nn.Module``, e.g. an inferencer's, as
            ``demo/image_demo.py`` checks it; the warning then goes to
            mmengine's current logger). Model wrappers and TTA models are
            unwrapped.
        shapes (dict): From :func:`check_checkpoint_file`; ``None`` skips.
        path (str): The checkpoint, for the messages.
        strict (bool): Stop on any missing, unexpected or shape-mismatched
            key; otherwise log them and let the runner load what fits.

    Raises:
        SystemExit: In strict mode, naming the keys that do not fit.
    """
    from mmengine.logging import print_log
    from mmengine.model import BaseTTAModel, is_model_wrapper

    from mmssm.utils.checkpoint import (compare_state_dict_shapes,
                                        describe_mismatch)
    if shapes is None:
        return
    is_model = isinstance(runner, torch.nn.Module)
    model = runner if is_model else runner.model
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    expected = {k: v.shape for k, v in model.state_dict().items()
                if isinstance(v, torch.Tensor)}
    diff = compare_state_dict_shapes(expected, shapes)
    if not any(diff.values()):
        return
    text = describe_mismatch(diff)
    if strict:
        raise SystemExit(
            f'checkpoint {path!r} does not fit the model of the config '
            f'(pass --non-strict to load the weights that fit):\n{text}')
    message = (f'--non-strict: loading the weights of {path!r} that fit the '
               f'model; not loaded:\n{text}')
    if is_model:
        print_log(message, logger='current', level=logging.WARNING)
    else:
        runner.logger.warning(message)


#: mmengine's "no end" for param schedulers.
_SCHED_INF = int(1e9)


def rescale_schedule(cfg: Config, max_iters: int = None,
                     max_epochs: int = None) -> list:
    """Shorten or lengthen the training schedule of ``cfg`` proportionally.

    ``train_cfg.max_iters`` (or ``max_epochs``) becomes the new length, and
    every param scheduler is scaled by ``new / old``: ``begin``, ``end`` (an
    ``end`` equal to the old length becomes the new length; an open end stays
    open), ``T_max``, ``milestones``, ``step_size``, ``periods`` and
    ``total_steps`` where present. ``train_cfg.val_interval``/``val_begin``
    and the checkpoint interval are clipped to the new length.

    Args:
        cfg (Config): Modified in place.
        max_iters (int, optional): New length of an iteration-based loop.
        max_epochs (int, optional): New length of an epoch-based loop.

    Returns:
        list[str]: ``'name old -> new'`` for each value changed.

    Raises:
        SystemExit: When both or neither are given, the length is < 1, or
            the loop counts the other unit.
    """
    if (max_iters is None) == (max_epochs is None):
        raise SystemExit('give one of --max-iters and --max-epochs')
    key = 'max_iters' if max_iters is not None else 'max_epochs'
    new = max_iters if max_iters is not None else max_epochs
    flag = '--' + key.replace('_', '-')
    if new < 1:
        raise SystemExit(f'{flag} must be >= 1, got {new}')
    train_cfg = cfg.get('train_cfg', None)
    if not train_cfg or key not in train_cfg:
        other = 'max_epochs' if key == 'max_iters' else 'max_iters'
        hint = (f'; it has train_cfg.{other}: use --{other.replace("_", "-")}'
                if train_cfg and other in train_cfg else '')
        raise SystemExit(f'{flag}: the config has no train_cfg.{key}{hint}')
    old = train_cfg[key]
    factor = new / old
    changes = []

    def set_(d, k, value, name):
        if d[k] != value:
            changes.append(f'{name} {d[k]} -> {value}')
            d[k] = value

    def scale(v, low=0):
        return max(low, int(round(v * factor)))

    set_(train_cfg, key, new, f'train_cfg.{key}')
    scheds = cfg.get('param_scheduler', None)
    if isinstance(scheds, dict):
        scheds = [scheds]
    for i, sched in enumerate(scheds or []):
        name = f'param_scheduler[{i}] ({sched.get("type")})'
        begin = sched.get('begin', 0)
        if 'begin' in sched:
            set_(sched, 'begin', scale(begin), f'{name}.begin')
        end = sched.get('end', None)
        if end is not None and end < _SCHED_INF:
            new_end = new if end == old else scale(end)
            set_(sched, 'end', max(new_end, sched.get('begin', 0) + 1),
                 f'{name}.end')
        for k in ('T_max', 'step_size', 'total_steps'):
            if sched.get(k, None) is not None:
                set_(sched, k, scale(sched[k], 1), f'{name}.{k}')
        for k in ('milestones', 'periods'):
            if sched.get(k, None) is not None:
                set_(sched, k, [scale(v, 1) for v in sched[k]],
                     f'{name}.{k}')
    for k in ('val_interval', 'val_begin'):
        if isinstance(train_cfg.get(k, None), int) and train_cfg[k] > new:
            set_(train_cfg, k, new, f'train_cfg.{k}')
    ckpt = (cfg.get('default_hooks', None) or {}).get('checkpoint', None)
    if ckpt and ckpt.get('by_epoch', True) == (key == 'max_epochs') and \
            isinstance(ckpt.get('interval', None), int) and \
            ckpt['interval'] > new:
        set_(ckpt, 'interval', new, 'default_hooks.checkpoint.interval')
    return changes


def unscaled_schedule_warning(cfg_file: Config, cfg: Config,
                              cfg_options: dict) -> str:
    """A warning when ``--cfg-options`` changed the length alone.

    Args:
        cfg_file (Config): The config as read from its file.
        cfg (Config): The config after ``--cfg-options``.
        cfg_options (dict): The ``--cfg-options`` given (may be None).

    Returns:
        str | None: What :func:`rescale_schedule` would have changed in the
        param schedulers, and the flag that does it; None when the length
        was not changed, the schedulers were set too, or nothing depends on
        the length.
    """
    import copy
    if not cfg_options or any(
            k.startswith('param_scheduler') for k in cfg_options):
        return None
    for key in ('max_iters', 'max_epochs'):
        old = (cfg_file.get('train_cfg', None) or {}).get(key, None)
        new = (cfg.get('train_cfg', None) or {}).get(key, None)
        if old is None or new is None or old == new:
            continue
        if not isinstance(new, int) or isinstance(new, bool) or new < 1:
            return None  # not a length to rescale to; the runner says why
        probe = copy.deepcopy(cfg_file)
        changes = [
            c for c in rescale_schedule(probe, **{key: new})
            if c.startswith('param_scheduler')
        ]
        if not changes:
            return None
        flag = '--' + key.replace('_', '-')
        return (f'--cfg-options set train_cfg.{key} {old} -> {new}, but the '
                'param schedulers were not rescaled (with '
                f'{flag} {new}: {", ".join(changes)}); use {flag} {new} to '
                'rescale them')
    return None
