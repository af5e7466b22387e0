"""DistillImageClassifier + GroupMambaDistHead (mmssm.cls) in mmpretrain."""
import pytest
import torch
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import mmssm  # noqa: F401
import mmssm.cls  # noqa: F401
from mmssm.models.losses import HardDistillationLoss

TINY = dict(
    embed_dims=[16, 32, 48, 64],
    depths=[1, 1, 1, 1],
    mlp_ratios=[2, 2, 2, 2],
    stem_channels=8)
TEACHER = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet', depth=18, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=3, in_channels=512))


def _build(**kwargs):
    torch.manual_seed(0)
    cfg = dict(
        type='DistillImageClassifier',
        backbone=dict(
            type='GroupMamba',
            arch=TINY,
            out_type='cls_token',
            out_indices=(3, ),
            scan_impl='ref'),
        head=dict(
            type='GroupMambaDistHead',
            num_classes=3,
            in_channels=64,
            loss=dict(type='HardDistillationLoss', alpha=0.4)),
        teacher=TEACHER)
    cfg.update(kwargs)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def _samples(labels):
    return [DataSample().set_gt_label(int(label)) for label in labels]


def test_loss_is_hard_distillation_with_frozen_teacher():
    model = _build()
    teacher = model.teacher
    assert not any(k.startswith('teacher') for k in model.state_dict())
    assert all(p.data_ptr() not in {q.data_ptr() for q in model.parameters()}
               for p in teacher.parameters())
    before = [p.clone() for p in teacher.parameters()]
    inputs = torch.randn(2, 3, 32, 32)
    model.train()
    losses = model.loss(inputs, _samples([0, 2]))
    losses['loss'].backward()
    feat = model.extract_feat(inputs)[-1]
    teacher.eval()
    with torch.no_grad():
        t_logits = teacher(inputs, mode='tensor')
    expected = HardDistillationLoss(alpha=0.4)(
        model.head.fc(feat), t_logits, torch.tensor([0, 2]),
        dist_score=model.head.dist_fc(feat))
    torch.testing.assert_close(losses['loss'], expected)
    assert model.head.dist_fc.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))
    assert not teacher.training


def test_predict_averages_the_two_heads():
    model = _build().eval()
    inputs = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        preds = model.predict(inputs)
        feat = model.extract_feat(inputs)[-1]
        avg = (model.head.fc(feat) + model.head.dist_fc(feat)) / 2
    torch.testing.assert_close(
        torch.stack([p.pred_score for p in preds]), avg.softmax(dim=1))


def test_teacher_checkpoint_is_loaded(tmp_path):
    torch.manual_seed(3)
    source = MODELS.build(TEACHER)
    path = str(tmp_path / 'teacher.pth')
    torch.save({'model': source.state_dict()}, path)
    model = _build(teacher_checkpoint=path)
    for a, b in zip(source.state_dict().values(),
                    model.teacher.state_dict().values()):
        assert torch.equal(a, b)


def test_head_loss_needs_teacher_logits():
    head = MODELS.build(
        dict(type='GroupMambaDistHead', num_classes=3, in_channels=4))
    with pytest.raises(ValueError, match='teacher'):
        head.loss((torch.randn(2, 4), ), _samples([0, 1]))
