"""Test-time augmentation of instance segmentation: boxes and masks.

mmdet 3.3's ``DetTTAModel`` merges the boxes of the augmented views with NMS
but refuses instance masks ("TTA of instance segmentation does not support
now"). :class:`DetTTAModelWithMasks` does the same box merge and, for every
kept instance, brings the masks of the augmented views back to the original
image and merges them.
"""
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.ops import batched_nms
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox_flip, bbox_overlaps
from mmengine.model import BaseTTAModel
from mmengine.structures import InstanceData
from torch import Tensor

from mmssm.registry import register_model

__all__ = ['DetTTAModelWithMasks', 'unflip_masks', 'masks_to_original']

#: Accepted values of ``tta_cfg['mask_merge']``.
MASK_MERGES = ('mean', 'keep')


def unflip_masks(masks: Tensor, direction: str) -> Tensor:
    """Undo the flip of a view on its masks ``(..., H, W)``.

    Args:
        masks (Tensor): Masks of a flipped view, last two dims ``(H, W)``.
        direction (str): ``'horizontal'``, ``'vertical'`` or ``'diagonal'``
            (the ``flip_direction`` of mmcv's ``RandomFlip``).

    Returns:
        Tensor: The masks in the unflipped image.
    """
    if direction == 'horizontal':
        return masks.flip(-1)
    if direction == 'vertical':
        return masks.flip(-2)
    if direction == 'diagonal':
        return masks.flip(-2, -1)
    raise ValueError(f'unknown flip_direction {direction!r}; expected '
                     "'horizontal', 'vertical' or 'diagonal'")


def _soft(masks: Tensor) -> Tensor:
    """Masks as float probabilities in [0, 1] (bool, uint8 0..255, float)."""
    if masks.dtype == torch.bool:
        return masks.float()
    if masks.dtype == torch.uint8:
        return masks.float() / 255.
    if masks.is_floating_point():
        return masks.float()
    raise TypeError('instance masks must be bool, uint8 (soft masks scaled to '
                    f'0..255) or float tensors, got {masks.dtype}')


def masks_to_original(masks: Tensor, ori_shape: Sequence[int], flip: bool,
                      flip_direction: Optional[str]) -> Tensor:
    """Resample one view's masks ``(n, h, w)`` onto the original image.

    The masks cover the whole (resized, possibly flipped) image of the view:
    the flip is undone and masks whose size differs from ``ori_shape`` are
    resized bilinearly to it (mmdet's ``predict(..., rescale=True)`` already
    pastes them at ``ori_shape``, then only the flip is undone).

    Args:
        masks (Tensor): ``(n, h, w)`` bool, uint8 (0..255) or float masks.
        ori_shape (Sequence[int]): ``(H, W)`` of the original image.
        flip (bool): Whether the view was flipped.
        flip_direction (str, optional): Direction of the flip.

    Returns:
        Tensor: ``(n, H, W)`` float masks in [0, 1].
    """
    if masks.dim() != 3:
        raise ValueError('instance masks must be (n, H, W), got shape '
                         f'{tuple(masks.shape)}')
    masks = _soft(masks)
    if flip:
        masks = unflip_masks(masks, flip_direction)
    height, width = int(ori_shape[0]), int(ori_shape[1])
    if tuple(masks.shape[-2:]) != (height, width) and masks.shape[0] > 0:
        masks = F.interpolate(
            masks[:, None], size=(height, width), mode='bilinear',
            align_corners=False)[:, 0]
    elif masks.shape[0] == 0:
        masks = masks.new_zeros(0, height, width)
    return masks


@register_model()
class DetTTAModelWithMasks(BaseTTAModel):
    """Multi-scale and flip test-time augmentation with instance masks.

    Boxes: the boxes of every view (already in original-image coordinates,
    mmdet predicts with ``rescale=True``) are un-flipped and merged with
    class-wise NMS, keeping the ``max_per_img`` best, as mmdet's
    ``DetTTAModel``. The kept box and its score are those of the winning
    detection (no box averaging).

    Masks, for every kept instance (``tta_cfg['mask_merge']``):

    * ``'mean'`` (default): the *cluster* of the kept instance is every
      detection of any view with the same label whose (un-flipped) box has an
      IoU >= ``cluster_iou_thr`` with the kept box (the kept detection is in
      it). Each member's soft mask is resampled onto the original image (flip
      undone, resized to ``ori_shape`` when needed), the cluster's masks are
      averaged with equal weights and the mean is binarised at
      ``mask_thr_binary``. To get soft masks, the wrapped detector's
      ``roi_head.test_cfg.mask_thr_binary`` is set to -1 (mmdet then returns
      ``uint8`` masks scaled to 0..255); its original value becomes the
      threshold of the mean unless ``tta_cfg`` gives one. Binary masks (from
      a detector without that setting) are averaged as votes.
    * ``'keep'``: the kept detection's own mask, un-flipped and resampled.

    Example::

        tta_model = dict(
            type='DetTTAModelWithMasks',
            tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5),
                         max_per_img=100, mask_merge='mean'))

    The ``tta_pipeline`` must pack ``flip`` and ``flip_direction`` into the
    meta information (``PackDetInputs(meta_keys=(..., 'flip',
    'flip_direction'))``).

    Args:
        module (dict | nn.Module): The detector (config or module).
        tta_cfg (dict, optional): ``nms`` (mmcv ``batched_nms`` config,
            default ``dict(type='nms', iou_threshold=0.5)``), ``max_per_img``
            (default 100), ``mask_merge`` (``'mean'`` or ``'keep'``),
            ``cluster_iou_thr`` (default: the NMS IoU threshold) and
            ``mask_thr_binary`` (default: the detector's, else 0.5).
        data_preprocessor (dict | nn.Module, optional): Overrides the
            detector's data preprocessor.
    """

    def __init__(self,
                 module: Union[dict, nn.Module],
                 tta_cfg: Optional[dict] = None,
                 data_preprocessor: Union[dict, nn.Module, None] = None):
        super().__init__(module=module, data_preprocessor=data_preprocessor)
        tta_cfg = dict(tta_cfg or {})
        unknown = set(tta_cfg) - {
            'nms', 'max_per_img', 'mask_merge', 'cluster_iou_thr',
            'mask_thr_binary'
        }
        if unknown:
            raise KeyError(f'DetTTAModelWithMasks: unknown tta_cfg keys '
                           f'{sorted(unknown)}')
        self.nms_cfg = dict(
            tta_cfg.get('nms', dict(type='nms', iou_threshold=0.5)))
        if 'iou_threshold' not in self.nms_cfg:
            raise KeyError('DetTTAModelWithMasks: tta_cfg.nms needs an '
                           'iou_threshold')
        self.max_per_img = int(tta_cfg.get('max_per_img', 100))
        self.mask_merge = tta_cfg.get('mask_merge', 'mean')
        if self.mask_merge not in MASK_MERGES:
            raise ValueError(f'DetTTAModelWithMasks: mask_merge must be one '
                             f'of {MASK_MERGES}, got {self.mask_merge!r}')
        self.cluster_iou_thr = float(
            tta_cfg.get('cluster_iou_thr', self.nms_cfg['iou_threshold']))
        thr = tta_cfg.get('mask_thr_binary', None)
        roi_test_cfg = getattr(
            getattr(self.module, 'roi_head', None), 'test_cfg', None)
        if roi_test_cfg is not None and 'mask_thr_binary' in roi_test_cfg:
            if thr is None and roi_test_cfg['mask_thr_binary'] >= 0:
                thr = roi_test_cfg['mask_thr_binary']
            if self.mask_merge == 'mean':
                # soft (uint8 0..255) masks from the detector
                roi_test_cfg['mask_thr_binary'] = -1
        self.mask_thr_binary = 0.5 if thr is None else float(thr)

    def merge_preds(self, data_samples_list: List[List[DetDataSample]]
                    ) -> List[DetDataSample]:
        """Merge the views of every image of the batch.

        Args:
            data_samples_list (list[list[DetDataSample]]): Outer list: images;
                inner list: the predictions of the views of one image.

        Returns:
            list[DetDataSample]: One merged prediction per image.
        """
        return [self._merge_single_sample(v) for v in data_samples_list]

    def _merge_single_sample(self,
                             views: Sequence[DetDataSample]) -> DetDataSample:
        """Merge the predictions of the views of one image."""
        with_masks = {'masks' in v.pred_instances for v in views}
        if len(with_masks) != 1:
            raise ValueError('DetTTAModelWithMasks: some views predicted '
                             'masks and others did not')
        with_masks = with_masks.pop()
        ori_shape = views[0].metainfo['ori_shape']
        bboxes, scores, labels, owners = [], [], [], []
        for i, view in enumerate(views):
            meta = view.metainfo
            for key in ('flip', 'flip_direction'):
                if key not in meta:
                    raise KeyError(
                        f'DetTTAModelWithMasks: the view has no `{key}` in '
                        'its meta information; add it to PackDetInputs '
                        'meta_keys of the tta_pipeline')
            inst = view.pred_instances
            boxes = inst.bboxes
            if meta['flip']:
                boxes = bbox_flip(boxes, ori_shape, meta['flip_direction'])
            bboxes.append(boxes)
            scores.append(inst.scores)
            labels.append(inst.labels)
            owners.append(
                torch.stack([
                    torch.full_like(inst.labels, i),
                    torch.arange(len(inst.labels), device=inst.labels.device)
                ], 1))
        bboxes, scores = torch.cat(bboxes), torch.cat(scores)
        labels, owners = torch.cat(labels), torch.cat(owners)

        # Prefer an unflipped view's data sample for the merged output.
        out = next((v for v in views if not v.metainfo['flip']), views[0])
        results = InstanceData()
        if bboxes.numel() == 0:
            keep = labels.new_zeros(0)
            results.bboxes = bboxes.reshape(0, 4)
            results.scores = scores
        else:
            dets, keep = batched_nms(bboxes, scores, labels, self.nms_cfg)
            dets, keep = dets[:self.max_per_img], keep[:self.max_per_img]
            results.bboxes = dets[:, :4]
            results.scores = dets[:, 4]
        results.labels = labels[keep]
        if with_masks:
            results.masks = self._merge_masks(views, bboxes, labels, owners,
                                              keep, ori_shape)
        out.pred_instances = results
        return out

    def _view_masks(self, view: DetDataSample, idx: Tensor,
                    ori_shape) -> Tensor:
        meta = view.metainfo
        return masks_to_original(view.pred_instances.masks[idx], ori_shape,
                                 meta['flip'], meta['flip_direction'])

    def _merge_masks(self, views, bboxes: Tensor, labels: Tensor,
                     owners: Tensor, keep: Tensor, ori_shape) -> Tensor:
        """Binary masks ``(k, H, W)`` of the kept instances."""
        height, width = int(ori_shape[0]), int(ori_shape[1])
        merged = torch.zeros((len(keep), height, width), dtype=torch.bool,
                             device=bboxes.device)
        if len(keep) == 0:
            return merged
        if self.mask_merge == 'keep':
            members = [keep[i:i + 1] for i in range(len(keep))]
        else:
            ious = bbox_overlaps(bboxes[keep], bboxes)
            same = labels[keep][:, None] == labels[None]
            cluster = (ious >= self.cluster_iou_thr) & same
            cluster[torch.arange(len(keep)), keep] = True
            members = [c.nonzero()[:, 0] for c in cluster]
        for i, member in enumerate(members):
            total = None
            for view_idx in owners[member, 0].unique().tolist():
                local = owners[member][owners[member, 0] == view_idx, 1]
                soft = self._view_masks(views[view_idx], local,
                                        ori_shape).sum(0)
                total = soft if total is None else total + soft
            merged[i] = (total / len(member)) >= self.mask_thr_binary
        return merged
