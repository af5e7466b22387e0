"""Pruning hooks for any ``nn.Module`` model (issue #17, "Seed 002").

papers/improving-ssm-vim-mambavision.txt prunes Vim four ways: dynamic
pruning with a cosine sparsity schedule to 60 % (first layer and head at half
the sparsity; the best, 70 % on CIFAR-100), iterative magnitude pruning
(sparsity += 0.04 per round), early-bird tickets (structured 50 %, mask
distance between epochs) and gradient-magnitude pruning. The hooks here do
the same for any model, SSM or not, as mmengine hooks:

* :class:`MagnitudePruningHook`: unstructured pruning of the weights of
  the chosen layer types (``Linear``, ``Conv``, ``ConvTranspose``; module
  name filters), globally or per layer, by ``|w|`` or ``|w * grad|``, with
  sparsity following a cosine schedule (:func:`cosine_sparsity`).
* :class:`IterativePruningHook`: the same masks, pruned in rounds at given
  iterations (``step`` more sparsity per round), with optional rewinding of
  the surviving weights to an early copy.
* :class:`EarlyBirdHook`: structured channel masks from the norm layers'
  scales (``|gamma|`` of BatchNorm / LayerNorm), their normalised Hamming
  distance between consecutive checks, and the early-bird ticket.

Masks are boolean tensors (``True`` = kept) keyed by module name (the name in
the model without its DDP wrapper, as in mmengine checkpoints). They are saved
in every checkpoint (``checkpoint['mmssm_pruning']`` /
``checkpoint['mmssm_early_bird']``) and restored by ``--resume``;
``tools/model_converters/prune2dense.py`` bakes them into plain weights and
``tools/analysis_tools/sparsity.py`` counts the zeros of a checkpoint.
"""
import math
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.dist import all_reduce, get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmssm.registry import register_hook

__all__ = [
    'MagnitudePruningHook', 'IterativePruningHook', 'EarlyBirdHook',
    'cosine_sparsity', 'select_layers', 'select_norms', 'mask_hamming',
    'apply_weight_masks', 'apply_channel_masks', 'LAYER_TYPES', 'NORM_TYPES',
    'PRUNING_KEY', 'EARLY_BIRD_KEY'
]

PRUNING_KEY = 'mmssm_pruning'
EARLY_BIRD_KEY = 'mmssm_early_bird'

LAYER_TYPES = OrderedDict(
    Linear=(nn.Linear, ),
    Conv=(nn.Conv1d, nn.Conv2d, nn.Conv3d),
    ConvTranspose=(nn.ConvTranspose1d, nn.ConvTranspose2d,
                   nn.ConvTranspose3d),
)
NORM_TYPES = OrderedDict(
    BN=(nn.modules.batchnorm._BatchNorm, nn.SyncBatchNorm),
    LN=(nn.LayerNorm, ),
    GN=(nn.GroupNorm, ),
)

# a small epsilon so that e.g. 0.6 * 10 = 5.999... counts 6, not 5
_EPS = 1e-9


def _choice(name: str, value, choices: Sequence[str]):
    if value not in choices:
        raise ValueError(f'{name} must be one of '
                         f'{", ".join(repr(c) for c in choices)}; '
                         f'got {value!r}')
    return value


def _as_list(name: str, value) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, str) for v in value):
        raise ValueError(f'{name} must be a str, a list of str or None; '
                         f'got {value!r}')
    return list(value)


def _types(name: str, value, table: Dict[str, tuple]) -> tuple:
    names = _as_list(name, value)
    if not names:
        raise ValueError(f'{name} must name at least one of '
                         f'{", ".join(repr(c) for c in table)}')
    out = []
    for n in names:
        _choice(name, n, list(table))
        out.extend(table[n])
    return tuple(out)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if is_model_wrapper(model) else model


def _filtered(model, types, include, exclude):
    inc = [re.compile(p) for p in _as_list('include', include)]
    exc = [re.compile(p) for p in _as_list('exclude', exclude)]
    out = OrderedDict()
    for name, module in unwrap(model).named_modules():
        if not isinstance(module, types):
            continue
        if inc and not any(p.search(name) for p in inc):
            continue
        if any(p.search(name) for p in exc):
            continue
        out[name] = module
    return out


def select_layers(model: nn.Module,
                  layer_types=('Linear', 'Conv'),
                  include=None,
                  exclude=None) -> 'OrderedDict[str, nn.Module]':
    """The prunable layers of ``model``, ``name -> module`` in module order.

    Args:
        layer_types (str | list[str]): Any of ``'Linear'``, ``'Conv'``
            (Conv1d/2d/3d) and ``'ConvTranspose'``.
        include (str | list[str], optional): Regular expressions; when given,
            a layer is kept only if one of them matches its name
            (``re.search``).
        exclude (str | list[str], optional): Regular expressions; a layer
            whose name one of them matches is dropped.
    """
    types = _types('layer_types', layer_types, LAYER_TYPES)
    out = _filtered(model, types, include, exclude)
    return OrderedDict((k, m) for k, m in out.items()
                       if getattr(m, 'weight', None) is not None)


def select_norms(model: nn.Module,
                 norm_types=('BN', 'LN'),
                 include=None,
                 exclude=None) -> 'OrderedDict[str, nn.Module]':
    """The norm layers with a per-channel scale (``weight`` of one dimension:
    affine BatchNorm, GroupNorm, LayerNorm over the last dimension only),
    ``name -> module``; filters as :func:`select_layers`."""
    types = _types('norm_types', norm_types, NORM_TYPES)
    out = _filtered(model, types, include, exclude)
    return OrderedDict(
        (k, m) for k, m in out.items()
        if getattr(m, 'weight', None) is not None and m.weight.dim() == 1)


def cosine_sparsity(t: float, target: float, begin: int, end: int) -> float:
    """The cosine sparsity schedule.

    ``s(t) = 0`` for ``t <= begin``;
    ``s(t) = target * (1 - cos(pi * (t - begin) / (end - begin))) / 2`` for
    ``begin < t < end``; ``s(t) = target`` for ``t >= end``. ``t`` counts the
    optimizer steps done (``runner.iter + 1`` after an iteration).
    """
    if t <= begin:
        return 0.0
    if t >= end:
        return float(target)
    return float(target) * (1 - math.cos(math.pi * (t - begin) /
                                         (end - begin))) / 2


def _num_pruned(sparsity: float, numel: int) -> int:
    """``floor(sparsity * numel)`` (with a 1e-9 tolerance)."""
    return int(math.floor(sparsity * numel + _EPS))


def _lowest_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """A flat bool mask keeping all but the ``k`` lowest ``scores`` (stable
    sort: ties go to the lower index)."""
    keep = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    if k > 0:
        order = torch.sort(scores.flatten(), stable=True).indices
        keep[order[:k]] = False
    return keep


def apply_weight_masks(layers: Dict[str, nn.Module],
                       masks: Dict[str, torch.Tensor]) -> None:
    """``weight *= mask`` for every masked layer (no autograd)."""
    with torch.no_grad():
        for name, mask in masks.items():
            w = layers[name].weight
            w.mul_(mask.to(device=w.device, dtype=w.dtype))


def apply_channel_masks(model: nn.Module,
                        masks: Dict[str, torch.Tensor]) -> None:
    """Zero the scale and shift (``weight`` and ``bias``) of the masked
    channels of each norm layer named in ``masks``, so that those channels
    output 0: the *masked model* of a structured (early-bird) mask."""
    modules = dict(unwrap(model).named_modules())
    with torch.no_grad():
        for name, mask in masks.items():
            norm = modules[name]
            for p in (norm.weight, getattr(norm, 'bias', None)):
                if p is not None:
                    p.mul_(mask.to(device=p.device, dtype=p.dtype))


def mask_hamming(a: Dict[str, torch.Tensor],
                 b: Dict[str, torch.Tensor]) -> float:
    """The normalised Hamming distance of two masks over the same layers:
    the fraction of channels (of all layers together) whose keep/prune
    decision differs."""
    if set(a) != set(b):
        raise ValueError('mask_hamming: the masks cover different layers: '
                         f'{sorted(set(a) ^ set(b))}')
    diff = sum(int((a[k].cpu() != b[k].cpu()).sum()) for k in a)
    total = sum(a[k].numel() for k in a)
    return diff / total if total else 0.0


def _log(runner, msg: str) -> None:
    logger = getattr(runner, 'logger', None)
    if logger is not None:
        logger.info(msg)


@register_hook()
class MagnitudePruningHook(Hook):
    """Unstructured pruning with a cosine sparsity schedule.

    At the pruning steps ``t`` (``t`` = optimizer steps done, i.e.
    ``runner.iter + 1`` in ``after_train_iter``): ``t = begin + k *
    interval`` for ``k >= 1`` with ``t <= end``, and ``t = end``, the mask of
    the selected layers is recomputed for the sparsity
    ``s(t) = target * (1 - cos(pi * (t - begin) / (end - begin))) / 2``
    (0 before ``begin``, ``target`` from ``end`` on; :func:`cosine_sparsity`).
    A group of ``n`` weights at sparsity ``s`` gets exactly
    ``floor(s * n)`` zeros in its mask: the weights of lowest score, where the
    weights pruned before come first (masks only grow), then the lowest
    scores, ties in index order.

    * ``scope='global'``: one ranking over all the selected layers that are
      not exempt (their weights pooled); ``scope='layer'``: each layer
      separately at ``s``.
    * The ``exempt`` layers (default: the first selected layer and the last,
      usually the stem and the head, as in the paper) are always pruned
      per layer, at ``fraction * s``.
    * ``criterion='magnitude'`` scores by ``|w|``; ``criterion='gradient'``
      by ``|w * grad|``, with ``w`` and ``grad`` taken *before* the
      optimizer step of the pruning iteration: mmengine runs
      forward, backward, step and zero_grad in one ``train_step`` with no
      hook in between, so the hook registers a post-accumulate-grad hook on
      each selected weight (``Tensor.register_post_accumulate_grad_hook``)
      that records ``|w * grad|`` during ``backward`` of the iterations that
      end with a pruning step (with gradient accumulation: the last
      backward's accumulated gradient). Under DDP the scores are averaged
      over the processes so that every process prunes the same weights; an
      AMP loss scale multiplies all scores alike and changes no ranking.
      A layer that got no gradient is scored by ``|w|``.

    The masks are re-applied after every optimizer step
    (``after_train_iter``), so pruned weights stay exactly zero although
    momentum and weight decay move them in the step; the gradient of a
    pruned weight is not masked. Overall sparsity is logged every iteration
    (``train/sparsity`` in the message hub, shown by the logger), per-layer
    sparsity at each pruning step. Masks are saved in checkpoints
    (``checkpoint['mmssm_pruning']``) and restored on ``--resume``.

    Args:
        target (float): Final sparsity, in [0, 1). Defaults to 0.6.
        begin (int): Schedule start (optimizer steps). Defaults to 0.
        end (int): Schedule end, ``> begin``. Defaults to 1000.
        interval (int): Prune every this many steps after ``begin``.
            Defaults to 100.
        scope (str): ``'global'`` or ``'layer'``. Defaults to 'global'.
        criterion (str): ``'magnitude'`` or ``'gradient'``.
            Defaults to 'magnitude'.
        layer_types, include, exclude: Which layers: see
            :func:`select_layers`. Defaults to Linear and Conv, no filter.
        exempt (str | list[str] | None): ``'auto'`` (the first and the last
            selected layer), a list of selected layer names, or None.
            Defaults to 'auto'.
        fraction (float): The exempt layers' share of the sparsity, in
            [0, 1]. Defaults to 0.5.
    """

    priority = 'ABOVE_NORMAL'  # before CheckpointHook (VERY_LOW) saves

    def __init__(self,
                 target: float = 0.6,
                 begin: int = 0,
                 end: int = 1000,
                 interval: int = 100,
                 scope: str = 'global',
                 criterion: str = 'magnitude',
                 layer_types: Union[str, Sequence[str]] = ('Linear', 'Conv'),
                 include=None,
                 exclude=None,
                 exempt: Union[str, Sequence[str], None] = 'auto',
                 fraction: float = 0.5) -> None:
        if not 0 <= target < 1:
            raise ValueError(f'target must be in [0, 1); got {target!r}')
        if not isinstance(begin, int) or begin < 0:
            raise ValueError(f'begin must be an int >= 0; got {begin!r}')
        if not isinstance(end, int) or end <= begin:
            raise ValueError(f'end must be an int > begin ({begin}); '
                             f'got {end!r}')
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'interval must be an int >= 1; got {interval!r}')
        self.target = target
        self.begin = begin
        self.end = end
        self.interval = interval
        self._init_common(scope, criterion, layer_types, include, exclude,
                          exempt, fraction)

    def _init_common(self, scope, criterion, layer_types, include, exclude,
                     exempt, fraction):
        self.scope = _choice('scope', scope, ('global', 'layer'))
        self.criterion = _choice('criterion', criterion,
                                 ('magnitude', 'gradient'))
        _types('layer_types', layer_types, LAYER_TYPES)  # validate
        self.layer_types = layer_types
        self.include = _as_list('include', include)
        self.exclude = _as_list('exclude', exclude)
        for p in self.include + self.exclude:
            re.compile(p)
        if isinstance(exempt, str) and exempt != 'auto':
            raise ValueError("exempt must be 'auto', a list of layer names "
                             f'or None; got {exempt!r}')
        self.exempt = exempt if exempt == 'auto' else _as_list(
            'exempt', exempt)
        if not 0 <= fraction <= 1:
            raise ValueError(f'fraction must be in [0, 1]; got {fraction!r}')
        self.fraction = fraction
        self.layers: Optional[Dict[str, nn.Module]] = None
        self.masks: Dict[str, torch.Tensor] = OrderedDict()
        self.exempt_names: List[str] = []
        self.sparsity = 0.0  # the scheduled sparsity of the masks
        self._loaded: Optional[dict] = None
        self._capture = False
        self._grad_scores: Dict[str, torch.Tensor] = {}
        self._handles: list = []

    # ------------------------------------------------------------ schedule
    def scheduled_sparsity(self, t: int) -> float:
        """``s(t)``, see :func:`cosine_sparsity`."""
        return cosine_sparsity(t, self.target, self.begin, self.end)

    def is_prune_step(self, t: int) -> bool:
        """Whether the masks are recomputed after optimizer step ``t``."""
        return self.begin < t <= self.end and (
            (t - self.begin) % self.interval == 0 or t == self.end)

    # ------------------------------------------------------------ plumbing
    def setup(self, model: nn.Module) -> None:
        """Select the layers of ``model``, start from all-ones masks (or
        those of a loaded checkpoint) and apply them."""
        self.layers = select_layers(model, self.layer_types, self.include,
                                    self.exclude)
        if not self.layers:
            raise ValueError(
                f'{type(self).__name__}: no layer of layer_types '
                f'{self.layer_types!r} passes include={self.include} / '
                f'exclude={self.exclude}')
        names = list(self.layers)
        if self.exempt == 'auto':
            self.exempt_names = [names[0], names[-1]
                                 ] if len(names) > 1 else names[:1]
        else:
            unknown = [n for n in self.exempt if n not in self.layers]
            if unknown:
                raise ValueError(
                    f'exempt: {unknown} are not selected layers; valid '
                    f'choices: {names}')
            self.exempt_names = list(self.exempt)
        self.masks = OrderedDict(
            (n, torch.ones_like(m.weight, dtype=torch.bool))
            for n, m in self.layers.items())
        if self._loaded is not None:
            self._restore(self._loaded)
            self._loaded = None
        apply_weight_masks(self.layers, self.masks)
        self._register_grad_hooks()

    def _register_grad_hooks(self) -> None:
        self._remove_grad_hooks()
        if self.criterion != 'gradient':
            return
        for name, layer in self.layers.items():

            def record(p, name=name):
                if self._capture and p.grad is not None:
                    self._grad_scores[name] = (p.detach() *
                                               p.grad.detach()).abs()

            self._handles.append(
                layer.weight.register_post_accumulate_grad_hook(record))

    def _remove_grad_hooks(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def before_train(self, runner) -> None:
        self.setup(runner.model)

    def after_train(self, runner) -> None:
        self._remove_grad_hooks()

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        self._capture = (self.criterion == 'gradient'
                         and self.is_prune_step(runner.iter + 1))
        self._grad_scores = {}

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if self.layers is None:
            self.setup(runner.model)
        t = runner.iter + 1
        if self.is_prune_step(t):
            self.prune(self.scheduled_sparsity(t), runner)
        self._capture = False
        self._grad_scores = {}
        apply_weight_masks(self.layers, self.masks)
        self._after_step(runner, t)
        hub = getattr(runner, 'message_hub', None)
        if hub is not None:
            hub.update_scalar('train/sparsity', self.overall_sparsity())

    def _after_step(self, runner, t: int) -> None:
        pass

    # ------------------------------------------------------------ pruning
    def scores(self, name: str) -> torch.Tensor:
        """The score of every weight of layer ``name`` (pruned ones: -1)."""
        w = self.layers[name].weight.detach()
        score = self._grad_scores.get(name) if (
            self.criterion == 'gradient') else None
        if score is None:
            score = w.abs()
        elif get_world_size() > 1:
            score = score.clone()
            all_reduce(score, op='mean')
        score = score.float().clone()
        score[~self.masks[name]] = -1.0
        return score

    def _prune_group(self, names: List[str], sparsity: float) -> None:
        scores = torch.cat([self.scores(n).flatten() for n in names])
        pruned_before = sum(int((~self.masks[n]).sum()) for n in names)
        k = max(_num_pruned(sparsity, scores.numel()), pruned_before)
        keep = _lowest_mask(scores, k)
        start = 0
        for n in names:
            m = self.masks[n]
            self.masks[n] = keep[start:start + m.numel()].view_as(m).to(
                m.device)
            start += m.numel()

    def prune(self, sparsity: float, runner=None) -> None:
        """Recompute the masks for ``sparsity`` (exempt layers:
        ``fraction * sparsity``), apply them and log the sparsity."""
        if self.layers is None:
            raise RuntimeError(f'{type(self).__name__}.prune before setup')
        rest = [n for n in self.layers if n not in self.exempt_names]
        for n in self.exempt_names:
            self._prune_group([n], self.fraction * sparsity)
        if self.scope == 'global':
            if rest:
                self._prune_group(rest, sparsity)
        else:
            for n in rest:
                self._prune_group([n], sparsity)
        self.sparsity = sparsity
        apply_weight_masks(self.layers, self.masks)
        if runner is not None:
            per_layer = ', '.join(f'{n} {v:.4f}'
                                  for n, v in self.layer_sparsity().items())
            _log(
                runner, f'{type(self).__name__}: step {runner.iter + 1}, '
                f'scheduled sparsity {sparsity:.4f} (exempt layers '
                f'{self.fraction * sparsity:.4f}), overall '
                f'{self.overall_sparsity():.4f}; per layer: {per_layer}')
            hub = getattr(runner, 'message_hub', None)
            if hub is not None:
                hub.update_info('pruning_layer_sparsity',
                                self.layer_sparsity())

    def layer_sparsity(self) -> 'OrderedDict[str, float]':
        """Share of pruned weights of each layer's mask."""
        return OrderedDict((n, float((~m).sum()) / m.numel())
                           for n, m in self.masks.items())

    def overall_sparsity(self) -> float:
        """Share of pruned weights over all selected layers."""
        total = sum(m.numel() for m in self.masks.values())
        pruned = sum(int((~m).sum()) for m in self.masks.values())
        return pruned / total if total else 0.0

    # ---------------------------------------------------------- checkpoint
    def state(self) -> dict:
        return dict(
            hook=type(self).__name__,
            sparsity=self.sparsity,
            masks=OrderedDict((n, m.cpu()) for n, m in self.masks.items()))

    def _restore(self, state: dict) -> None:
        masks = state.get('masks', {})
        if set(masks) != set(self.masks):
            raise ValueError(
                f'{type(self).__name__}: the checkpoint\'s masks cover '
                f'{sorted(masks)}, the selected layers are '
                f'{sorted(self.masks)}')
        for n, m in masks.items():
            if m.shape != self.masks[n].shape:
                raise ValueError(
                    f'{type(self).__name__}: mask {n} has shape '
                    f'{tuple(m.shape)} in the checkpoint, the weight '
                    f'{tuple(self.masks[n].shape)}')
            self.masks[n] = m.to(device=self.masks[n].device,
                                 dtype=torch.bool)
        self.sparsity = state.get('sparsity', 0.0)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.layers is not None:
            checkpoint[PRUNING_KEY] = self.state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get(PRUNING_KEY)
        if state is None:
            return
        if self.layers is None:
            self._loaded = state
        else:
            self._restore(state)
            apply_weight_masks(self.layers, self.masks)


@register_hook()
class IterativePruningHook(MagnitudePruningHook):
    """Iterative magnitude pruning (IMP): pruning rounds at given steps.

    After optimizer step ``t`` in ``rounds`` (sorted, ``t`` = ``runner.iter
    + 1``), the sparsity becomes ``step * (number of rounds <= t)`` (the
    paper: ``step=0.04`` per round, retraining in between) and the masks are
    recomputed as in :class:`MagnitudePruningHook` (same ``scope``,
    ``criterion``, layer selection and ``exempt``/``fraction``; every group
    gets exactly ``floor(s * n)`` zeros).

    Rewinding (``rewind_iter`` not None): a copy of the selected layers'
    weights is taken after step ``rewind_iter`` (0: before the first step);
    after every later round the surviving weights are set back to that copy
    (``w = w_rewind * mask``). Only the selected layers' weights are rewound:
    biases, norms, other parameters and the optimizer state are not. The copy
    is saved in checkpoints with the masks.

    Args:
        rounds (list[int]): Steps after which a round prunes.
        step (float): Sparsity added per round. Defaults to 0.04.
        rewind_iter (int, optional): Step of the rewinding copy (before the
            first round). Defaults to None (no rewinding).
        Others: as :class:`MagnitudePruningHook`.
    """

    def __init__(self,
                 rounds: Sequence[int],
                 step: float = 0.04,
                 rewind_iter: Optional[int] = None,
                 scope: str = 'global',
                 criterion: str = 'magnitude',
                 layer_types=('Linear', 'Conv'),
                 include=None,
                 exclude=None,
                 exempt='auto',
                 fraction: float = 0.5) -> None:
        if not isinstance(rounds, (list, tuple)) or not rounds or not all(
                isinstance(r, int) and r >= 1 for r in rounds):
            raise ValueError('rounds must be a non-empty list of ints >= 1; '
                             f'got {rounds!r}')
        if len(set(rounds)) != len(rounds):
            raise ValueError(f'rounds must not repeat a step; got {rounds!r}')
        if not 0 < step or step * len(rounds) >= 1:
            raise ValueError('step must be > 0 with step * len(rounds) < 1; '
                             f'got step={step!r} for {len(rounds)} rounds')
        self.rounds = sorted(rounds)
        self.step = step
        if rewind_iter is not None and (not isinstance(rewind_iter, int)
                                        or not 0 <= rewind_iter <
                                        self.rounds[0]):
            raise ValueError('rewind_iter must be None or an int in [0, '
                             f'first round {self.rounds[0]}); got '
                             f'{rewind_iter!r}')
        self.rewind_iter = rewind_iter
        self.rewind_weights: Optional[Dict[str, torch.Tensor]] = None
        self._init_common(scope, criterion, layer_types, include, exclude,
                          exempt, fraction)

    def scheduled_sparsity(self, t: int) -> float:
        """``step * (number of rounds <= t)``."""
        return self.step * sum(1 for r in self.rounds if r <= t)

    def is_prune_step(self, t: int) -> bool:
        return t in self.rounds

    def take_rewind_copy(self) -> None:
        self.rewind_weights = OrderedDict(
            (n, m.weight.detach().clone()) for n, m in self.layers.items())

    def rewind(self) -> None:
        """``w = w_rewind * mask`` for every selected layer."""
        with torch.no_grad():
            for n, m in self.layers.items():
                m.weight.copy_(self.rewind_weights[n].to(m.weight) *
                               self.masks[n].to(m.weight))

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self.rewind_iter == 0 and self.rewind_weights is None:
            self.take_rewind_copy()

    def prune(self, sparsity: float, runner=None) -> None:
        super().prune(sparsity, runner)
        if self.rewind_weights is not None:
            self.rewind()
            if runner is not None:
                _log(
                    runner, f'{type(self).__name__}: surviving weights '
                    f'rewound to step {self.rewind_iter}')

    def _after_step(self, runner, t: int) -> None:
        if self.rewind_iter is not None and t == self.rewind_iter:
            self.take_rewind_copy()

    def state(self) -> dict:
        state = super().state()
        if self.rewind_weights is not None:
            state['rewind'] = OrderedDict(
                (n, w.cpu()) for n, w in self.rewind_weights.items())
        return state

    def _restore(self, state: dict) -> None:
        super()._restore(state)
        if state.get('rewind') is not None:
            self.rewind_weights = OrderedDict(
                (n, w.to(self.layers[n].weight))
                for n, w in state['rewind'].items())


@register_hook()
class EarlyBirdHook(Hook):
    """Early-bird tickets (You et al., 2020): structured channel masks from
    the norm layers' scales, and the step at which they stop changing.

    Every ``interval`` iterations (or epochs with ``by_epoch=True``) the
    channels of the selected norm layers (affine BatchNorm and LayerNorm by
    default, with a 1-D ``weight``) are ranked by ``|gamma|``: with
    ``scope='global'`` over all layers together, ``floor(ratio * N)`` of the
    ``N`` channels of lowest ``|gamma|`` are pruned (``scope='layer'``:
    ``floor(ratio * C)`` per layer of ``C`` channels; ties in index order).
    The normalised Hamming distance to the previous check's mask
    (:func:`mask_hamming`: the fraction of all channels whose decision
    changed) is logged; when it is below ``threshold`` at ``patience``
    consecutive checks, the ticket is declared: logged, and the mask (with the
    model's weights at that moment unless ``save_weights=False``) saved to
    ``work_dir/filename`` as a checkpoint-like ``.pth`` (``{'meta',
    'state_dict', 'mmssm_early_bird': {'masks', ...}}``) that
    ``tools/model_converters/prune2dense.py`` turns into a smaller model.
    The hook does not change the model nor stop training (the paper then
    prunes the ticket and retrains it). Its state (previous mask, counter,
    distances, the ticket) is saved in checkpoints and restored on resume.

    Args:
        ratio (float): Share of channels pruned, in [0, 1). Defaults to 0.5.
        interval (int): Check every this many iterations / epochs.
            Defaults to 1.
        by_epoch (bool): Count ``interval`` in epochs. Defaults to False.
        threshold (float): Distance under which a check counts as stable.
            Defaults to 0.1.
        patience (int): Consecutive stable checks that declare the ticket.
            Defaults to 5.
        scope (str): ``'global'`` or ``'layer'``. Defaults to 'global'.
        norm_types (str | list[str]): Any of ``'BN'``, ``'LN'``, ``'GN'``.
            Defaults to ('BN', 'LN').
        include, exclude: Name filters as :func:`select_layers`.
        filename (str): The ticket's file in ``runner.work_dir``.
            Defaults to 'early_bird_ticket.pth'.
        save_weights (bool): Store the model's state dict with the ticket.
            Defaults to True.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self,
                 ratio: float = 0.5,
                 interval: int = 1,
                 by_epoch: bool = False,
                 threshold: float = 0.1,
                 patience: int = 5,
                 scope: str = 'global',
                 norm_types=('BN', 'LN'),
                 include=None,
                 exclude=None,
                 filename: str = 'early_bird_ticket.pth',
                 save_weights: bool = True) -> None:
        if not 0 <= ratio < 1:
            raise ValueError(f'ratio must be in [0, 1); got {ratio!r}')
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'interval must be an int >= 1; got {interval!r}')
        if not 0 <= threshold <= 1:
            raise ValueError(f'threshold must be in [0, 1]; got {threshold!r}')
        if not isinstance(patience, int) or patience < 1:
            raise ValueError(f'patience must be an int >= 1; got {patience!r}')
        self.ratio = ratio
        self.interval = interval
        self.by_epoch = bool(by_epoch)
        self.threshold = threshold
        self.patience = patience
        self.scope = _choice('scope', scope, ('global', 'layer'))
        _types('norm_types', norm_types, NORM_TYPES)
        self.norm_types = norm_types
        self.include = _as_list('include', include)
        self.exclude = _as_list('exclude', exclude)
        self.filename = filename
        self.save_weights = save_weights
        self.prev_mask: Optional[Dict[str, torch.Tensor]] = None
        self.distances: List[float] = []
        self.stable_checks = 0
        self.ticket: Optional[Dict[str, torch.Tensor]] = None
        self.ticket_step: Optional[int] = None
        self.ticket_path: Optional[str] = None

    def channel_masks(self, model: nn.Module) -> Dict[str, torch.Tensor]:
        """The structured mask of ``model`` now (``True`` = kept)."""
        norms = select_norms(model, self.norm_types, self.include,
                             self.exclude)
        if not norms:
            raise ValueError(
                f'EarlyBirdHook: no norm layer of norm_types '
                f'{self.norm_types!r} with a per-channel scale passes '
                f'include={self.include} / exclude={self.exclude}')
        gammas = OrderedDict(
            (n, m.weight.detach().abs().float().cpu())
            for n, m in norms.items())
        masks = OrderedDict()
        if self.scope == 'global':
            flat = torch.cat(list(gammas.values()))
            keep = _lowest_mask(flat, _num_pruned(self.ratio, flat.numel()))
            start = 0
            for n, g in gammas.items():
                masks[n] = keep[start:start + g.numel()]
                start += g.numel()
        else:
            for n, g in gammas.items():
                masks[n] = _lowest_mask(g, _num_pruned(self.ratio, g.numel()))
        return masks

    def check(self, runner, step: int) -> Optional[float]:
        """One check at ``step`` (iteration or epoch count); returns the
        distance to the previous mask (None at the first check)."""
        mask = self.channel_masks(runner.model)
        dist = None
        if self.prev_mask is not None:
            dist = mask_hamming(mask, self.prev_mask)
            self.distances.append(dist)
            self.stable_checks = self.stable_checks + 1 if (
                dist < self.threshold) else 0
            unit = 'epoch' if self.by_epoch else 'iter'
            _log(
                runner, f'EarlyBirdHook: {unit} {step}, mask distance '
                f'{dist:.4f} (threshold {self.threshold}; stable '
                f'{self.stable_checks}/{self.patience})')
            hub = getattr(runner, 'message_hub', None)
            if hub is not None:
                hub.update_scalar('train/early_bird_distance', dist)
        self.prev_mask = mask
        if self.ticket is None and self.stable_checks >= self.patience:
            self.declare(runner, step, mask)
        return dist

    def declare(self, runner, step: int, mask) -> None:
        self.ticket = OrderedDict((n, m.clone()) for n, m in mask.items())
        self.ticket_step = step
        kept = sum(int(m.sum()) for m in mask.values())
        total = sum(m.numel() for m in mask.values())
        unit = 'epoch' if self.by_epoch else 'iter'
        work_dir = getattr(runner, 'work_dir', None)
        if work_dir is not None:
            self.ticket_path = osp.join(work_dir, self.filename)
            if is_main_process():
                payload = {
                    'meta': dict(early_bird_step=step, unit=unit,
                                 ratio=self.ratio,
                                 distances=list(self.distances)),
                    EARLY_BIRD_KEY: dict(masks=self.ticket, ratio=self.ratio,
                                         step=step, unit=unit),
                }
                if self.save_weights:
                    payload['state_dict'] = OrderedDict(
                        (k, v.detach().cpu()) for k, v in unwrap(
                            runner.model).state_dict().items())
                torch.save(payload, self.ticket_path)
        _log(
            runner, f'EarlyBirdHook: early-bird ticket at {unit} {step}: '
            f'distance < {self.threshold} for {self.patience} consecutive '
            f'checks; {kept}/{total} channels kept'
            + (f'; saved to {self.ticket_path}' if self.ticket_path else ''))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if not self.by_epoch and (runner.iter + 1) % self.interval == 0:
            self.check(runner, runner.iter + 1)

    def after_train_epoch(self, runner) -> None:
        if self.by_epoch and (runner.epoch + 1) % self.interval == 0:
            self.check(runner, runner.epoch + 1)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[EARLY_BIRD_KEY] = dict(
            prev_mask=self.prev_mask,
            distances=list(self.distances),
            stable_checks=self.stable_checks,
            masks=self.ticket,
            step=self.ticket_step,
            ratio=self.ratio,
            unit='epoch' if self.by_epoch else 'iter')

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get(EARLY_BIRD_KEY)
        if state is None:
            return
        self.prev_mask = state.get('prev_mask')
        self.distances = list(state.get('distances', []))
        self.stable_checks = state.get('stable_checks', 0)
        self.ticket = state.get('masks')
        self.ticket_step = state.get('step')
