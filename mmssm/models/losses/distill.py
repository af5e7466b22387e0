"""Hard-label knowledge distillation loss (DeiT / GroupMamba).

GroupMamba (Shaker et al., 2024, Sec. 3.4, Eq. 10) trains its classifiers
with the hard distillation of DeiT (Touvron et al., 2021): cross-entropy
against the labels plus cross-entropy against the teacher's arg-max, weighted
by ``alpha``. Pure torch, no mmpretrain import.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmssm.registry import register_model

__all__ = ['HardDistillationLoss']


def _soft_cross_entropy(logits: torch.Tensor,
                        target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_c target_c * log_softmax(logits)_c``."""
    return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()


@register_model()
class HardDistillationLoss(nn.Module):
    """Alpha-weighted hard distillation loss.

    ``loss = loss_weight * ((1 - alpha) * CE(cls_score, target)
    + alpha * CE(dist_score, argmax(teacher_score)))``

    ``alpha`` weighs the TEACHER term, as ``DistillationLoss`` of the official
    GroupMamba (and DeiT) code that trained the released checkpoints
    (``--distillation_alpha 0.5``). The paper's Eq. 10 writes the weight on
    the label term instead; with the default ``alpha = 0.5`` both read the
    same.

    Args:
        alpha (float): Weight of the distillation term, in ``[0, 1]``.
            Defaults to 0.5.
        label_smoothing (float): Label smoothing ``eps`` of the label term:
            the target becomes ``(1 - eps) * target + eps / K``, for class
            indices and for soft (Mixup/CutMix) targets alike, as timm's
            Mixup with ``label_smoothing`` in the official recipe (0.1).
            Defaults to 0.
        loss_weight (float): Global weight. Defaults to 1.0.
    """

    def __init__(self,
                 alpha: float = 0.5,
                 label_smoothing: float = 0.0,
                 loss_weight: float = 1.0):
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f'alpha must be in [0, 1], got {alpha}')
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(
                f'label_smoothing must be in [0, 1), got {label_smoothing}')
        self.alpha = alpha
        self.label_smoothing = label_smoothing
        self.loss_weight = loss_weight

    def forward(self,
                cls_score: torch.Tensor,
                teacher_score: torch.Tensor,
                target: torch.Tensor,
                dist_score: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Compute the loss.

        Args:
            cls_score (Tensor): ``(B, K)`` student logits of the class head.
            teacher_score (Tensor): ``(B, K)`` teacher logits (no gradient
                flows into them).
            target (Tensor): ``(B,)`` class indices or ``(B, K)`` soft
                targets (Mixup/CutMix).
            dist_score (Tensor, optional): ``(B, K)`` logits of the student's
                distillation head; the class head's logits when None.

        Returns:
            Tensor: the scalar loss.
        """
        if dist_score is None:
            dist_score = cls_score
        if cls_score.dim() != 2:
            raise ValueError('cls_score must be (B, num_classes), got '
                             f'{tuple(cls_score.shape)}')
        for name, t in (('dist_score', dist_score),
                        ('teacher_score', teacher_score)):
            if t.shape != cls_score.shape:
                raise ValueError(f'{name} has shape {tuple(t.shape)}, '
                                 f'cls_score {tuple(cls_score.shape)}')
        if target.dim() == 1:
            if target.shape[0] != cls_score.shape[0]:
                raise ValueError(f'{target.shape[0]} labels for '
                                 f'{cls_score.shape[0]} samples')
            base = F.cross_entropy(
                cls_score, target.long(),
                label_smoothing=self.label_smoothing)
        elif target.shape == cls_score.shape:
            target = target.to(cls_score.dtype)
            if self.label_smoothing > 0:
                target = (target * (1 - self.label_smoothing) +
                          self.label_smoothing / target.shape[1])
            base = _soft_cross_entropy(cls_score, target)
        else:
            raise ValueError('target must be (B,) labels or (B, num_classes) '
                             f'scores, got {tuple(target.shape)}')
        teacher_labels = teacher_score.detach().argmax(dim=1)
        distill = F.cross_entropy(dist_score, teacher_labels)
        return self.loss_weight * ((1 - self.alpha) * base +
                                   self.alpha * distill)
