"""Every mmssm detection config has box+mask TTA (DetTTAModelWithMasks,
multi-scale + flip views that carry the flip meta keys, 'mmssm.det' in its
custom imports) and every segmentation config has mmseg's SegTTAModel with
ratios 0.5..1.75 and flip."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DET = sorted(
    glob.glob(osp.join(ROOT, 'configs', '*', 'mask-rcnn_*.py')) +
    glob.glob(osp.join(ROOT, 'configs', '*', 'cascade-mask-rcnn_*.py')))
SEG = sorted(glob.glob(osp.join(ROOT, 'configs', '*', 'upernet_*.py')))


def _rel(path):
    return osp.relpath(path, ROOT)


def _tta_transforms(cfg):
    tta = [t for t in cfg.tta_pipeline if t['type'] == 'TestTimeAug']
    assert len(tta) == 1
    return tta[0]['transforms']


def _flips(stage):
    return sorted((t.get('prob'), t.get('direction', 'horizontal'))
                  for t in stage if t['type'] == 'RandomFlip')


def test_config_lists_are_not_empty():
    assert len(DET) >= 10 and len(SEG) >= 8


@pytest.mark.parametrize('path', DET, ids=_rel)
def test_detection_tta(path):
    cfg = Config.fromfile(path)
    assert 'mmssm.det' in cfg.custom_imports['imports']
    assert cfg.tta_model['type'] == 'DetTTAModelWithMasks'
    assert cfg.tta_model['tta_cfg']['mask_merge'] in ('mean', 'keep')
    scales, flips, pack = _tta_transforms(cfg)
    assert len(scales) >= 2 and all(t['type'] == 'Resize' for t in scales)
    assert _flips(flips) == [(0.0, 'horizontal'), (1.0, 'horizontal')]
    assert pack[0]['type'] == 'PackDetInputs'
    assert {'flip', 'flip_direction', 'ori_shape', 'img_id'} <= set(
        pack[0]['meta_keys'])


@pytest.mark.parametrize('path', SEG, ids=_rel)
def test_segmentation_tta(path):
    cfg = Config.fromfile(path)
    assert cfg.tta_model['type'] == 'SegTTAModel'
    stages = _tta_transforms(cfg)
    ratios = sorted(t['scale_factor'] for t in stages[0])
    assert ratios == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert _flips(stages[1]) == [(0.0, 'horizontal'), (1.0, 'horizontal')]
    assert stages[-1][0]['type'] == 'PackSegInputs'
