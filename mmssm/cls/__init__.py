"""mmpretrain-specific components (imports mmpretrain; ``import mmssm`` does
not import this package: list ``'mmssm.cls'`` in ``custom_imports``)."""
from .distill import DistillImageClassifier, GroupMambaDistHead  # noqa: F401
from ..models.heads.mambaout_head import MambaOutHead  # noqa: F401
