from .ssm_init import a_log_init, dt_proj_init_  # noqa: F401
from .backbone_utils import (check_image_input, parse_arch,  # noqa: F401
                             parse_out_indices, stage_drop_path_rates,
                             to_channels_first, to_channels_last)
from .norm import LayerNorm2d, RMSNorm, build_layer_norm  # noqa: F401
from .ss2d import SCAN_DIRECTIONS, SS2D, GroupedSS2D  # noqa: F401
from .mamba import BiMambaMixer, MambaMixer, causal_conv1d  # noqa: F401
from .vit_adapter import AdapterDeformAttention  # noqa: F401
