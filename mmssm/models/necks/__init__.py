from .plain_pyramid import PlainMultiLevelTaps, SimpleFeaturePyramid  # noqa: F401
