from .nonfinite_guard import NonFiniteError, NonFiniteGuardHook  # noqa: F401
from .show_dir import ShowDirHook  # noqa: F401
from .slws import SLWSHook  # noqa: F401
from .rng_state import RNGStateHook  # noqa: F401
from .pruning import (EarlyBirdHook, IterativePruningHook,  # noqa: F401
                      MagnitudePruningHook)
