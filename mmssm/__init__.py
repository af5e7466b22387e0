"""mmssm: vision state-space backbones for OpenMMLab dense prediction.

``import mmssm`` does three things and nothing else:

* registers mmssm's backbones, necks, losses, hooks and optimizer
  constructors in the ``mmssm`` scope and in mmengine's root registries
  (:mod:`mmssm.registry`), so that ``type='X'`` resolves from the mmdet, mmseg
  and mmpretrain scopes alike;
* applies the fixes of the pinned stack documented in
  :mod:`mmssm.utils.setup_env` (README, "Traps of this stack");
* nothing task-specific: it never imports mmdet, mmseg or mmpretrain (their
  mmcv version gates would break users of only one of them). The pieces that
  import them live in :mod:`mmssm.det` (mmdet) and :mod:`mmssm.cls`
  (mmpretrain); configs list those in ``custom_imports``. mmssm has no
  mmseg-specific code: its segmentors are mmseg's own.

It loads no compiled mmcv op (``mmcv._ext``): only the ViT-Adapter's
deformable attention needs one, when it is built. Triton is imported on the
first Triton scan call.

When mmengine is not installed at all there are no registries to fill: the
package then imports without registering anything, so that :mod:`mmssm.ops`
(the selective scan, torch only) stays usable on its own. Any other import
error is raised as usual.
"""
from .version import __version__

try:
    import mmengine  # noqa: F401
except ModuleNotFoundError as err:
    if (err.name or '').split('.')[0] != 'mmengine':
        raise
    _HAS_MMENGINE = False
else:
    _HAS_MMENGINE = True

if _HAS_MMENGINE:
    from .utils import setup_env as _setup_env
    _setup_env()

    from . import datasets, engine, models, ops  # noqa: F401

__all__ = ['__version__']
