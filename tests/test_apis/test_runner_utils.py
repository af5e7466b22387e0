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
