"""tools/test.py and tools/train.py (load_from, --resume) check the
checkpoint: unusable files are named in one line before the config, model or
dataset is built; weights that do not fit the model stop the run, before
evaluation or training, naming the keys (``--non-strict`` loads what fits).
"""
import os.path as osp
import time

import pytest
import torch
from tiny_demo_configs import ROOT, SEG_DEMO, build_model, run_python, seg_cfg

from mmssm.utils import (CheckpointError, compare_state_dict_shapes,
                         describe_mismatch, read_checkpoint_shapes)



def _bad_files(tmp_path):
    """name -> (path, words the message must contain)."""
    text = tmp_path / 'notes.pth'
    text.write_text('epoch 12, mIoU 41.3\n')
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.zeros(300, 300)}}, good)
    data = good.read_bytes()
    trunc = tmp_path / 'trunc.pth'
    trunc.write_bytes(data[:len(data) // 2])
    return {
        'missing': (tmp_path / 'nope.pth', ['not found']),
        'directory': (tmp_path, ['is a directory']),
        'empty': (empty, ['empty file', '0 bytes']),
        'text': (text, ['not a PyTorch checkpoint', 'text file']),
        'truncated': (trunc, ['truncated or corrupt', 'zip']),
    }


def test_read_checkpoint_shapes_names_what_is_wrong(tmp_path):
    for name, (path, words) in _bad_files(tmp_path).items():
        with pytest.raises(CheckpointError) as info:
            read_checkpoint_shapes(str(path))
        msg = str(info.value)
        assert '\n' not in msg, (name, msg)
        assert str(path) in msg, (name, msg)
        for w in words:
            assert w in msg, (name, msg)
    # a checkpoint with no state dict in it (DeiT-style 'model' entry is not
    # what load_from reads) or with nothing in it
    odd = tmp_path / 'odd.pth'
    torch.save({'model': {'w': torch.zeros(2)}, 'epoch': 3}, odd)
    with pytest.raises(CheckpointError, match='holds no state dict'):
        read_checkpoint_shapes(str(odd))
    torch.save({'state_dict': {}}, odd)
    with pytest.raises(CheckpointError, match='empty state dict'):
        read_checkpoint_shapes(str(odd))


def test_read_checkpoint_shapes_of_a_good_checkpoint(tmp_path):
    path = tmp_path / 'ok.pth'
    torch.save({'state_dict': {'module.a.weight': torch.zeros(3, 4),
                               'b': torch.zeros(5)},
                'meta': {'iter': 4}}, path)
    assert read_checkpoint_shapes(str(path)) == {
        'a.weight': torch.Size([3, 4]), 'b': torch.Size([5])}
    # a flat state dict is read as it is
    torch.save({'c': torch.zeros(1)}, path)
    assert read_checkpoint_shapes(str(path)) == {'c': torch.Size([1])}


def test_compare_and_describe():
    model = {'a': torch.Size([2]), 'b': torch.Size([3, 3]),
             'c': torch.Size([1])}
    ckpt = {'a': torch.Size([2]), 'b': torch.Size([4, 3]),
            'z': torch.Size([1])}
    diff = compare_state_dict_shapes(model, ckpt)
    assert diff == dict(missing=['c'], unexpected=['z'],
                        mismatched=[('b', (4, 3), (3, 3))])
    text = describe_mismatch(diff)
    assert 'missing in the checkpoint (1): c' in text
    assert 'unexpected (not in the model) (1): z' in text
    assert 'b [4, 3] in checkpoint vs [3, 3] in model' in text
    assert not any(compare_state_dict_shapes(model, model).values())
    many = dict(missing=[f'k{i}' for i in range(20)], unexpected=[],
                mismatched=[])
    assert '(12 more)' in describe_mismatch(many)


def _run(args, cwd):
    start = time.time()
    res, out = run_python(args, cwd)
    return res, out, time.time() - start


def test_test_py_names_an_unusable_checkpoint_before_building(tmp_path):
    """One line, non-zero exit, no traceback; the config is not even read
    (a config path that does not exist is not what is reported)."""
    test_py = osp.join(ROOT, 'tools', 'test.py')
    for name, (path, words) in _bad_files(tmp_path).items():
        if name not in ('text', 'truncated'):
            continue
        res, out, _ = _run(
            [test_py, str(tmp_path / 'no_such_config.py'), str(path)],
            tmp_path)
        assert res.returncode != 0, out
        assert 'Traceback' not in out, out
        lines = out.strip().splitlines()
        assert len(lines) == 1, out
        assert str(path) in lines[0] and all(w in lines[0] for w in words)


@pytest.fixture(scope='module')
def seg_setup(tmp_path_factory):
    """A tiny UperNet demo config on generated data and a checkpoint of
    that model with one key dropped, one added and one shape changed."""
    from mmssm.datasets import generate_all
    tmp = tmp_path_factory.mktemp('ckpt_check')
    generate_all(str(tmp / 'data'), seed=1, num_train=2, num_val=2,
                 datasets=('ade_shapes', ))
    cfg_path = tmp / 'cfg.py'
    cfg_path.write_text(seg_cfg(SEG_DEMO, str(tmp / 'data' / 'ade_shapes')))
    sd = build_model(cfg_path, 'mmseg').state_dict()
    dropped = 'decode_head.conv_seg.bias'
    changed = 'auxiliary_head.conv_seg.weight'
    assert dropped in sd and changed in sd
    del sd[dropped]
    shape = tuple(sd[changed].shape)
    sd[changed] = torch.zeros((shape[0] + 1, ) + shape[1:])
    sd['backbone.not_a_layer.weight'] = torch.zeros(3)
    bad = tmp / 'other_model.pth'
    torch.save({'state_dict': sd, 'meta': {}}, bad)
    mismatch = (f'{changed} {[shape[0] + 1] + list(shape[1:])} in checkpoint '
                f'vs {list(shape)} in model')
    return cfg_path, bad, tmp, mismatch


def test_test_py_stops_on_keys_that_do_not_fit(seg_setup):
    cfg, bad, tmp, mismatch = seg_setup
    res, out, _ = _run([
        osp.join(ROOT, 'tools', 'test.py'), str(cfg), str(bad),
        '--work-dir', str(tmp / 'w1')
    ], tmp)
    assert res.returncode != 0, out[-3000:]
    assert 'does not fit the model' in out and '--non-strict' in out
    assert 'missing in the checkpoint (1): decode_head.conv_seg.bias' in out
    assert 'unexpected (not in the model) (1): backbone.not_a_layer.weight' \
        in out
    assert mismatch in out
    assert 'Traceback' not in out
    # stopped before evaluating (the config dump names mIoU, not a result)
    assert 'Iter(test)' not in out and 'mIoU:' not in out


def test_test_py_non_strict_loads_what_fits_and_evaluates(seg_setup):
    cfg, bad, tmp, mismatch = seg_setup
    res, out, _ = _run([
        osp.join(ROOT, 'tools', 'test.py'), str(cfg), str(bad),
        '--non-strict', '--work-dir', str(tmp / 'w2')
    ], tmp)
    assert res.returncode == 0, out[-3000:]
    assert '--non-strict: loading the weights' in out
    assert 'decode_head.conv_seg.bias' in out
    assert 'mIoU:' in out


def test_train_py_load_from_is_checked(seg_setup):
    cfg, bad, tmp, mismatch = seg_setup
    train = osp.join(ROOT, 'tools', 'train.py')
    text = tmp / 'readme.pth'
    text.write_text('weights are on the web page\n')
    res, out, _ = _run([
        train, str(cfg), '--work-dir', str(tmp / 'w3'), '--cfg-options',
        f'load_from={text}'
    ], tmp)
    assert res.returncode != 0
    assert out.strip().splitlines()[-1].startswith(
        f'load_from: checkpoint {str(text)!r}')
    assert 'not a PyTorch checkpoint' in out and 'Traceback' not in out
    res, out, _ = _run([
        train, str(cfg), '--work-dir', str(tmp / 'w3'), '--cfg-options',
        f'load_from={bad}'
    ], tmp)
    assert res.returncode != 0
    assert 'missing in the checkpoint (1): decode_head.conv_seg.bias' in out
    assert 'Iter(train)' not in out
