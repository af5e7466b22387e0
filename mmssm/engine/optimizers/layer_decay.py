"""Optimizer wrapper constructor of mmssm: layer-wise lr decay and the one
no-weight-decay rule.

Fine-tuning a pre-trained plain backbone (BEiT, Clark et al. ELECTRA; used by
Vim for UperNet and ViTDet) scales the learning rate of depth ``d`` out of
``num_depths`` by ``decay ** (num_depths - 1 - d)``: the embeddings (depth 0)
learn slowest, the last layer almost at the base rate, the neck and heads
(top depth) at the base rate.

One constructor serves mmdet, mmseg and mmpretrain models and every mmssm
backbone: it asks the backbone for the depth of every parameter with
mmpretrain's protocol ``backbone.get_layer_depth(name, 'backbone.') ->
(depth, num_depths)`` (or ``model.get_layer_depth(name)`` for a bare
backbone), and puts every parameter outside the backbone at the top depth.
Hierarchical backbones (MambaOut, GroupMamba) have no layer depths: they use
it with ``layer_decay_rate=1`` (every parameter at the base lr), for the
weight-decay rule alone.

Weight decay, decided per parameter in this order (the first rule that
applies):

1. a parameter flagged ``param._no_weight_decay = True`` by the module that
   creates it gets none. This flag is mmssm's one way to say "never decay
   this tensor": the Mamba/SS2D mixers flag ``A_log``/``A_b_log``/``D``/
   ``D_b`` and ``A_logs``/``Ds``; embeddings and tokens are flagged where
   they are created;
2. parameters of normalisation layers (BatchNorm, GroupNorm, LayerNorm and
   their subclasses, modules whose class name ends in ``Norm``/``Norm2d``
   such as RMSNorm) get ``norm_decay_mult`` (0 by default);
3. other 1-D parameters (biases, ``skip_scale``, layer scales) get
   ``flat_decay_mult`` (0 by default);
4. everything else gets the optimizer's weight decay.

``custom_keys`` (mmengine's option) then applies on top, for lr multipliers
such as a faster head; mmssm's configs do not use it for weight decay.
"""
from typing import Dict, List, Optional, Tuple

import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor

from mmssm.registry import register_optim_constructor

__all__ = ['SSMLayerDecayOptimWrapperConstructor', 'no_weight_decay']

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm,
               nn.modules.instancenorm._InstanceNorm, nn.GroupNorm,
               nn.LayerNorm)


def no_weight_decay(param: nn.Parameter) -> bool:
    """Whether ``param`` carries mmssm's no-weight-decay flag."""
    return bool(getattr(param, '_no_weight_decay', False))


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, _NORM_TYPES) or type(
        module).__name__.lower().endswith(('norm', 'norm2d'))


@register_optim_constructor()
class SSMLayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Optimizer wrapper constructor with layer-wise lr decay.

    ``paramwise_cfg`` keys:

    - ``layer_decay_rate`` (float): the decay per depth. Defaults to 1
      (no decay).
    - ``norm_decay_mult`` (float): weight-decay multiplier of norm layers.
      Defaults to 0.
    - ``flat_decay_mult`` (float): weight-decay multiplier of the other 1-D
      parameters (biases, scales). Defaults to 0.
    - ``custom_keys`` (dict): ``{substring: dict(lr_mult=...,
      decay_mult=...)}`` applied on top (the longest matching key wins), as
      in mmengine.

    Parameters flagged ``_no_weight_decay`` never decay (module docstring).
    A model whose backbone has no ``get_layer_depth`` (a hierarchical
    backbone) is accepted with ``layer_decay_rate=1`` only.

    Every parameter group holds the parameters of one (depth, lr, weight
    decay) combination and carries ``layer_id``, ``lr_scale`` and
    ``param_names`` for inspection. Frozen parameters (``requires_grad=False``)
    are left out of the optimizer.

    Args:
        optim_wrapper_cfg (dict): The optimizer wrapper config.
        paramwise_cfg (dict, optional): See above.
    """

    ALLOWED_KEYS = ('layer_decay_rate', 'norm_decay_mult', 'flat_decay_mult',
                    'custom_keys')

    def __init__(self,
                 optim_wrapper_cfg: dict,
                 paramwise_cfg: Optional[dict] = None) -> None:
        paramwise_cfg = dict(paramwise_cfg or {})
        unknown = set(paramwise_cfg) - set(self.ALLOWED_KEYS)
        if unknown:
            raise KeyError(f'{type(self).__name__}: unknown paramwise_cfg '
                           f'keys {sorted(unknown)}; allowed: '
                           f'{list(self.ALLOWED_KEYS)}')
        rate = paramwise_cfg.setdefault('layer_decay_rate', 1.0)
        if not 0 < rate <= 1:
            raise ValueError(f'layer_decay_rate must be in (0, 1], got {rate}')
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def add_params(self,
                   params: List[dict],
                   module: nn.Module,
                   prefix: str = '',
                   **kwargs) -> None:
        cfg = dict(self.paramwise_cfg or {})
        decay_rate = cfg.get('layer_decay_rate', 1.0)
        norm_mult = cfg.get('norm_decay_mult', 0.0)
        flat_mult = cfg.get('flat_decay_mult', 0.0)
        custom_keys = cfg.get('custom_keys', {})
        sorted_keys = sorted(sorted(custom_keys), key=len, reverse=True)
        base_wd = self.base_wd or 0.0
        get_depth = self._depth_getter(module, decay_rate)

        norm_params = {
            id(p)
            for m in module.modules() if _is_norm(m)
            for p in m.parameters(recurse=False)
        }
        groups: Dict[Tuple, dict] = {}
        for name, param in module.named_parameters(prefix=prefix.rstrip('.')):
            if not param.requires_grad:
                continue
            layer_id, num_depths = get_depth(name)
            lr_scale = decay_rate**(num_depths - 1 - layer_id)
            leaf = name.rsplit('.', 1)[-1]
            if no_weight_decay(param):
                decay_mult = 0.0
            elif id(param) in norm_params:
                decay_mult = norm_mult
            elif param.ndim <= 1:
                decay_mult = flat_mult
            else:
                decay_mult = 1.0
            lr_mult = 1.0
            for key in sorted_keys:
                if key in name:
                    lr_mult = custom_keys[key].get('lr_mult', 1.0)
                    decay_mult = custom_keys[key].get('decay_mult',
                                                      decay_mult)
                    break
            lr = self.base_lr * lr_scale * lr_mult
            weight_decay = base_wd * decay_mult
            group = groups.setdefault(
                (layer_id, lr, weight_decay),
                dict(
                    params=[],
                    param_names=[],
                    lr=lr,
                    weight_decay=weight_decay,
                    layer_id=layer_id,
                    lr_scale=lr_scale * lr_mult))
            group['params'].append(param)
            group['param_names'].append(name)
        params.extend(groups[key] for key in sorted(groups))
        self._log_groups(params, decay_rate)

    @staticmethod
    def _depth_getter(model: nn.Module, decay_rate: float = 1.0):
        """``name -> (depth, num_depths)`` for ``model``.

        The backbone's ``get_layer_depth`` when it has one (the model's own
        for a bare backbone); without one, every parameter sits at depth 0 of
        1, which only ``layer_decay_rate=1`` allows.
        """
        backbone = getattr(model, 'backbone', None)
        if backbone is not None and hasattr(backbone, 'get_layer_depth'):

            def get_depth(name):
                depth, num_depths = backbone.get_layer_depth(
                    name, 'backbone.')
                if not name.startswith('backbone.'):
                    depth = num_depths - 1
                return depth, num_depths

            return get_depth
        # mmpretrain's classifiers define get_layer_depth and raise inside it
        # when their backbone has none: only a bare backbone's counts
        if backbone is None and hasattr(model, 'get_layer_depth'):
            return model.get_layer_depth
        if decay_rate == 1:
            return lambda name: (0, 1)
        owner = model if backbone is None else backbone
        raise TypeError(
            f'{type(owner).__name__} has no get_layer_depth(param_name, '
            f'prefix), so layer_decay_rate={decay_rate} cannot apply: '
            'SSMLayerDecayOptimWrapperConstructor needs a backbone that '
            'defines it (e.g. mmssm Vim) or layer_decay_rate=1')

    @staticmethod
    def _log_groups(groups: List[dict], decay_rate: float) -> None:
        logger = MMLogger.get_current_instance()
        lines = [f'layer-wise lr decay {decay_rate}: {len(groups)} groups']
        for g in groups:
            lines.append(
                f'  depth {g["layer_id"]:>3}  lr {g["lr"]:.3e}  '
                f'wd {g["weight_decay"]:.3g}  {len(g["params"])} tensors '
                f'({g["param_names"][0]}, ...)')
        logger.debug('\n'.join(lines))
