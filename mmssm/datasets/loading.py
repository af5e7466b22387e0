"""Errors of data loading that name the file and say what is wrong.

:func:`patch_data_errors` (applied by ``tools/train.py``/``tools/test.py``
through :func:`mmssm.apis.build_runner`) wraps two places of the stack:

* mmcv's ``LoadImageFromFile.transform`` (used by mmdet, mmseg and
  mmpretrain pipelines): a missing image, an empty (0-byte) file and bytes
  that do not decode as an image raise an error naming the file, instead of
  a cv2 assertion (``!buf.empty()``) or ``failed to load image``;
* mmengine's ``BaseDataset._serialize_data``: a dataset left with no samples
  (every image filtered out by ``filter_cfg.filter_empty_gt`` because none has
  an annotation, or an empty file list) raises an error naming the
  annotation file and the filter, instead of numpy's "need at least one
  array to concatenate".

mmcv and mmengine are imported only when the patch is applied.
"""
import os
import os.path as osp

__all__ = ['ImageLoadError', 'EmptyDatasetError', 'patch_data_errors']


class ImageLoadError(OSError):
    """An image of a dataset could not be read; the message names it."""


class EmptyDatasetError(ValueError):
    """A dataset has no samples left to load; the message says why."""


def describe_unreadable_image(path: str) -> str:
    """Why ``path`` cannot be read as an image (one line)."""
    if '://' in str(path):
        return f'cannot read image {path!r}'
    if not osp.exists(path):
        parent = osp.dirname(path)
        where = ('its folder exists' if osp.isdir(parent) else
                 f'nor does its folder {parent!r}')
        return (f'image file {path!r} does not exist ({where}); the dataset '
                'lists it (annotation file or file list): check data_root/'
                'data_prefix of the config or --data-root')
    if osp.isdir(path):
        return f'image path {path!r} is a directory, not an image file'
    size = os.stat(path).st_size
    if size == 0:
        return (f'image file {path!r} is empty (0 bytes): an interrupted '
                'copy or download? Replace it, or remove it from the '
                'annotations')
    return (f'image file {path!r} ({size} bytes) is not a readable image '
            '(corrupt or not an image format cv2/PIL decode)')


def _wrap_load_image(transform):

    def wrapped(self, results):
        path = results.get('img_path', None)
        try:
            out = transform(self, results)
        except AssertionError as e:  # mmcv: "failed to load image"
            raise ImageLoadError(describe_unreadable_image(path)) from e
        except Exception as e:
            if path is None or (osp.isfile(path) and
                                os.stat(path).st_size > 0 and
                                not _decode_error(e)):
                raise
            raise ImageLoadError(describe_unreadable_image(path)) from e
        return out

    wrapped._mmssm_wrapped = True
    wrapped.__wrapped__ = transform
    wrapped.__doc__ = transform.__doc__
    return wrapped


def _decode_error(e: Exception) -> bool:
    """cv2/PIL/turbojpeg failures to decode the bytes."""
    mod = type(e).__module__ or ''
    return mod.startswith(('cv2', 'PIL')) or 'imdecode' in str(e)


def _wrap_serialize(serialize):

    def wrapped(self):
        if len(self.data_list) == 0:
            raise EmptyDatasetError(_empty_message(self))
        return serialize(self)

    wrapped._mmssm_wrapped = True
    wrapped.__wrapped__ = serialize
    return wrapped


def _empty_message(dataset) -> str:
    name = type(dataset).__name__
    ann = getattr(dataset, 'ann_file', '') or ''
    root = getattr(dataset, 'data_root', '') or ''
    src = (f'annotation file {ann!r}' if ann else
           f'data_root {root!r} (data_prefix={dataset.data_prefix})')
    filt = getattr(dataset, 'filter_cfg', None) or {}
    if filt.get('filter_empty_gt', False) and not dataset.test_mode:
        return (f'{name}: no training sample left from {src}: '
                f'filter_cfg={dict(filt)} dropped every image, so none of '
                'its images has a (usable) annotation. Check that the '
                'annotation file has annotations for its images (category '
                'ids in metainfo.classes, sizes above min_size), or set '
                'filter_cfg.filter_empty_gt=False to train on images '
                'without objects')
    return (f'{name}: the dataset has no samples ({src} lists none'
            + (' after indices=' + str(dataset._indices)
               if getattr(dataset, '_indices', None) is not None else '')
            + ')')


def patch_data_errors() -> bool:
    """Apply both wrappers (idempotent). Returns True."""
    from mmcv.transforms.loading import LoadImageFromFile
    from mmengine.dataset import BaseDataset
    if not getattr(LoadImageFromFile.transform, '_mmssm_wrapped', False):
        LoadImageFromFile.transform = _wrap_load_image(
            LoadImageFromFile.transform)
    if not getattr(BaseDataset._serialize_data, '_mmssm_wrapped', False):
        BaseDataset._serialize_data = _wrap_serialize(
            BaseDataset._serialize_data)
    return True
