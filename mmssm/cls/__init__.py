"""mmpretrain-specific components of mmssm.

Everything here imports mmpretrain, so ``import mmssm`` does not import this
package (it must work without mmpretrain and its mmcv version gate): list
``'mmssm.cls'`` in ``custom_imports``::

    custom_imports = dict(imports=['mmssm', 'mmssm.cls'],
                          allow_failed_imports=False)

* :class:`MambaOutHead`: MambaOut's MLP classifier head;
* :class:`DistillImageClassifier`, :class:`GroupMambaDistHead`: GroupMamba's
  hard-distillation training.
"""
from .distill import DistillImageClassifier, GroupMambaDistHead  # noqa: F401
from .mambaout_head import MambaOutHead  # noqa: F401

__all__ = ['DistillImageClassifier', 'GroupMambaDistHead', 'MambaOutHead']
