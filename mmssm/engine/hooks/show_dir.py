"""Draw the predictions of every test image (or every N-th) into a folder.

``tools/test.py --show-dir DIR [--show-interval N]`` adds this hook; it works
for mmdet, mmseg and mmpretrain configs alike, with or without a
``visualization`` hook in ``default_hooks`` (the task hooks draw every 50th
batch of mmseg, every 5000th sample of mmpretrain, and into different
folders).
"""
import os.path as osp
from typing import Optional

from mmengine.hooks import Hook
from mmengine.utils import mkdir_or_exist

from mmssm.registry import register_hook

__all__ = ['ShowDirHook']


@register_hook()
class ShowDirHook(Hook):
    """Save the test images with their predictions drawn on them.

    Each drawn image is the original image (read from the sample's
    ``img_path``, at its own size) with the predictions of the model (boxes and
    masks, the segmentation map, or the predicted class) drawn by the runner's
    visualizer; ground truth is not drawn (mmdet and mmseg would put it
    beside the prediction, doubling the width). Files are named as the
    images; an image whose name was already written gets its dataset index
    added (``name_<index>.ext``).

    Args:
        out_dir (str): The folder; a relative one is relative to the run's
            work dir.
        interval (int): Draw every ``interval``-th test image of this
            process (1: every image). Defaults to 1.
        score_thr (float): Detections below this score are not drawn
            (mmdet). Defaults to 0.3.
    """
    priority = 'LOW'

    def __init__(self, out_dir: str, interval: int = 1,
                 score_thr: float = 0.3):
        if interval < 1:
            raise ValueError(f'--show-interval must be >= 1, got {interval}')
        self.out_dir = out_dir
        self.interval = interval
        self.score_thr = score_thr
        self._index = 0
        self._written = set()
        self.out_path: Optional[str] = None

    def before_test(self, runner) -> None:
        from mmengine.visualization import Visualizer
        vis = runner.visualizer
        # mmengine's own add_datasample draws nothing
        if not (hasattr(vis, 'visualize_cls') or type(vis).add_datasample
                is not Visualizer.add_datasample):
            raise RuntimeError(
                f'--show-dir: the runner\'s visualizer '
                f'({type(vis).__name__}) cannot draw predictions; set '
                'visualizer in the config to the task\'s one '
                '(DetLocalVisualizer, SegLocalVisualizer, '
                'UniversalVisualizer), as its default_runtime does')
        self.out_path = self.out_dir if osp.isabs(self.out_dir) else osp.join(
            runner.work_dir, self.out_dir)
        mkdir_or_exist(self.out_path)
        self._index = 0
        self._written = set()
        runner.logger.info(
            f'--show-dir: drawing every {self.interval}-th test image '
            f'into {self.out_path}' if self.interval > 1 else
            f'--show-dir: drawing every test image into {self.out_path}')

    def after_test_iter(self, runner, batch_idx, data_batch=None,
                        outputs=None) -> None:
        import mmcv
        from mmengine.fileio import get
        visualizer = runner.visualizer
        for sample in outputs or []:
            index = self._index
            self._index += 1
            if index % self.interval:
                continue
            img_path = sample.get('img_path', None)
            if img_path is None:
                raise ValueError('--show-dir: the test samples carry no '
                                 'img_path to read the image from')
            img = mmcv.imfrombytes(get(img_path), channel_order='rgb')
            name = osp.basename(img_path)
            if name in self._written:
                stem, ext = osp.splitext(name)
                name = f'{stem}_{index}{ext}'
            self._written.add(name)
            out_file = osp.join(self.out_path, name)
            if hasattr(visualizer, 'visualize_cls'):  # mmpretrain
                visualizer.visualize_cls(
                    image=img, data_sample=sample, out_file=out_file,
                    name=name)
                continue
            kwargs = dict(draw_gt=False, show=False, out_file=out_file)
            if 'pred_instances' in sample:  # mmdet
                kwargs['pred_score_thr'] = self.score_thr
            visualizer.add_datasample(name, img, data_sample=sample, **kwargs)
