"""mmdet-specific pieces of mmssm.

``import mmssm`` does not import this subpackage (it imports mmdet); detection
configs that use it list it in their custom imports::

    custom_imports = dict(imports=['mmssm', 'mmssm.det'],
                          allow_failed_imports=False)
"""
from .gray import patch_gray_ndarray_input
from .tta import DetTTAModelWithMasks  # noqa: F401

patch_gray_ndarray_input()

__all__ = ['DetTTAModelWithMasks', 'patch_gray_ndarray_input']
