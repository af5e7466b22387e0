from .runner_utils import (add_common_args, apply_common_args, build_model,
                           build_runner,
                           export_local_rank,
                           cpu_model_wrapper_cfg,
                           check_checkpoint_file, check_checkpoint_fits,
                           check_data_roots, find_resumable_checkpoint,
                           get_task, init_cpu_distributed,
                           reroot_data, rescale_schedule, shutdown_distributed,
                           unscaled_schedule_warning)

__all__ = [
    'add_common_args', 'export_local_rank', 'apply_common_args',
    'build_model', 'build_runner', 'check_data_roots', 'get_task',
    'init_cpu_distributed', 'shutdown_distributed', 'check_checkpoint_file',
    'check_checkpoint_fits', 'rescale_schedule', 'unscaled_schedule_warning',
    'find_resumable_checkpoint', 'reroot_data', 'cpu_model_wrapper_cfg'
]
