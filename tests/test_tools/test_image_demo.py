"""demo/image_demo.py: the detection and segmentation inferencers draw their
predictions on an image (random-init checkpoints of the tiny demo models,
saved without ``dataset_meta``: the class names come from the config), and
wrong arguments stop with the argument named."""
import importlib.util
import os.path as osp
import re

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_demo_configs import (DET_DEMO, ROOT, SEG_DEMO, build_model, det_cfg,
                               run_python, seg_cfg)

from mmssm.datasets import ADE_SHAPES_CLASSES, SHAPES_CLASSES

DEMO = osp.join(ROOT, 'demo', 'image_demo.py')


def _checkpoint(cfg_path, scope, out):
    model = build_model(cfg_path, scope)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, out)
    return str(out)


def _as_png(src, dst):
    """The synthetic JPEG as a PNG: the drawn copy is then lossless, so a
    pixel the inferencer did not draw on keeps its exact value."""
    Image.open(src).convert('RGB').save(dst)
    return str(dst)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    from mmssm.datasets import generate_all
    tmp = tmp_path_factory.mktemp('image_demo')
    generate_all(str(tmp / 'data'), seed=2, num_train=1, num_val=1)
    det = tmp / 'det.py'
    det.write_text(det_cfg(DET_DEMO, str(tmp / 'data' / 'coco_shapes') + '/'))
    seg = tmp / 'seg.py'
    seg.write_text(seg_cfg(SEG_DEMO, str(tmp / 'data' / 'ade_shapes')))
    return dict(
        tmp=tmp,
        det=(str(det), _checkpoint(det, 'mmdet', tmp / 'det.pth'),
             _as_png(tmp / 'data/coco_shapes/val/000000000001.jpg',
                     tmp / 'shapes.png')),
        seg=(str(seg), _checkpoint(seg, 'mmseg', tmp / 'seg.pth'),
             _as_png(tmp / 'data/ade_shapes/images/validation/'
                     'ADE_val_00000001.jpg', tmp / 'scene.png')))


def _demo(args, cwd):
    res, out = run_python([DEMO] + [str(a) for a in args], cwd)
    return res, out


def _pixels(path):
    with Image.open(path) as img:
        assert img.format == 'PNG'
        return np.asarray(img.convert('RGB')).astype(np.int16)


def test_detection_draws_on_the_image(setup):
    cfg, ckpt, image = setup['det']
    out_dir = setup['tmp'] / 'out_det'
    res, log = _demo([image, cfg, ckpt, '--out-dir', out_dir, '--device',
                      'cpu', '--score-thr', '0'], setup['tmp'])
    assert res.returncode == 0, log[-4000:]
    lines = res.stdout.strip().splitlines()
    drawn = out_dir / 'vis' / 'shapes.png'  # mmdet's OUT_DIR/vis/<name>
    assert lines[-1] == str(drawn)
    # the tiny config keeps 10 detections; named with the config's classes
    # (not mmdet's COCO default: the checkpoint has no dataset_meta)
    summary = lines[-2]
    assert summary.startswith('mmdet: 10 of 10 detections with score >= 0:')
    names = re.findall(r'(?:: |, )([a-z]+) 0\.\d\d', summary)
    assert len(names) == 10 and set(names) <= set(SHAPES_CLASSES), summary
    orig, after = _pixels(image), _pixels(drawn)
    assert after.shape == orig.shape
    # boxes and masks drawn: many pixels changed by more than a little
    changed = (np.abs(after - orig).max(-1) > 20).mean()
    assert changed > 0.01, changed

    # --score-thr above every score draws nothing: the same pixels; the file
    # of the first run is replaced, and the script says so
    res, log = _demo([image, cfg, ckpt, '--out-dir', out_dir, '--device',
                      'cpu', '--score-thr', '1.01'], setup['tmp'])
    assert res.returncode == 0, log[-4000:]
    assert 'mmdet: 0 of 10 detections with score >= 1.01' in res.stdout
    assert f'replaced the existing {drawn}' in res.stderr
    assert np.array_equal(_pixels(drawn), orig)


def test_segmentation_draws_the_class_map(setup):
    cfg, ckpt, image = setup['seg']
    out_dir = setup['tmp'] / 'out_seg'
    res, log = _demo([image, cfg, ckpt, '--out-dir', out_dir],
                     setup['tmp'])
    assert res.returncode == 0, log[-4000:]
    lines = res.stdout.strip().splitlines()
    drawn = out_dir / 'vis' / 'scene.png'
    assert lines[-1] == str(drawn)
    orig, after = _pixels(image), _pixels(drawn)
    # the class map at the image's own size, blended over all of it
    assert after.shape == orig.shape
    h, w = orig.shape[:2]
    summary = lines[-2]
    assert summary.startswith(f'mmseg: class map of {w}x{h} pixels: ')
    parts = re.findall(r'([a-z]+) ([0-9.]+)%', summary)
    assert parts and {n for n, _ in parts} <= set(ADE_SHAPES_CLASSES)
    assert abs(sum(float(p) for _, p in parts) - 100) < 0.5
    changed = (np.abs(after - orig).max(-1) > 10).mean()
    assert changed > 0.5, changed


def test_missing_checkpoint_stops_naming_it(setup):
    cfg, ckpt, image = setup['det']
    tmp = setup['tmp']
    res, log = _demo([image, cfg, tmp / 'nowhere.pth'], tmp)
    assert res.returncode != 0
    assert ('image_demo.py: error: FileNotFoundError: CHECKPOINT '
            f"'{tmp / 'nowhere.pth'}' does not exist") in res.stderr, log
    assert not (tmp / 'work_dirs').exists()  # nothing written


def test_checkpoint_that_does_not_fit_stops_unless_non_strict(setup):
    """The fit check shared with tools/train.py and tools/test.py
    (mmssm.apis.check_checkpoint_fits): a checkpoint missing one weight
    stops the demo naming it and draws nothing; --non-strict draws with the
    weights that fit and names the one that did not."""
    cfg, ckpt, image = setup['det']
    tmp = setup['tmp']
    state = torch.load(ckpt)['state_dict']
    state.pop('roi_head.bbox_head.fc_cls.bias')
    partial = tmp / 'det_partial.pth'
    torch.save({'state_dict': state, 'meta': {}}, partial)
    out_dir = tmp / 'out_partial'
    res, log = _demo([image, cfg, partial, '--out-dir', out_dir, '--device',
                      'cpu'], tmp)
    assert res.returncode != 0
    assert (f"checkpoint '{partial}' does not fit the model of the config "
            '(pass --non-strict') in res.stderr, log[-4000:]
    assert ('missing in the checkpoint (1): roi_head.bbox_head.fc_cls.bias'
            in res.stderr), log[-4000:]
    assert not out_dir.exists()
    res, log = _demo([image, cfg, partial, '--out-dir', out_dir, '--device',
                      'cpu', '--non-strict'], tmp)
    assert res.returncode == 0, log[-4000:]
    assert '--non-strict: loading the weights of' in log
    assert 'roi_head.bbox_head.fc_cls.bias' in log
    assert res.stdout.strip().splitlines()[-1] == str(
        out_dir / 'vis' / 'shapes.png')


def test_argument_checks(setup, tmp_path):
    """check_inputs in-process: each wrong argument named, the scope read."""
    spec = importlib.util.spec_from_file_location('image_demo', DEMO)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    cfg, ckpt, image = setup['det']
    with pytest.raises(FileNotFoundError, match="IMAGE '.*nope.png' does "
                       'not exist'):
        demo.check_inputs(str(tmp_path / 'nope.png'), cfg, ckpt)
    with pytest.raises(FileNotFoundError, match='CONFIG .* is not a file'):
        demo.check_inputs(image, str(tmp_path), ckpt)
    with pytest.raises(ValueError, match=r'IMAGE .* \(5 bytes\) is not a '
                       'readable image'):
        (tmp_path / 'x.png').write_text('hello')
        demo.check_inputs(str(tmp_path / 'x.png'), cfg, ckpt)
    (tmp_path / 'bad.pth').write_text('hello')
    with pytest.raises(ValueError, match='CHECKPOINT: checkpoint .* is not '
                       'a PyTorch checkpoint'):
        demo.check_inputs(image, cfg, str(tmp_path / 'bad.pth'))
    other = tmp_path / 'ocr.py'
    other.write_text("default_scope = 'mmocr'\n")
    with pytest.raises(ValueError, match=r"CONFIG '.*ocr.py' has "
                       r"default_scope='mmocr'; image_demo.py runs configs "
                       r'of mmdet \(DetInferencer\), mmseg'):
        demo.check_inputs(image, str(other), ckpt)
    loaded, task, shapes = demo.check_inputs(image, cfg, ckpt)
    assert loaded.default_scope == task == 'mmdet'
    assert shapes['roi_head.bbox_head.fc_cls.weight'] == (6, 32)  # 5 + bg
    assert demo.output_path('mmseg', '/a/b.jpg', 'o') == 'o/vis/b.jpg'
    assert demo.output_path('mmpretrain', '/a/b.jpg', 'o') == 'o/b.png'
