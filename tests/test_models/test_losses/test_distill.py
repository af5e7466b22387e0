"""HardDistillationLoss on hand-made logits with hand-computed values."""
import math

import pytest
import torch
from mmengine.registry import MODELS as ROOT_MODELS

from mmssm.models.losses import HardDistillationLoss

LN3 = math.log(3.0)
# class head: sample 0 uniform over 2 classes, sample 1 softmax (3/4, 1/4)
CLS = torch.tensor([[0.0, 0.0], [LN3, 0.0]])
# distillation head: sample 0 softmax (1/4, 3/4), sample 1 uniform
DIST = torch.tensor([[0.0, LN3], [0.0, 0.0]])
TEACHER = torch.tensor([[1.0, 5.0], [3.0, -1.0]])  # arg-max (1, 0)
LABELS = torch.tensor([0, 1])
# CE(cls, labels) = (-log 1/2 - log 1/4) / 2 = 1.5 log 2
BASE = 1.5 * math.log(2.0)
# CE(dist, teacher arg-max) = (-log 3/4 - log 1/2) / 2
DISTILL = (math.log(4.0 / 3.0) + math.log(2.0)) / 2


@pytest.mark.parametrize('alpha', [0.0, 0.25, 0.5, 1.0])
def test_hand_computed_values(alpha):
    loss = HardDistillationLoss(alpha=alpha)(
        CLS, TEACHER, LABELS, dist_score=DIST)
    expected = (1 - alpha) * BASE + alpha * DISTILL
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_soft_targets_and_single_head():
    soft = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    # sample 0: -(0.5 log 1/2 + 0.5 log 1/2) = log 2; sample 1: log 4
    loss = HardDistillationLoss(alpha=0.0)(CLS, TEACHER, soft)
    assert loss.item() == pytest.approx(BASE, rel=1e-6)
    # without a distillation head the class head learns from the teacher:
    # CE(cls, (1, 0)) = (-log 1/2 - log 3/4) / 2
    loss = HardDistillationLoss(alpha=1.0, loss_weight=2.0)(
        CLS, TEACHER, LABELS)
    expected = 2.0 * (math.log(2.0) + math.log(4.0 / 3.0)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_label_smoothing_same_for_indices_and_one_hot():
    loss_fn = HardDistillationLoss(alpha=0.0, label_smoothing=0.1)
    by_index = loss_fn(CLS, TEACHER, LABELS)
    one_hot = loss_fn(CLS, TEACHER, torch.eye(2)[LABELS])
    # smoothed target (1 - 0.1) * one_hot + 0.1 / 2
    p = torch.log_softmax(CLS, dim=1)
    target = torch.eye(2)[LABELS] * 0.9 + 0.05
    expected = -(target * p).sum(1).mean()
    torch.testing.assert_close(by_index, expected)
    torch.testing.assert_close(one_hot, expected)


def test_no_gradient_into_teacher():
    teacher = TEACHER.clone().requires_grad_(True)
    dist = DIST.clone().requires_grad_(True)
    HardDistillationLoss()(CLS, teacher, LABELS, dist_score=dist).backward()
    assert teacher.grad is None
    # d/d logits of 0.5 * mean CE: 0.5 * (softmax - onehot(teacher)) / 2
    expected = 0.25 * (torch.softmax(DIST, 1) - torch.eye(2)[[1, 0]])
    torch.testing.assert_close(dist.grad, expected)


def test_bad_arguments():
    with pytest.raises(ValueError, match='alpha'):
        HardDistillationLoss(alpha=1.5)
    with pytest.raises(ValueError, match='teacher_score'):
        HardDistillationLoss()(CLS, torch.zeros(2, 3), LABELS)
    with pytest.raises(ValueError, match='target'):
        HardDistillationLoss()(CLS, TEACHER, torch.zeros(2, 3))


def test_registered_for_every_scope():
    import mmssm  # noqa: F401
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    loss = PRETRAIN_MODELS.build(dict(type='HardDistillationLoss', alpha=0.3))
    assert isinstance(loss, HardDistillationLoss) and loss.alpha == 0.3
    assert ROOT_MODELS.get('HardDistillationLoss') is HardDistillationLoss
