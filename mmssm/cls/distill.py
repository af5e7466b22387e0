"""mmpretrain classifier and head for hard-distillation training.

GroupMamba's ImageNet recipe (Shaker et al., 2024, Sec. 3.4) trains the
student with two linear heads on the class feature: ``head`` learns from the
labels, ``dist_head`` from the arg-max of a frozen teacher (RegNetY-16G), and
the two predictions are averaged at inference, exactly as the official
classifier does. mmpretrain 1.2.0 has no way to run a teacher (its
``DeiTClsHead`` refuses to train), so:

* :class:`DistillImageClassifier` is an ``ImageClassifier`` that owns a frozen
  teacher (any mmpretrain model config, e.g. ``TimmClassifier`` for timm's
  ``regnety_160``) and hands its logits to the head's ``loss``;
* :class:`GroupMambaDistHead` holds ``fc`` and ``dist_fc`` and computes
  :class:`mmssm.models.losses.HardDistillationLoss`.

This module imports mmpretrain, so ``import mmssm`` does not import it: add
``'mmssm.cls'`` to ``custom_imports``.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.runner.checkpoint import CheckpointLoader
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.models.heads import ClsHead
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mmssm.utils.checkpoint import unwrap_state_dict
from mmssm.registry import register_model

__all__ = ['DistillImageClassifier', 'GroupMambaDistHead']


@register_model()
class GroupMambaDistHead(ClsHead):
    """Class head + distillation head of the official GroupMamba classifier.

    Inference returns ``(fc(x) + dist_fc(x)) / 2``; training computes
    ``loss(fc(x), teacher_score, target, dist_score=dist_fc(x))``.

    Args:
        num_classes (int): Number of classes.
        in_channels (int): Channels of the class feature.
        loss (dict): The distillation loss. Defaults to
            ``dict(type='HardDistillationLoss', alpha=0.5)``.
        init_cfg (dict): Defaults to trunc-normal(0.02) linears, as the
            official code.
        **kwargs: Other arguments of ``ClsHead`` (``topk``, ``cal_acc``).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 loss: dict = dict(type='HardDistillationLoss', alpha=0.5),
                 init_cfg: Optional[dict] = dict(
                     type='TruncNormal', layer='Linear', std=.02),
                 **kwargs):
        super().__init__(loss=loss, init_cfg=init_cfg, **kwargs)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.fc = nn.Linear(in_channels, num_classes)
        self.dist_fc = nn.Linear(in_channels, num_classes)

    def forward_both(self, feats: Tuple[torch.Tensor]
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Logits of the class head and of the distillation head."""
        x = self.pre_logits(feats)
        return self.fc(x), self.dist_fc(x)

    def forward(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        cls_score, dist_score = self.forward_both(feats)
        return (cls_score + dist_score) / 2

    def loss(self,
             feats: Tuple[torch.Tensor],
             data_samples: List[DataSample],
             teacher_score: Optional[torch.Tensor] = None) -> dict:
        if teacher_score is None:
            raise ValueError('GroupMambaDistHead.loss needs the teacher '
                             'logits (teacher_score); train it inside '
                             'DistillImageClassifier')
        cls_score, dist_score = self.forward_both(feats)
        if 'gt_score' in data_samples[0]:
            target = torch.stack([i.gt_score for i in data_samples])
        else:
            target = torch.cat([i.gt_label for i in data_samples])
        loss = self.loss_module(
            cls_score, teacher_score, target, dist_score=dist_score)
        return dict(loss=loss)


@register_model()
class DistillImageClassifier(ImageClassifier):
    """``ImageClassifier`` trained by hard distillation from a frozen teacher.

    The teacher is built from mmpretrain's registry, loaded from
    ``teacher_checkpoint``, kept in eval mode without gradients, and is NOT a
    submodule: it stays out of the state dict, the optimizer and the DDP
    wrapper, and is moved to the inputs' device on first use. It sees the
    same (normalised, Mixup/CutMix-ed) batch as the student, as in the
    official training loop.

    Args:
        teacher (dict | nn.Module): The teacher model; ``forward(inputs,
            mode='tensor')`` must return ``(B, num_classes)`` logits (any
            mmpretrain classifier, e.g. ``dict(type='TimmClassifier',
            model_name='regnety_160')``).
        teacher_checkpoint (str, optional): Teacher weights (plain,
            ``state_dict`` or ``model`` layout), loaded strictly.
        *args, **kwargs: Arguments of ``ImageClassifier``.
    """

    def __init__(self,
                 *args,
                 teacher,
                 teacher_checkpoint: Optional[str] = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(teacher, nn.Module):
            teacher = MODELS.build(teacher)
        if teacher_checkpoint is not None:
            state_dict = unwrap_state_dict(
                CheckpointLoader.load_checkpoint(
                    teacher_checkpoint, map_location='cpu'))
            teacher.load_state_dict(state_dict, strict=True)
        teacher.eval()
        teacher.requires_grad_(False)
        # plain attribute: not a submodule (see the class docstring)
        self.__dict__['teacher'] = teacher

    def teacher_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Frozen teacher logits of a preprocessed batch."""
        teacher = self.__dict__['teacher']
        param = next(teacher.parameters(), None)
        if param is not None and param.device != inputs.device:
            teacher.to(inputs.device)
        teacher.eval()
        with torch.no_grad():
            logits = teacher(inputs, mode='tensor')
        if isinstance(logits, (tuple, list)):
            logits = logits[-1]
        return logits.float()

    def loss(self, inputs: torch.Tensor,
             data_samples: List[DataSample]) -> dict:
        feats = self.extract_feat(inputs)
        return self.head.loss(
            feats, data_samples, teacher_score=self.teacher_logits(inputs))
