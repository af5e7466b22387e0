"""Gray images given to mmdet's ``inference_detector`` as numpy arrays.

A 2-D (or ``H x W x 1``) array goes through mmdet's ``LoadImageFromNDArray``
unchanged and ends in an ``IndexError`` deep in the data preprocessor (its
BGR-to-RGB swap indexes channel 2 of a one-channel tensor). Images read from
files are decoded to three channels, so a gray array is converted the same
way here: its single channel repeated into B, G and R. Applied when
:mod:`mmssm.det` is imported (the detection configs' ``custom_imports``).
"""
import numpy as np

__all__ = ['patch_gray_ndarray_input', 'gray_to_bgr']


def gray_to_bgr(img):
    """``H x W`` or ``H x W x 1`` -> ``H x W x 3`` (the channel repeated);
    other arrays are returned as they are."""
    if isinstance(img, np.ndarray) and (img.ndim == 2 or
                                        (img.ndim == 3 and img.shape[2] == 1)):
        return np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3,
                         axis=2)
    return img


def patch_gray_ndarray_input() -> bool:
    """Make mmdet's ``LoadImageFromNDArray`` accept gray arrays (idempotent).
    """
    from mmdet.datasets.transforms import LoadImageFromNDArray
    transform = LoadImageFromNDArray.transform
    if getattr(transform, '_mmssm_gray', False):
        return True

    def gray_aware_transform(self, results):
        results['img'] = gray_to_bgr(results['img'])
        return transform(self, results)

    gray_aware_transform._mmssm_gray = True
    gray_aware_transform.__doc__ = transform.__doc__
    LoadImageFromNDArray.transform = gray_aware_transform
    return True
