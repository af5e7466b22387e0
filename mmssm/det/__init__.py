"""mmdet-specific pieces of mmssm.

``import mmssm`` does not import this subpackage (it imports mmdet); detection
configs that use it list it in their custom imports::

    custom_imports = dict(imports=['mmssm', 'mmssm.det'],
                          allow_failed_imports=False)
"""
from .tta import DetTTAModelWithMasks  # noqa: F401

__all__ = ['DetTTAModelWithMasks']
