"""mmssm: vision state-space backbones for OpenMMLab dense prediction.

``import mmssm`` registers the backbones, necks, hooks and optimizer
constructors in mmengine's root registries and in the ``mmssm`` scope, and
applies the stack fixes of :mod:`mmssm.utils.setup_env`. It never imports mmdet
or mmseg (their mmcv version gates would break users of only one of them);
task-specific pieces live in :mod:`mmssm.det` and :mod:`mmssm.seg`, and it
does not load mmcv's compiled ops (``mmcv._ext``; only the ViT-Adapter's
deformable attention does, when it is built).

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
