import pytest
import torch

from mmssm.utils import unwrap_state_dict


def test_unwrap_prefers_keys_in_order_and_strips_module():
    a, b, c = torch.zeros(1), torch.ones(1), torch.full((1, ), 2.)
    ckpt = dict(model={'module.w': a}, model_ema={'w': b}, args='x')
    assert unwrap_state_dict(ckpt)['w'] is a
    assert unwrap_state_dict(ckpt, ('model_ema', 'model'))['w'] is b
    assert unwrap_state_dict(ckpt, use_ema=True)['w'] is b
    assert unwrap_state_dict({'state_dict': {'w': c}, 'model': {}})['w'] is c
    assert list(unwrap_state_dict({'x.y': c})) == ['x.y']  # flat


def test_unwrap_errors():
    with pytest.raises(TypeError, match='hold a dict'):
        unwrap_state_dict([torch.zeros(1)])
    with pytest.raises(KeyError, match='model_ema'):
        unwrap_state_dict({'model': {'w': torch.zeros(1)}}, use_ema=True)
    with pytest.raises(TypeError, match="'epoch'.*not a tensor"):
        unwrap_state_dict({'epoch': 3, 'w': torch.zeros(1)})
