"""The MLP classifier head of MambaOut, for mmpretrain's ``ImageClassifier``.

This module imports mmpretrain; ``import mmssm`` does not import it: list
``'mmssm.cls'`` in ``custom_imports`` (see :mod:`mmssm.cls`).
"""
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import build_activation_layer
from mmpretrain.models.heads import ClsHead

from mmssm.registry import register_model

__all__ = ['MambaOutHead']


@register_model()
class MambaOutHead(ClsHead):
    """MLP classifier head of `MambaOut <https://arxiv.org/abs/2405.07992>`_.

    ``fc2(dropout(LN(act(fc1(x)))))`` with a hidden width of
    ``mlp_ratio * in_channels``, as in the official ``MlpHead``. The official
    model pools and normalises the last stage before this head: pair it with
    ``MambaOut(out_indices=(3, ), gap_before_final_norm=True)`` and no neck.
    Its keys (``fc1``, ``norm``, ``fc2``) are those of the official head.

    Args:
        num_classes (int): Number of categories.
        in_channels (int): Number of channels of the pooled input features.
        mlp_ratio (float): Hidden width ratio. Defaults to 4.
        act_cfg (dict): Activation config. Defaults to ``dict(type='GELU')``.
        dropout_rate (float): Dropout before ``fc2``. Defaults to 0.
        init_cfg (dict, optional): Initialization config. Defaults to the
            official truncated-normal init of the linear layers.
        **kwargs: ``loss``, ``topk``, ``cal_acc`` of
            :class:`mmpretrain.models.heads.ClsHead`.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 mlp_ratio: float = 4,
                 act_cfg: Dict = dict(type='GELU'),
                 dropout_rate: float = 0.,
                 init_cfg: Optional[Dict] = dict(
                     type='TruncNormal', layer='Linear', std=.02, bias=0.),
                 **kwargs) -> None:
        super().__init__(init_cfg=init_cfg, **kwargs)
        if num_classes <= 0:
            raise ValueError(
                f'num_classes={num_classes} must be a positive integer')
        self.num_classes = num_classes
        self.in_channels = in_channels
        hidden = int(mlp_ratio * in_channels)
        self.fc1 = nn.Linear(in_channels, hidden)
        self.act = build_activation_layer(act_cfg)
        self.norm = nn.LayerNorm(hidden, eps=1e-6)
        self.dropout = nn.Dropout(dropout_rate)
        self.fc2 = nn.Linear(hidden, num_classes)

    def pre_logits(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """Hidden features of the last input, ``(B, mlp_ratio * C)``."""
        x = feats[-1]
        if x.dim() != 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'MambaOutHead expects pooled (B, {self.in_channels}) '
                f'features, got shape {tuple(x.shape)}; build the backbone '
                'with gap_before_final_norm=True')
        return self.dropout(self.norm(self.act(self.fc1(x))))

    def forward(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """Classification scores ``(B, num_classes)``."""
        return self.fc2(self.pre_logits(feats))
