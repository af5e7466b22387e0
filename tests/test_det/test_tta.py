"""DetTTAModelWithMasks: hand-made predictions of augmented views are merged
into the expected boxes, labels, scores and masks (flips undone, masks
resampled to the original image, cluster means or the kept mask)."""
import pytest
import torch
import torch.nn as nn
from mmdet.structures import DetDataSample
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmssm.det import DetTTAModelWithMasks
from mmssm.det.tta import masks_to_original, unflip_masks

H, W = 20, 30


class _Detector(nn.Module):
    """Stand-in detector: only what BaseTTAModel and the merge look at."""

    def __init__(self, mask_thr_binary=None):
        super().__init__()
        if mask_thr_binary is not None:
            self.roi_head = nn.Module()
            self.roi_head.test_cfg = ConfigDict(
                mask_thr_binary=mask_thr_binary)

    def test_step(self, data):
        raise AssertionError('not called in these tests')


def _rect(x0, x1, y0=3, y1=13, shape=(H, W), value=255):
    m = torch.zeros(shape, dtype=torch.uint8)
    m[y0:y1, x0:x1] = value
    return m


def _view(boxes, scores, labels, masks, flip=False, direction=None):
    ds = DetDataSample(
        metainfo=dict(
            img_id=1, ori_shape=(H, W), flip=flip, flip_direction=direction))
    inst = InstanceData()
    inst.bboxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    inst.scores = torch.tensor(scores, dtype=torch.float32)
    inst.labels = torch.tensor(labels, dtype=torch.long)
    inst.masks = (torch.stack(masks) if masks else torch.zeros(
        0, H, W, dtype=torch.uint8))
    ds.pred_instances = inst
    return ds


def _hflip_box(b):
    return [W - b[2], b[1], W - b[0], b[3]]


def test_unflip_and_resample_helpers():
    m = torch.zeros(1, 4, 6, dtype=torch.bool)
    m[0, 1, 0] = True
    assert unflip_masks(m, 'horizontal')[0, 1, 5]
    assert unflip_masks(m, 'vertical')[0, 2, 0]
    assert unflip_masks(m, 'diagonal')[0, 2, 5]
    with pytest.raises(ValueError, match='flip_direction'):
        unflip_masks(m, 'sideways')
    # a mask predicted at twice the original size, flipped: back to (H, W)
    big = _rect(2 * (W - 12), 2 * (W - 2), 6, 26, shape=(2 * H, 2 * W))
    out = masks_to_original(big[None], (H, W), True, 'horizontal')
    assert out.shape == (1, H, W)
    assert torch.equal(out[0], _rect(2, 12).float() / 255)
    with pytest.raises(TypeError, match='bool, uint8'):
        masks_to_original(torch.zeros(1, 2, 2, dtype=torch.int32), (2, 2),
                          False, None)


def _three_views():
    box = [2., 3., 12., 13.]
    # view 0 (unflipped, best score): the object, columns 2..11
    v0 = _view([box, [20., 2., 28., 8.]], [0.9, 0.6], [1, 2],
               [_rect(2, 12), _rect(20, 28, 2, 8)])
    # view 1 (horizontally flipped): columns 2..9 once un-flipped, plus a
    # detection of another class on the same object (not clustered)
    v1 = _view([_hflip_box(box), _hflip_box(box)], [0.8, 0.5], [1, 0],
               [_rect(W - 10, W - 2), _rect(0, W, 0, H)],
               flip=True, direction='horizontal')
    # view 2 (unflipped, masks at 2x resolution): columns 2..7
    v2 = _view([box], [0.7], [1], [_rect(4, 16, 6, 26, shape=(2 * H, 2 * W))])
    return [v0, v1, v2]


def test_mean_merge_of_flipped_and_rescaled_views():
    tta = DetTTAModelWithMasks(module=_Detector())
    assert tta.mask_thr_binary == 0.5
    out = tta.merge_preds([_three_views()])[0]
    res = out.pred_instances
    # NMS keeps one box per object and class, best score first
    assert res.labels.tolist() == [1, 2, 0]
    assert torch.allclose(res.scores, torch.tensor([0.9, 0.6, 0.5]))
    assert torch.allclose(res.bboxes[0], torch.tensor([2., 3., 12., 13.]))
    # the class-0 box came from the flipped view: it is un-flipped
    assert torch.allclose(res.bboxes[2], torch.tensor([2., 3., 12., 13.]))
    assert res.masks.dtype == torch.bool and res.masks.shape == (3, H, W)
    # mean of columns 2..11, 2..9 and 2..7 >= 0.5: columns 2..9
    assert torch.equal(res.masks[0], _rect(2, 10) > 0)
    assert torch.equal(res.masks[1], _rect(20, 28, 2, 8) > 0)
    # the other-class mask (whole flipped image) is its own instance
    assert torch.equal(res.masks[2], torch.ones(H, W, dtype=torch.bool))
    # the merged sample is an unflipped view's
    assert out.metainfo['flip'] is False


def test_keep_merge_and_max_per_img():
    tta = DetTTAModelWithMasks(
        module=_Detector(), tta_cfg=dict(mask_merge='keep', max_per_img=2))
    res = tta.merge_preds([_three_views()])[0].pred_instances
    assert len(res) == 2
    assert torch.equal(res.masks[0], _rect(2, 12) > 0)


def test_flip_only_view_is_unflipped():
    tta = DetTTAModelWithMasks(module=_Detector())
    b = [4., 5., 9., 15.]
    v = _view([_hflip_box(b)], [0.7], [3], [_rect(W - 9, W - 4, 5, 15)],
              flip=True, direction='horizontal')
    res = tta.merge_preds([[v]])[0].pred_instances
    assert torch.allclose(res.bboxes, torch.tensor([b]))
    assert torch.equal(res.masks[0], _rect(4, 9, 5, 15) > 0)


def test_empty_views_give_empty_masks():
    tta = DetTTAModelWithMasks(module=_Detector())
    res = tta.merge_preds([[_view([], [], [], []),
                            _view([], [], [], [], True, 'horizontal')]
                           ])[0].pred_instances
    assert len(res) == 0 and res.masks.shape == (0, H, W)
    assert res.bboxes.shape == (0, 4)


def test_soft_masks_requested_from_detector_and_threshold_kept():
    det = _Detector(mask_thr_binary=0.4)
    tta = DetTTAModelWithMasks(module=det)
    assert det.roi_head.test_cfg.mask_thr_binary == -1
    assert tta.mask_thr_binary == 0.4
    # soft masks: 0.45 average passes the 0.4 threshold, 0.3 does not
    box = [[0., 0., 10., 10.]]
    v0 = _view(box, [0.9], [0], [_rect(0, 10, 0, 10, value=115)])
    v1 = _view(box, [0.8], [0], [
        _rect(0, 5, 0, 10, value=115) + _rect(5, 10, 0, 10, value=38)])
    res = tta.merge_preds([[v0, v1]])[0].pred_instances
    assert torch.equal(res.masks[0], _rect(0, 5, 0, 10) > 0)
    keep = DetTTAModelWithMasks(
        module=_Detector(mask_thr_binary=0.5), tta_cfg=dict(mask_merge='keep'))
    assert keep.module.roi_head.test_cfg.mask_thr_binary == 0.5


def test_bad_settings_and_missing_flip_meta():
    with pytest.raises(ValueError, match='mask_merge'):
        DetTTAModelWithMasks(
            module=_Detector(), tta_cfg=dict(mask_merge='max'))
    with pytest.raises(KeyError, match='unknown tta_cfg'):
        DetTTAModelWithMasks(module=_Detector(), tta_cfg=dict(nms_thr=0.5))
    tta = DetTTAModelWithMasks(module=_Detector())
    v = _view([[0., 0., 4., 4.]], [0.9], [0], [_rect(0, 4, 0, 4)])
    del v.flip
    with pytest.raises(KeyError, match='flip_direction|flip'):
        tta.merge_preds([[v]])
