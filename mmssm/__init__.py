"""mmssm: vision state-space backbones for OpenMMLab dense prediction.

``import mmssm`` registers the backbones, necks, hooks and optimizer constructors in
mmengine's root registries and in the ``mmssm`` scope. It never imports mmdet or mmseg.
"""
from .version import __version__

__all__ = ['__version__']
