from .layer_decay import SSMLayerDecayOptimWrapperConstructor  # noqa: F401
