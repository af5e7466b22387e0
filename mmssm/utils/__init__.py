from .setup_env import (CPUDistributedDataParallel,
                        patch_mmengine_package_lookup,
                        register_torch_safe_globals, setup_env)

__all__ = [
    'setup_env', 'patch_mmengine_package_lookup', 'register_torch_safe_globals',
    'CPUDistributedDataParallel'
]
from .checkpoint import unwrap_state_dict  # noqa: E402

__all__ += ['unwrap_state_dict']
