"""Stochastic layer-wise shuffle (SLWS) as a plug-and-play mmengine hook.

Huang et al., 2024, "Stochastic Layer-Wise Shuffle: A Good Practice to Improve
Vision Mamba Training" (papers/shufflemamba-slws.txt): during training, layer
``l`` of a plain sequence backbone runs, with probability
``p_l = linspace(0, P_L, L)[l]`` (the first layer never, the last with
``P_L``), on a randomly permuted token sequence, and its outputs are put back
in the original order, so the rest of the network sees nothing but a
regularised layer. One Bernoulli draw per layer per iteration; one
permutation per layer per iteration, shared by the whole batch; class token
and registers are shuffled with the patches. Never active in eval.

The hook does not change the backbone: it registers a forward pre-hook
(permute every token tensor of the layer's inputs, e.g. ``hidden`` and
``residual`` of a Vim layer) and a forward hook (restore the order of every
token tensor of its outputs) on each module of ``backbone.layers``. It works
with any backbone implementing the public plain-backbone interface
(:class:`mmssm.models.backbones.base.PlainBackboneMixin`), also inside a
wrapper exposing it as ``plain_backbone``
(:class:`~mmssm.models.PlainAdapter`).
"""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmssm.models.backbones.base import check_plain_backbone
from mmssm.registry import register_hook

__all__ = ['SLWSHook']


@register_hook()
class SLWSHook(Hook):
    """Stochastic layer-wise shuffle of the tokens of a plain backbone.

    Works with any plain backbone (found at ``model.backbone``, or the model
    itself, after unwrapping DDP; a wrapper such as
    :class:`~mmssm.models.PlainAdapter` gives it as ``plain_backbone``)
    implementing the plain-backbone interface
    (:class:`~mmssm.models.backbones.base.PlainBackboneMixin`), whose
    ``layers`` take and return token tensors ``(B, L, C)`` (tokens on
    dimension ``token_dim``), e.g. :class:`mmssm.models.Vim`.

    Args:
        prob (float): ``P_L``, the shuffle probability of the last layer
            (ShuffleMamba: 0.5 for M/B, 0.6 for L, 0.1 with registers).
            Defaults to 0.5.
        warmup_iters (int): Ramp ``P_L`` linearly from 0 over this many
            iterations (0: constant ``P_L`` from the start). Defaults to 0.
        token_dim (int): Token dimension of the layers' tensors.
            Defaults to 1.
        seed (int, optional): Seed of the hook's own random generator (draws
            and permutations); ``None`` seeds it from torch's global RNG.
            Defaults to None.
        log_interval (int): Every this many iterations the per-layer firing
            rates so far are written to the log. Defaults to 1000.
    """

    priority = 'NORMAL'

    def __init__(self,
                 prob: float = 0.5,
                 warmup_iters: int = 0,
                 token_dim: int = 1,
                 seed: Optional[int] = None,
                 log_interval: int = 1000) -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f'SLWSHook prob must be in [0, 1], got {prob}')
        if warmup_iters < 0:
            raise ValueError(f'warmup_iters must be >= 0, got {warmup_iters}')
        self.prob = prob
        self.warmup_iters = warmup_iters
        self.token_dim = token_dim
        self.log_interval = log_interval
        self.generator = torch.Generator()
        self.generator.manual_seed(
            seed if seed is not None else int(
                torch.randint(0, 2**62, (1, )).item()))
        self.layers: Optional[nn.ModuleList] = None
        self._handles: List = []
        self._active: Dict[int, bool] = {}
        self._perms: Dict[Tuple, Tuple[torch.Tensor, torch.Tensor]] = {}
        self.fire_counts: Optional[torch.Tensor] = None
        self.num_draws = 0

    # ------------------------------------------------------------ plumbing
    @staticmethod
    def find_backbone(model: nn.Module) -> nn.Module:
        """The plain backbone of ``model``: ``model.backbone`` (or
        ``model``), or its ``plain_backbone``; a ``TypeError`` names what it
        lacks of the plain-backbone interface."""
        if is_model_wrapper(model):
            model = model.module
        backbone = getattr(model, 'backbone', model)
        backbone = getattr(backbone, 'plain_backbone', backbone)
        check_plain_backbone(backbone, 'SLWSHook')
        return backbone

    @classmethod
    def find_layers(cls, model: nn.Module) -> nn.ModuleList:
        """The ``layers`` of the plain backbone of ``model``."""
        return cls.find_backbone(model).layers

    def attach(self, model: nn.Module) -> None:
        """Install the pre/post forward hooks on every layer of ``model``."""
        self.detach()
        self.layers = self.find_layers(model)
        for index, layer in enumerate(self.layers):
            self._handles.append(
                layer.register_forward_pre_hook(
                    self._make_pre_hook(index), with_kwargs=True))
            self._handles.append(
                layer.register_forward_hook(self._make_post_hook(index)))
        self.fire_counts = torch.zeros(len(self.layers), dtype=torch.long)
        self.num_draws = 0

    def detach(self) -> None:
        """Remove the installed hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._active = {}
        self._perms = {}

    def layer_probs(self, cur_iter: Optional[int] = None) -> torch.Tensor:
        """Shuffle probability of every layer at iteration ``cur_iter``."""
        prob = self.prob
        if self.warmup_iters and cur_iter is not None:
            prob *= min(1.0, cur_iter / self.warmup_iters)
        return torch.linspace(0, prob, len(self.layers))

    def draw(self, cur_iter: Optional[int] = None) -> torch.Tensor:
        """Draw which layers shuffle in this iteration (one Bernoulli draw
        per layer) and forget the previous iteration's permutations."""
        if self.layers is None:
            raise RuntimeError('SLWSHook.draw() before attach()')
        probs = self.layer_probs(cur_iter)
        fire = torch.rand(len(probs), generator=self.generator) < probs
        self._active = {i: bool(f) for i, f in enumerate(fire)}
        self._perms = {}
        self.fire_counts += fire.long()
        self.num_draws += 1
        return fire

    def clear(self) -> None:
        """Stop shuffling until the next :meth:`draw`."""
        self._active = {}
        self._perms = {}

    def _permutation(self, index: int, length: int, device):
        """The permutation of layer ``index`` for this iteration (the same
        one for every call of the iteration, e.g. checkpoint recomputes)."""
        key = (index, length, str(device))
        if key not in self._perms:
            perm = torch.randperm(length, generator=self.generator)
            self._perms[key] = (perm.to(device), perm.argsort().to(device))
        return self._perms[key]

    def _is_on(self, index: int, layer: nn.Module) -> bool:
        return layer.training and self._active.get(index, False)

    def _map(self, value, index, restore):
        """Permute (or restore) every token tensor in ``value``."""
        if isinstance(value, torch.Tensor):
            if value.dim() <= self.token_dim:
                return value
            perm, inv = self._permutation(index,
                                          value.shape[self.token_dim],
                                          value.device)
            return value.index_select(self.token_dim, inv if restore else perm)
        if isinstance(value, (tuple, list)):
            return type(value)(self._map(v, index, restore) for v in value)
        if isinstance(value, dict):
            return {k: self._map(v, index, restore) for k, v in value.items()}
        return value

    def _make_pre_hook(self, index: int):

        def pre_hook(layer, args, kwargs):
            if not self._is_on(index, layer):
                return None
            return (self._map(args, index, False),
                    self._map(kwargs, index, False))

        return pre_hook

    def _make_post_hook(self, index: int):

        def post_hook(layer, args, output):
            if not self._is_on(index, layer):
                return None
            return self._map(output, index, True)

        return post_hook

    # ------------------------------------------------------- runner hooks
    def before_train(self, runner) -> None:
        self.attach(runner.model)
        probs = [round(p, 3) for p in self.layer_probs(None).tolist()]
        warmup = (f' (warm-up {self.warmup_iters} iters)'
                  if self.warmup_iters else '')
        runner.logger.info(
            f'SLWSHook: {len(self.layers)} layers, P_L={self.prob}{warmup}, '
            f'per-layer probabilities {probs}')

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        fire = self.draw(runner.iter)
        hub = runner.message_hub
        hub.update_scalar('train/slws_fire_rate', fire.float().mean().item())
        if self.warmup_iters:
            hub.update_scalar('train/slws_prob',
                              self.layer_probs(runner.iter)[-1].item())

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        self.clear()
        if self.every_n_train_iters(runner, self.log_interval):
            runner.logger.info(f'SLWSHook: {self.summary()}')

    def after_train(self, runner) -> None:
        runner.logger.info(f'SLWSHook: {self.summary()}')
        self.detach()

    def summary(self) -> str:
        """Per-layer firing rates so far."""
        if not self.num_draws:
            return 'no draws yet'
        rates = (self.fire_counts.float() / self.num_draws).tolist()
        return (f'firing rate per layer over {self.num_draws} iterations: '
                f'{[round(r, 3) for r in rates]}')
