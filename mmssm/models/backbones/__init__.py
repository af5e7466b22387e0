from .base import (BaseBackbone, PlainBackboneMixin,  # noqa: F401
                   check_plain_backbone)
from .mambaout import MambaOut, convert_mambaout  # noqa: F401
from .groupmamba import GroupMamba, convert_groupmamba  # noqa: F401
from .vim import Vim, convert_vim  # noqa: F401
from .vit_adapter import PlainAdapter  # noqa: F401
from .mambavision import MambaVision, convert_mambavision  # noqa: F401
