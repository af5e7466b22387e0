"""Stop a training at the first non-finite loss or gradient.

NaN or Inf in a loss or a gradient (the classic fp16 failure of state-space
models: an overflowing ``exp(delta * A)`` or a saturated ``softplus``) goes
on silently otherwise: one poisoned optimizer step turns every weight into
NaN, the losses stay NaN, and the run keeps training and checkpointing
garbage until someone reads the log.

:class:`NonFiniteGuardHook` checks, every iteration,

* the gradients, just before the optimizer step: the norm of every
  parameter's gradient with one fused ``torch._foreach_norm`` and a single
  device-to-host synchronisation; when one is non-finite, **the step is
  skipped**, so weights and optimizer state stay those of the last finite
  iteration;
* the loss terms the model returned (every entry of the train step's
  outputs whose name contains ``loss``), after the step.

The forward pass of a failing iteration also changes buffers (BatchNorm
running statistics become NaN), so the hook copies the model's buffers
before every iteration (small: BN statistics) and puts them back when it
stops. On the first non-finite value it saves ``last_finite_iter_{N}.pth``
in the work dir (weights, buffers, optimizer and schedulers as they were
after iteration ``N``, the last finite one; ``--resume`` from it repeats the
failed iteration) and raises :class:`NonFiniteError` naming the iteration, every
loss term with its value and the first parameter (in ``named_parameters``
order) whose gradient is non-finite.

With ``AmpOptimWrapper`` the gradients are not checked: fp16 loss scaling
produces non-finite gradients by design and its scaler skips those steps
itself; the loss terms are still checked. With gradient accumulation the
gradients are checked at the iterations that step.
"""
import functools
import math
import os.path as osp
from typing import Dict, List, Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmssm.registry import register_hook

__all__ = ['NonFiniteGuardHook', 'NonFiniteError']


class NonFiniteError(RuntimeError):
    """A training loss or gradient became NaN or infinite."""


@register_hook()
class NonFiniteGuardHook(Hook):
    """Stop at the first non-finite loss or gradient, keeping a checkpoint
    of the last finite state.

    Args:
        check_grads (bool): Check the gradients before every optimizer step
            (and skip a non-finite step). Defaults to True.
        save_checkpoint (bool): Save ``last_finite_iter_{N}.pth`` in the
            work dir before stopping. Defaults to True.
    """

    # before ParamSchedulerHook (LOW), CheckpointHook (VERY_LOW), the
    # logger and EMA hooks: nothing runs on a non-finite iteration
    priority = 'VERY_HIGH'

    def __init__(self, check_grads: bool = True,
                 save_checkpoint: bool = True) -> None:
        self.check_grads = check_grads
        self.save_checkpoint = save_checkpoint
        self._wrapped: List = []
        self._bad_grad: Optional[Dict] = None
        self._step_skipped = False
        self._grads_checked = False
        self._buffers: List[torch.Tensor] = []
        self._buffer_copies: List[torch.Tensor] = []

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(runner.model) \
            else runner.model

    # -- gradients -------------------------------------------------------
    def before_train(self, runner) -> None:
        self._buffers = [b for b in self._model(runner).buffers()]
        self._buffer_copies = [b.detach().clone() for b in self._buffers]
        if not self.check_grads:
            return
        from mmengine.optim import AmpOptimWrapper, OptimWrapperDict
        model = self._model(runner)
        named = [(n, p) for n, p in model.named_parameters()
                 if p.requires_grad]
        wrappers = list(runner.optim_wrapper.values()) if isinstance(
            runner.optim_wrapper, OptimWrapperDict) else [runner.optim_wrapper]
        for wrapper in wrappers:
            if isinstance(wrapper, AmpOptimWrapper):
                continue
            self._wrap(wrapper, named)

    def _wrap(self, wrapper, named) -> None:
        original = wrapper.step
        hook = self

        # functools.wraps keeps what mmengine's param schedulers put on
        # the step they wrapped (``_with_counter``): without it they warn
        # that ``optimizer.step()`` has been overridden
        @functools.wraps(original)
        def guarded_step(*args, **kwargs):
            hook._grads_checked = True
            bad = hook._first_non_finite_grad(named)
            if bad is not None:
                hook._bad_grad = bad
                hook._step_skipped = True
                return None
            return original(*args, **kwargs)

        wrapper.step = guarded_step
        self._wrapped.append(wrapper)

    @staticmethod
    def _first_non_finite_grad(named) -> Optional[Dict]:
        names, grads = [], []
        for name, param in named:
            if param.grad is not None:
                names.append(name)
                grads.append(param.grad)
        if not grads:
            return None
        norms = torch.stack([
            n.float() for n in torch._foreach_norm(
                [g.to_dense() if g.is_sparse else g for g in grads])
        ])
        finite = torch.isfinite(norms)
        if bool(finite.all()):  # the one synchronisation
            return None
        index = int((~finite).nonzero()[0, 0])
        return dict(name=names[index], norm=float(norms[index]),
                    count=int((~finite).sum()), total=len(names))

    def after_train(self, runner) -> None:
        for wrapper in self._wrapped:
            del wrapper.step  # the class's method again
        self._wrapped = []
        self._buffers, self._buffer_copies = [], []

    # -- losses and the stop ---------------------------------------------
    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        self._bad_grad = None
        self._step_skipped = False
        self._grads_checked = False
        if self._buffers:
            with torch.no_grad():
                torch._foreach_copy_(self._buffer_copies, self._buffers)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        terms = {k: v for k, v in (outputs or {}).items() if 'loss' in k}
        values = {}
        if terms:
            stacked = torch.stack([
                v.detach().float().mean().cpu() if isinstance(
                    v, torch.Tensor) else torch.tensor(float(v))
                for v in terms.values()
            ])
            values = dict(zip(terms, stacked.tolist()))  # one sync
        bad_loss = [k for k, v in values.items() if not math.isfinite(v)]
        if not bad_loss and self._bad_grad is None:
            return
        iteration = runner.iter + 1
        what = ' and '.join(
            (['loss'] if bad_loss else []) +
            (['gradient'] if self._bad_grad is not None else []))
        where = f'iteration {iteration}'
        from mmengine.runner import EpochBasedTrainLoop
        if isinstance(runner.train_loop, EpochBasedTrainLoop):
            where += f' (epoch {runner.epoch + 1})'
        msg = [f'non-finite {what} at {where}']
        msg.append('loss terms: ' + (', '.join(
            f'{k}={v:.6g}' for k, v in values.items()) or 'none returned'))
        if self._bad_grad is not None:
            b = self._bad_grad
            msg.append(f'first parameter with a non-finite gradient: '
                       f'{b["name"]} (gradient norm {b["norm"]}; '
                       f'{b["count"]} of {b["total"]} parameters)')
        elif self._grads_checked:
            msg.append('gradients finite')
        elif not self.check_grads or not self._wrapped:
            msg.append('gradients not checked (AmpOptimWrapper: its loss '
                       'scaler skips non-finite steps)' if self.check_grads
                       else 'gradients not checked')
        if self._step_skipped or (self._wrapped and not self._grads_checked):
            # no update this iteration: undo its forward's buffer updates
            # (BN statistics) too, so the model is the last finite state
            if self._buffers:
                with torch.no_grad():
                    torch._foreach_copy_(self._buffers, self._buffer_copies)
            if self._step_skipped:
                msg.append('the optimizer step of this iteration was '
                           'skipped and the buffers (BN statistics) restored')
        if self.save_checkpoint:
            msg.append(self._save(runner, iteration))
        raise NonFiniteError('; '.join(msg))

    def _save(self, runner, iteration: int) -> str:
        """Save the state the weights are in and say what it is."""
        if self._step_skipped:
            done = iteration - 1  # this iteration's update never happened
        elif self._grads_checked:
            done = iteration  # a checked, finite update was applied
        elif self._wrapped:
            # gradient accumulation, no step at this iteration: the weights
            # are those of the last (checked) step
            done = iteration - 1
        else:
            return ('no checkpoint saved: the gradients were not checked, '
                    'the weights may hold non-finite values; the last '
                    'regular checkpoint is the last known finite state')
        filename = f'last_finite_iter_{done}.pth'
        runner.save_checkpoint(
            runner.work_dir, filename, save_optimizer=True,
            save_param_scheduler=True,
            meta=dict(iter=done, epoch=runner.epoch))
        then = ('repeats the failed iteration' if done < iteration else
                'continues after it (its update had finite gradients)')
        return (f'saved the state after iteration {done} (the last finite '
                f'one) as {osp.join(runner.work_dir, filename)}; --resume '
                f'from it {then}')

