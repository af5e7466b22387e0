"""What every mmssm backbone shares: one meaning of each training option,
one checkpoint path, and the public plain-backbone interface.

:class:`BaseBackbone` gives every family (MambaOut, GroupMamba, Vim and the
:class:`~mmssm.models.backbones.PlainAdapter`)

* ``frozen_stages`` with the meaning of mmdet's Swin and mmpretrain's
  backbones: ``-1`` freezes nothing, ``0`` the stem (patch embedding, and
  position embedding / class token where they exist), ``k > 0`` the stem and
  the first ``k`` stages (for a plain backbone: layers), each with what a
  family lists in :meth:`BaseBackbone.stage_modules` (its downsampling layer
  and output norm). Frozen parts are in eval mode with
  ``requires_grad=False``, also after ``train()``.
* ``norm_eval`` only where BatchNorm exists: ``True`` keeps the BatchNorm
  layers (running statistics) in eval mode while training; a backbone
  without BatchNorm refuses ``norm_eval=True`` with a ``ValueError`` (it would
  do nothing: LayerNorm and RMSNorm keep no statistics).
* one ``with_cp`` rule (:func:`~mmssm.models.layers.backbone_utils.
  maybe_checkpoint`): checkpoint a block in training mode while autograd
  records.
* one checkpoint path: a ``load_state_dict`` pre-hook calls
  :meth:`BaseBackbone.convert_checkpoint` (official/timm layouts -> mmssm),
  so ``init_cfg=dict(type='Pretrained')``, ``load_from``/``load_checkpoint``,
  ``Module.load_state_dict`` and the converters all go through the same
  conversion; ``init_cfg=dict(type='Pretrained', checkpoint=...)`` loads
  strictly (:func:`mmssm.utils.checkpoint.load_pretrained`; add
  ``strict=False`` for a partial load), where mmengine's ``PretrainedInit``
  would only log a wrong checkpoint.

:class:`PlainBackboneMixin` is the public interface through which
:class:`~mmssm.engine.hooks.SLWSHook` and
:class:`~mmssm.models.backbones.PlainAdapter` drive a plain (single-scale
token sequence) backbone layer by layer; :func:`check_plain_backbone` checks
an object against it (duck-typed: a class need not inherit the mixin).
"""
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from mmssm.utils.checkpoint import DEFAULT_KEYS, load_pretrained
from ..layers.backbone_utils import maybe_checkpoint

__all__ = [
    'BaseBackbone', 'PlainBackboneMixin', 'PLAIN_BACKBONE_INTERFACE',
    'check_plain_backbone'
]


def _convert_on_load(module: 'BaseBackbone', state_dict: Dict, prefix: str,
                     *args) -> None:
    """``load_state_dict`` pre-hook of every mmssm backbone."""
    module.convert_checkpoint(state_dict, prefix)


def split_pretrained(init_cfg) -> Tuple[Optional[dict], object]:
    """Split an ``init_cfg`` (dict or list) into its ``Pretrained`` entry
    (or None) and the rest (None, a dict or a list)."""
    cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else \
        [init_cfg] if init_cfg is not None else []
    pretrained = [c for c in cfgs if c.get('type') == 'Pretrained']
    others = [c for c in cfgs if c.get('type') != 'Pretrained']
    if len(pretrained) > 1:
        raise ValueError(f'init_cfg has {len(pretrained)} Pretrained '
                         'entries; give one checkpoint')
    if not others:
        rest = None
    elif isinstance(init_cfg, dict):
        rest = others[0]
    else:
        rest = others
    return (pretrained[0] if pretrained else None), rest


class BaseBackbone(BaseModule):
    """Base class of the mmssm backbones (see the module docstring).

    A subclass calls :meth:`_init_training_options` early in ``__init__``
    (it validates and stores ``frozen_stages``, ``norm_eval`` and
    ``with_cp``) and :meth:`_finish_init` at its end (norm_eval check,
    freezing, checkpoint pre-hook); it implements :meth:`stem_modules` and
    :meth:`stage_modules` when it has ``frozen_stages``, and
    :meth:`convert_checkpoint` when official layouts differ from its own.

    ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=None,
    strict=True, map_location='cpu')`` loads through
    :func:`mmssm.utils.checkpoint.load_pretrained`; other ``init_cfg``
    entries, or none, give the family's random init
    (:meth:`init_random_weights`).
    """

    #: Checkpoint entries holding the weights, in order of preference.
    checkpoint_keys: Sequence[str] = DEFAULT_KEYS

    def _init_training_options(self,
                               num_stages: int = 0,
                               frozen_stages: int = -1,
                               norm_eval: bool = False,
                               with_cp: bool = False) -> None:
        name = type(self).__name__
        if (not isinstance(frozen_stages, int)
                or isinstance(frozen_stages, bool)
                or not -1 <= frozen_stages <= num_stages):
            raise ValueError(
                f'{name} frozen_stages must be an int in [-1, {num_stages}] '
                '(-1: nothing frozen, 0: the stem, k: the stem and the first '
                f'k of its {num_stages} stages), got {frozen_stages!r}')
        self.frozen_stages = frozen_stages
        self.norm_eval = bool(norm_eval)
        self.with_cp = bool(with_cp)

    def _finish_init(self) -> None:
        if self.norm_eval and not self._own_batch_norms():
            raise ValueError(
                f'{type(self).__name__} has no BatchNorm layer, so '
                'norm_eval=True (which keeps BatchNorm statistics fixed '
                'while training) would do nothing; remove it')
        self.register_load_state_dict_pre_hook(_convert_on_load)
        self._freeze_stages()

    # ------------------------------------------------------ frozen stages
    def stem_modules(self) -> List[nn.Module]:
        """Modules and parameters frozen by ``frozen_stages >= 0``."""
        raise NotImplementedError(
            f'{type(self).__name__} does not support frozen_stages')

    def stage_modules(self, index: int) -> List[nn.Module]:
        """Modules and parameters of stage ``index`` (0-based) frozen by
        ``frozen_stages > index``."""
        raise NotImplementedError(
            f'{type(self).__name__} does not support frozen_stages')

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        items = list(self.stem_modules())
        for i in range(self.frozen_stages):
            items += list(self.stage_modules(i))
        for item in items:
            if isinstance(item, nn.Parameter):
                item.requires_grad = False
                continue
            item.eval()
            for param in item.parameters():
                param.requires_grad = False

    # --------------------------------------------------------- norm_eval
    def _own_batch_norms(self) -> List[nn.Module]:
        """BatchNorm layers of this backbone, not of a nested mmssm
        backbone (which applies its own ``norm_eval``)."""
        nested = [
            name + '.' for name, m in self.named_modules()
            if name and isinstance(m, BaseBackbone)
        ]
        return [
            m for name, m in self.named_modules()
            if isinstance(m, _BatchNorm) and not name.startswith(
                tuple(nested))
        ]

    def train(self, mode: bool = True) -> 'BaseBackbone':
        """Set the mode; frozen stages stay in eval mode, and so do the
        BatchNorm layers with ``norm_eval``."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self._own_batch_norms():
                module.eval()
        return self

    # ------------------------------------------------------------ with_cp
    def checkpointed(self, fn, *args):
        """``fn(*args)`` under the ``with_cp`` rule
        (:func:`~mmssm.models.layers.backbone_utils.maybe_checkpoint`)."""
        return maybe_checkpoint(self.with_cp, self.training, fn, *args)

    # -------------------------------------------------------- checkpoints
    def convert_checkpoint(self, state_dict: Dict[str, torch.Tensor],
                           prefix: str = '') -> List[str]:
        """Convert the keys under ``prefix`` to this backbone's layout, in
        place (also run by the ``load_state_dict`` pre-hook). Must be
        idempotent: an mmssm state dict passes unchanged.

        Returns:
            list[str]: Keys of this backbone (without ``prefix``) that the
            detected source layout lacks by design (they keep their
            initialisation when loading strictly).
        """
        return []

    def _drop_checkpoint_keys(self, state_dict: Dict[str, torch.Tensor],
                              prefix: str, local_prefixes: Tuple[str, ...],
                              what: str) -> List[str]:
        """Delete (and log) the keys under ``prefix + p`` for every ``p`` of
        ``local_prefixes``: checkpoint parts this backbone does not use by
        design (e.g. a classifier head). Returns them without ``prefix``."""
        dropped = [
            k[len(prefix):] for k in state_dict if k.startswith(prefix)
            and k[len(prefix):].startswith(tuple(local_prefixes))
        ]
        for key in dropped:
            del state_dict[prefix + key]
        if dropped:
            print_log(
                f'{type(self).__name__}: ignored the {len(dropped)} {what} '
                f'keys of the checkpoint: {sorted(dropped)[:8]}'
                f'{" ..." if len(dropped) > 8 else ""}',
                logger='current',
                level=logging.INFO)
        return dropped

    def init_random_weights(self) -> None:
        """The family's random initialisation (default: mmengine's
        ``init_cfg`` handling)."""
        BaseModule.init_weights(self)

    def init_weights(self) -> None:
        """Random init, or a strict load of ``init_cfg`` ``Pretrained``."""
        pretrained, others = split_pretrained(self.init_cfg)
        if pretrained is None:
            self.init_random_weights()
            return
        unknown = set(pretrained) - {
            'type', 'checkpoint', 'prefix', 'strict', 'map_location'
        }
        if unknown or 'checkpoint' not in pretrained:
            raise ValueError(
                f'{type(self).__name__} init_cfg Pretrained takes checkpoint '
                '(required), prefix, strict and map_location; got '
                f'{sorted(pretrained)}')
        strict = pretrained.get('strict', True)
        if not strict:
            # a partial load: what the checkpoint lacks keeps the random init
            saved, self.init_cfg = self.init_cfg, others
            try:
                self.init_random_weights()
            finally:
                self.init_cfg = saved
        load_pretrained(
            self,
            pretrained['checkpoint'],
            prefix=pretrained.get('prefix'),
            strict=strict,
            map_location=pretrained.get('map_location', 'cpu'),
            keys=self.checkpoint_keys)
        self._is_init = True


#: Members of the plain-backbone interface (see :class:`PlainBackboneMixin`).
PLAIN_BACKBONE_INTERFACE = ('embed_dims', 'in_channels', 'num_layers',
                            'layers', 'token_stride', 'grid_size',
                            'prepare_tokens', 'token_layout', 'run_layer',
                            'final_stream_norm')


class PlainBackboneMixin:
    """The public interface of a plain (single-scale token sequence)
    backbone, used by :class:`~mmssm.engine.hooks.SLWSHook` and
    :class:`~mmssm.models.backbones.PlainAdapter`.

    A plain backbone provides

    * ``embed_dims`` (token width), ``in_channels`` (image channels),
      ``num_layers`` and ``layers`` (an ``nn.ModuleList`` of ``num_layers``
      modules, each called as ``layer(hidden, residual) -> (hidden,
      residual)`` on ``(B, L, C)`` tokens; ``residual`` is None before the
      first layer; the token stream after a layer is ``residual + hidden``);
    * ``token_stride`` (pixels between neighbouring tokens) and
      ``grid_size(h, w)`` (the token grid of an ``h x w`` image);
    * ``prepare_tokens(x) -> (hidden, grid, extra)``: images ``(B, C, H, W)``
      to the input tokens of layer 0 (patch embedding, extra tokens,
      position embedding), the grid ``(h, w)`` and the family's description
      of the extra tokens;
    * ``token_layout(grid, device=None) -> (patch_index, extra_index)``:
      positions of the ``h * w`` patch tokens (row-major) and of the extra
      tokens (class token, registers; may be empty) in the sequence;
    * ``run_layer(index, hidden, residual) -> (hidden, residual)``: layer
      ``index`` under the backbone's ``with_cp`` rule;
    * ``final_stream_norm(stream)``: the norm applied to the last layer's
      stream (identity when the backbone has none);
    * optionally (for layer-wise lr decay, also through the adapter)
      ``get_layer_depth(name, prefix)``, with
      ``num_layers + 2`` depths: 0 for the embeddings, ``i + 1`` for layer
      ``i``, ``num_layers + 1`` for everything else.

    This mixin implements ``run_layer`` for a :class:`BaseBackbone`.
    """

    def run_layer(self, index: int, hidden: torch.Tensor,
                  residual: Optional[torch.Tensor]):
        """Run layer ``index`` (gradient checkpointing per ``with_cp``)."""
        return maybe_checkpoint(self.with_cp, self.training,
                                self.layers[index], hidden, residual)


def check_plain_backbone(backbone, user: str) -> None:
    """Raise a ``TypeError`` naming what ``backbone`` lacks of the
    plain-backbone interface (:class:`PlainBackboneMixin`).

    Args:
        backbone: The object to check.
        user (str): Who needs it (for the message), e.g. ``'SLWSHook'``.
    """
    missing = [n for n in PLAIN_BACKBONE_INTERFACE
               if not hasattr(backbone, n)]
    if not missing:
        layers = backbone.layers
        if not isinstance(layers, nn.ModuleList) or \
                len(layers) != backbone.num_layers or not len(layers):
            raise TypeError(
                f'{user} needs a plain mmssm sequence backbone whose `layers`'
                f' is a non-empty nn.ModuleList of num_layers modules; '
                f'{type(backbone).__name__} has {type(layers).__name__} '
                f'`layers` and num_layers={backbone.num_layers}')
        return
    raise TypeError(
        f'{user} needs a plain mmssm sequence backbone implementing the '
        'plain-backbone interface (mmssm.models.backbones.base.'
        f'PlainBackboneMixin, e.g. Vim); {type(backbone).__name__} lacks '
        f'{missing}')
