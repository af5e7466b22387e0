from .slws import SLWSHook  # noqa: F401
