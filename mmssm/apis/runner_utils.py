"""Helpers shared by ``tools/train.py`` and ``tools/test.py``.

They work for mmdet, mmseg and mmpretrain configs alike; the task is read
from the config's ``default_scope``.
"""
import gc
import os
import os.path as osp

import torch
import torch.distributed as torch_dist
from mmengine.config import Config

from mmssm.datasets import data_hint, guess_data_kind

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


def _hint(root, dataset_type):
    """How to get the dataset a config points at."""
    kind = guess_data_kind(root, dataset_type)
    if kind is None:
        return ' Set data_root and ann_file to where the dataset lives.'
    return '\n' + data_hint(kind)


def check_data_roots(cfg: Config, splits=('train', 'val', 'test')) -> None:
    """Fail early, with instructions, when a dataset of ``cfg`` is missing.

    Checks that ``data_root`` and the annotation file of every dataset used by
    the requested dataloaders exist on disk before any runner is built.

    Args:
        cfg (Config): A loaded config.
        splits (tuple[str]): Which of ``train``/``val``/``test`` to check.

    Raises:
        FileNotFoundError: names the missing path and how to get the data.
    """
    for split in splits:
        loader = cfg.get(f'{split}_dataloader', None)
        if not loader:
            continue
        for ds in _dataset_cfgs(loader.get('dataset')):
            root = ds.get('data_root', '') or ''
            missing = None
            if root and not osp.isdir(root):
                missing = root
            else:
                ann = ds.get('ann_file', '') or ''
                if ann:
                    ann_path = ann if osp.isabs(ann) else osp.join(root, ann)
                    if not osp.exists(ann_path):
                        missing = ann_path
            if missing is not None:
                raise FileNotFoundError(
                    f'{split} data not found: {missing!r} does not exist '
                    f'(dataset {ds.get("type")}, data_root={root!r}).' +
                    _hint(root, ds.get('type')))


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
    cfg.model_wrapper_cfg = dict(type='CPUDistributedDataParallel')


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
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)
