from . import backbones, layers  # noqa: F401
from . import losses  # noqa: F401
from . import necks  # noqa: F401
