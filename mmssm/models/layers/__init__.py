from .ssm_init import a_log_init, dt_proj_init_  # noqa: F401
