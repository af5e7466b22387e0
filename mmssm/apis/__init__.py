from .runner_utils import (apply_common_args, build_runner,
                           cpu_model_wrapper_cfg,
                           check_checkpoint_file, check_checkpoint_fits,
                           check_data_roots, find_resumable_checkpoint,
                           get_task, init_cpu_distributed,
                           reroot_data, rescale_schedule, shutdown_distributed,
                           unscaled_schedule_warning)

__all__ = [
    'apply_common_args', 'build_runner', 'check_data_roots', 'get_task',
    'init_cpu_distributed', 'shutdown_distributed', 'check_checkpoint_file',
    'check_checkpoint_fits', 'rescale_schedule', 'unscaled_schedule_warning',
    'find_resumable_checkpoint', 'reroot_data', 'cpu_model_wrapper_cfg'
]
