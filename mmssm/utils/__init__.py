from .setup_env import (CPUDistributedDataParallel, atomic_write,
                        patch_atomic_checkpoint_writes,
                        patch_mmengine_package_lookup,
                        register_torch_safe_globals, setup_env)

__all__ = [
    'setup_env', 'patch_mmengine_package_lookup', 'register_torch_safe_globals',
    'CPUDistributedDataParallel', 'atomic_write',
    'patch_atomic_checkpoint_writes'
]
from .checkpoint import (CheckpointError, compare_state_dict_shapes,  # noqa
                         describe_mismatch, read_checkpoint_shapes,
                         unwrap_state_dict)

__all__ += [
    'unwrap_state_dict', 'CheckpointError', 'read_checkpoint_shapes',
    'compare_state_dict_shapes', 'describe_mismatch'
]
