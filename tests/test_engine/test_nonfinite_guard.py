"""NonFiniteGuardHook stops a training at the first non-finite loss or
gradient, names the iteration, the loss terms and the first parameter with a
non-finite gradient, skips the poisoned step and saves the last finite state
(equal, to the bit, to a clean run stopped at the previous iteration)."""
import math
import uuid
import warnings

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import DataLoader, Dataset

from mmssm.engine.hooks import NonFiniteError, NonFiniteGuardHook


class _Data(Dataset):

    def __len__(self):
        return 64

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        x = torch.randn(4, generator=g)
        return dict(inputs=x, labels=x.sum(0, keepdim=True))


class _Toy(BaseModel):
    """Two linear layers; at iteration ``nan_loss_at`` the ``loss_mse`` term
    is NaN, at ``nan_grad_at`` the gradient of ``layer2.weight`` alone is
    (the loss stays finite)."""

    def __init__(self, nan_loss_at=None, nan_grad_at=None):
        super().__init__()
        torch.manual_seed(0)
        self.layer1 = nn.Linear(4, 8)
        self.layer2 = nn.Linear(8, 1)
        self.nan_loss_at, self.nan_grad_at = nan_loss_at, nan_grad_at
        self.calls = 0

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.layer2(torch.relu(self.layer1(inputs)))
        if mode != 'loss':
            return out
        self.calls += 1
        loss_mse = ((out - labels)**2).mean()
        if self.calls == self.nan_loss_at:
            loss_mse = loss_mse * float('nan')
        if self.calls == self.nan_grad_at:
            self.layer2.weight.register_hook(
                lambda g: torch.full_like(g, float('inf')))
        loss_l1 = 0.1 * (out - labels).abs().mean()
        return dict(loss_mse=loss_mse, loss_l1=loss_l1)


def _runner(tmp_path, model, max_iters, guard=True):
    return Runner(
        model=model,
        work_dir=str(tmp_path),
        train_dataloader=DataLoader(_Data(), batch_size=4, shuffle=False),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(
            optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        param_scheduler=dict(type='LinearLR', start_factor=0.5,
                             by_epoch=False, begin=0, end=10),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1000,
                            by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type='NonFiniteGuardHook')] if guard else None,
        log_processor=dict(by_epoch=False),
        experiment_name=f'nonfinite_{uuid.uuid4().hex}',
        default_scope='mmengine')


def test_nan_loss_at_iteration_3_stops_and_keeps_last_finite_state(
        tmp_path):
    runner = _runner(tmp_path / 'nan', _Toy(nan_loss_at=3), max_iters=6)
    with pytest.raises(NonFiniteError) as info:
        runner.train()
    msg = str(info.value)
    assert msg.startswith('non-finite loss and gradient at iteration 3;'), msg
    assert 'loss_mse=nan' in msg
    assert 'loss_l1=' in msg and 'loss=nan' in msg
    # NaN loss -> every gradient NaN: the first parameter is named
    assert 'first parameter with a non-finite gradient: layer1.weight' in msg
    assert 'of 4 parameters' in msg
    assert 'step of this iteration was skipped and the buffers' in msg
    assert runner.iter == 2  # the loop never counted iteration 3
    for p in runner.model.parameters():
        assert torch.isfinite(p).all()
    saved = tmp_path / 'nan' / 'last_finite_iter_2.pth'
    assert str(saved) in msg
    assert not list((tmp_path / 'nan').glob('iter_*.pth'))

    # the saved state is exactly that of a clean run of 2 iterations
    clean = _runner(tmp_path / 'clean', _Toy(), max_iters=2, guard=False)
    clean.train()
    ref = clean.model.state_dict()
    ckpt = torch.load(saved, map_location='cpu', weights_only=False)
    assert ckpt['meta']['iter'] == 2
    for k, v in ref.items():
        assert torch.equal(ckpt['state_dict'][k], v), k
    momentum = clean.optim_wrapper.optimizer.state_dict()['state']
    saved_momentum = ckpt['optimizer']['state']
    for i, st in momentum.items():
        assert torch.equal(saved_momentum[i]['momentum_buffer'],
                           st['momentum_buffer'])
    assert ckpt['param_schedulers'][0]['last_step'] == \
        clean.param_schedulers[0].last_step


def test_non_finite_gradient_with_finite_loss_names_the_parameter(
        tmp_path):
    runner = _runner(tmp_path, _Toy(nan_grad_at=4), max_iters=6)
    with pytest.raises(NonFiniteError) as info:
        runner.train()
    msg = str(info.value)
    assert msg.startswith('non-finite gradient at iteration 4;'), msg
    assert ('first parameter with a non-finite gradient: layer2.weight '
            '(gradient norm inf; 1 of 4 parameters)') in msg
    values = dict(
        part.split('=') for part in
        msg.split('loss terms: ')[1].split(';')[0].split(', '))
    assert set(values) == {'loss', 'loss_mse', 'loss_l1'}
    assert all(math.isfinite(float(v)) for v in values.values())
    assert (tmp_path / 'last_finite_iter_3.pth').is_file()


def test_finite_training_is_untouched(tmp_path):
    guarded = _runner(tmp_path / 'a', _Toy(), max_iters=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        guarded.train()
    # the guarded step keeps what the param scheduler put on the step it
    # wrapped (mmengine warns "optimizer.step() has been overridden" else)
    assert not [w for w in caught if 'has been overridden' in str(w.message)]
    plain = _runner(tmp_path / 'b', _Toy(), max_iters=4, guard=False)
    plain.train()
    for (k, v), w in zip(guarded.model.state_dict().items(),
                         plain.model.state_dict().values()):
        assert torch.equal(v, w), k
    assert not list((tmp_path / 'a').glob('last_finite_*'))
    # the optimizer wrapper's step is the class's method again
    assert 'step' not in vars(guarded.optim_wrapper)


def test_registered_in_mmengine_and_mmssm_scopes():
    from mmengine.registry import HOOKS as ROOT

    from mmssm.registry import HOOKS
    assert ROOT.get('NonFiniteGuardHook') is NonFiniteGuardHook
    assert HOOKS.get('mmssm.NonFiniteGuardHook') is NonFiniteGuardHook


INJECT = '''
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class InjectNaNHook(Hook):
    """Make the backbone's outputs NaN during training iteration 3."""

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == 3:
            model = getattr(runner.model, 'module', runner.model)
            self.handle = model.backbone.register_forward_hook(
                lambda m, i, out: tuple(o * float('nan') for o in out))
'''


def test_train_py_demo_config_stops_at_nan_of_iteration_3(tmp_path):
    """tools/train.py on the (tiny) UperNet demo, NaN from iteration 3:
    the run stops naming iteration 3 and the loss term, and the state it
    saves equals the regular checkpoint of iteration 2."""
    from tiny_demo_configs import ROOT, SEG_DEMO, run_python, seg_cfg

    from mmssm.datasets import generate_all
    generate_all(str(tmp_path / 'data'), seed=4, num_train=2, num_val=1,
                 datasets=('ade_shapes', ))
    (tmp_path / 'nan_inject.py').write_text(INJECT)
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(
        seg_cfg(SEG_DEMO, str(tmp_path / 'data' / 'ade_shapes'), max_iters=6,
                val_interval=100) +
        "custom_imports = dict(imports=['nan_inject'])\n"
        'custom_hooks = _base_.custom_hooks + '
        "[dict(type='InjectNaNHook')]\n")
    work = tmp_path / 'work'
    res, out = run_python(
        [f'{ROOT}/tools/train.py', cfg, '--work-dir', work], tmp_path,
        env=dict(PYTHONPATH=str(tmp_path)))
    assert res.returncode != 0, out[-3000:]
    assert 'NonFiniteError: non-finite loss and gradient at iteration 3;' \
        in out, out[-3000:]
    assert 'decode.loss_ce=nan' in out and 'aux.loss_ce=nan' in out
    assert 'first parameter with a non-finite gradient: backbone.' in out
    assert 'Iter(train) [2/6]' in out and 'Iter(train) [3/6]' not in out
    saved = torch.load(work / 'last_finite_iter_2.pth', map_location='cpu',
                       weights_only=False)
    regular = torch.load(work / 'iter_2.pth', map_location='cpu',
                         weights_only=False)
    assert saved['meta']['iter'] == regular['meta']['iter'] == 2
    assert saved['state_dict'].keys() == regular['state_dict'].keys()
    for k, v in regular['state_dict'].items():
        assert torch.equal(saved['state_dict'][k], v), k
    assert not (work / 'iter_4.pth').exists()
