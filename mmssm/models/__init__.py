from . import backbones, layers  # noqa: F401
from . import losses  # noqa: F401
