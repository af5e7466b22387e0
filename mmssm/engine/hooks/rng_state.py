"""Random states in checkpoints, so that a resumed run continues the run.

mmengine's checkpoints hold the model, the optimizer, the schedulers and the
iteration, but no random state: after ``--resume`` the draws of dropout and
drop path, of RoI samplers, and of hooks with their own generator (SLWS)
restart from the seed, and the resumed losses part from those of an
uninterrupted run at once. :class:`RNGStateHook` stores, with every
checkpoint, the states of torch's CPU (and CUDA) generators, numpy's and
Python's, and the ``generator`` (a :class:`torch.Generator`) of every other
hook that has one, and puts them back when a run resumes.

When they are put back matters: after loading, mmengine's iteration loop
fast-forwards the dataloader over the batches already trained (it creates
the iterator, which draws a seed from torch's generator, and with
``num_workers=0`` the augmentations draw from the main process's
generators), so the states are restored at the first resumed iteration, in
``before_train_iter`` with the highest priority (before any other hook
draws). The data stream itself is continued exactly when the augmentations
run in DataLoader workers: mmengine seeds each worker from the run's seed,
and the fast-forward replays the same batches through them. With
``num_workers=0`` it is not (the fast-forward draws from the restored
generators' predecessors); the model's draws still are.
"""
import random
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook

from mmssm.registry import register_hook

__all__ = ['RNGStateHook', 'collect_rng_state', 'restore_rng_state']

KEY = 'mmssm_rng_state'


def _hook_generators(runner):
    """``(name, generator)`` of the hooks that own a torch.Generator."""
    out = []
    for index, hook in enumerate(getattr(runner, 'hooks', [])):
        gen = getattr(hook, 'generator', None)
        if isinstance(gen, torch.Generator):
            out.append((f'{index}:{type(hook).__name__}', gen))
    return out


def collect_rng_state(runner=None) -> dict:
    """Every random state of this process (and of the runner's hooks)."""
    state = dict(
        torch=torch.get_rng_state(),
        numpy=np.random.get_state(),
        python=random.getstate(),
        hooks={name: gen.get_state()
               for name, gen in _hook_generators(runner)})
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict, runner=None) -> list:
    """Put back what :func:`collect_rng_state` stored; returns the names of
    the hook generators that were not found (the hooks changed)."""
    torch.set_rng_state(state['torch'])
    np.random.set_state(state['numpy'])
    random.setstate(state['python'])
    if state.get('cuda') is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])
    hooks = dict(_hook_generators(runner))
    missing = []
    for name, value in state.get('hooks', {}).items():
        if name in hooks:
            hooks[name].set_state(value)
        else:
            missing.append(name)
    return missing


@register_hook()
class RNGStateHook(Hook):
    """Store the random states in checkpoints; restore them on resume.

    ``tools/train.py`` adds it to every training run. See the module
    docstring for what is and is not continued exactly.
    """

    priority = 'HIGHEST'

    def __init__(self) -> None:
        self._pending: Optional[dict] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[KEY] = collect_rng_state(runner)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._pending = checkpoint.get(KEY)

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        missing = restore_rng_state(state, runner)
        runner.logger.info('RNGStateHook: random states restored from the '
                           'checkpoint')
        if missing:
            runner.logger.warning(
                'RNGStateHook: no hook now owns the generators saved as '
                f'{missing}; they start from their seeds')
