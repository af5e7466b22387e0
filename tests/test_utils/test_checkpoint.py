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


def test_split_classifier_keys_places_head_and_backbone_keys():
    """The converters' key placement, against the names written out by hand:
    the classifier renamed (``head.fc.`` of LinearClsHead) or dropped, the
    backbone prefixed for mmpretrain, the order and the tensors kept."""
    from mmssm.utils.checkpoint import split_classifier_keys
    w, b, n, h = (torch.full((1, ), float(i)) for i in range(4))
    # 'heads.x' and 'x.head.y' are backbone keys: only a leading 'head.'
    sd = {'stem.w': w, 'head.weight': h, 'heads.x': b, 'x.head.y': n,
          'head.bias': b}
    out = split_classifier_keys(sd)
    assert list(out) == list(sd)
    assert all(out[k] is sd[k] for k in sd)
    out = split_classifier_keys(sd, head_prefix='head.fc.', mmpretrain=True)
    assert list(out) == ['backbone.stem.w', 'head.fc.weight',
                         'backbone.heads.x', 'backbone.x.head.y',
                         'head.fc.bias']
    assert out['head.fc.weight'] is h and out['backbone.stem.w'] is w
    out = split_classifier_keys(sd, head_prefix='head.fc.', no_head=True)
    assert list(out) == ['stem.w', 'heads.x', 'x.head.y']


def test_converter_arg_parser_head_options():
    from mmssm.utils.checkpoint import converter_arg_parser
    args = converter_arg_parser('x').parse_args(['a', 'b'])
    assert vars(args) == dict(src='a', dst='b')
    parser = converter_arg_parser('x', head_options=True)
    args = parser.parse_args(['a', 'b'])
    assert (args.mmpretrain, args.no_head) == (False, False)
    args = parser.parse_args(['a', 'b', '--no-head', '--mmpretrain'])
    assert (args.mmpretrain, args.no_head) == (True, True)
