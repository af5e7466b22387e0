from .runner_utils import (apply_common_args, build_runner, check_data_roots,
                           get_task, init_cpu_distributed,
                           shutdown_distributed)

__all__ = [
    'apply_common_args', 'build_runner', 'check_data_roots', 'get_task',
    'init_cpu_distributed', 'shutdown_distributed'
]
