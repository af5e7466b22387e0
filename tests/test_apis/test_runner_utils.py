"""Process-group set-up and tear-down of tools/train.py and tools/test.py."""
import gc
import weakref

import torch
import torch.distributed as torch_dist
from mmengine.config import Config

from mmssm.apis import init_cpu_distributed, shutdown_distributed


class _Holder:
    """Stands for a runner: a reference cycle holding a process group user."""

    def __init__(self):
        self.me = self
        self.model = torch.nn.Linear(2, 2)


def test_cpu_group_is_set_up_and_torn_down(monkeypatch):
    if torch.cuda.is_available():
        import pytest
        pytest.skip('the gloo set-up applies without a GPU only')
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '1')
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', '29561')
    cfg = Config(dict(model=dict(type='X')))
    init_cpu_distributed(cfg, 'pytorch')
    try:
        assert torch_dist.is_initialized()
        assert torch_dist.get_backend() == 'gloo'
        assert cfg.env_cfg.dist_cfg.backend == 'gloo'
        assert cfg.model_wrapper_cfg.type == 'CPUDistributedDataParallel'
        holder = _Holder()
        alive = weakref.ref(holder)
        del holder
        gc.disable()  # only shutdown_distributed may collect the cycle
        try:
            assert alive() is not None
            shutdown_distributed()
        finally:
            gc.enable()
        # The runner's cycles are gone before the process group ends, and
        # the group is destroyed (no gloo thread left for interpreter exit).
        assert alive() is None
        assert not torch_dist.is_initialized()
    finally:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()
    shutdown_distributed()  # without a group: nothing to do, no error


def test_cpu_wrapper_keeps_user_options():
    """--cfg-options model_wrapper_cfg.find_unused_parameters=True must
    survive the CPU multi-process set-up (it was replaced wholesale)."""
    from mmssm.apis import cpu_model_wrapper_cfg
    assert cpu_model_wrapper_cfg(None) == dict(
        type='CPUDistributedDataParallel')
    assert cpu_model_wrapper_cfg(dict(find_unused_parameters=True)) == dict(
        type='CPUDistributedDataParallel', find_unused_parameters=True)
    assert cpu_model_wrapper_cfg(
        dict(type='MMDistributedDataParallel', broadcast_buffers=False)) == \
        dict(type='CPUDistributedDataParallel', broadcast_buffers=False)
    # another wrapper the config names deliberately is left alone
    assert cpu_model_wrapper_cfg(dict(type='MyWrapper', x=1)) == dict(
        type='MyWrapper', x=1)


def test_checkpoint_fit_check_takes_a_runner_or_a_model(monkeypatch):
    """check_checkpoint_fits: the same comparison for a runner
    (tools/train.py, tools/test.py) and a bare model (demo/image_demo.py):
    strict mode stops naming each missing, unexpected and mismatched key;
    non-strict mode warns (the runner's logger, or mmengine's current one
    for a model); a fitting checkpoint passes silently."""
    import types

    import mmengine.logging
    import pytest

    from mmssm.apis import check_checkpoint_fits
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    fits = {'0.weight': (3, 2), '0.bias': (3, ), '1.weight': (1, 3),
            '1.bias': (1, )}
    wrong = {'0.weight': (3, 2), '0.bias': (4, ), '1.weight': (1, 3),
             'extra.w': (5, )}
    warned = []
    runner = types.SimpleNamespace(
        model=model, logger=types.SimpleNamespace(warning=warned.append))
    monkeypatch.setattr(mmengine.logging, 'print_log',
                        lambda msg, logger=None, level=None:
                        warned.append((msg, level)))
    for target in (runner, model):
        check_checkpoint_fits(target, fits, 'a.pth')
        check_checkpoint_fits(target, None, 'a.pth')
        with pytest.raises(SystemExit) as info:
            check_checkpoint_fits(target, wrong, 'b.pth')
        msg = str(info.value)
        assert "checkpoint 'b.pth' does not fit the model" in msg
        assert 'missing in the checkpoint (1): 1.bias' in msg
        assert 'unexpected (not in the model) (1): extra.w' in msg
        assert 'shape mismatch (1): 0.bias [4] in checkpoint vs [3] in ' \
            'model' in msg
        assert not warned
        check_checkpoint_fits(target, wrong, 'b.pth', strict=False)
        assert len(warned) == 1
        text = warned.pop()
        if target is model:
            text, level = text
            assert level == 30  # logging.WARNING
        assert text.startswith("--non-strict: loading the weights of 'b.pth'")
        assert 'extra.w' in text and '1.bias' in text
