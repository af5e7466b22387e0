from .distill import HardDistillationLoss  # noqa: F401
