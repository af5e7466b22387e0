"""mmssm: vision state-space backbones for OpenMMLab dense prediction.

``import mmssm`` registers the backbones, necks, hooks and optimizer
constructors in mmengine's root registries and in the ``mmssm`` scope, and
applies the stack fixes of :mod:`mmssm.utils.setup_env`. It never imports mmdet
or mmseg (their mmcv version gates would break users of only one of them);
task-specific pieces live in :mod:`mmssm.det` and :mod:`mmssm.seg`.
"""
from .utils import setup_env as _setup_env
from .version import __version__

_setup_env()

from . import datasets, engine, models, ops  # noqa: E402,F401

__all__ = ['__version__']
