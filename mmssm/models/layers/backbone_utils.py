"""Small helpers every mmssm backbone shares.

They implement the OpenMMLab backbone conventions once: the mmpretrain
"arch zoo" (``arch`` given as a preset name or as a dict), ``out_indices``
normalisation, the stochastic-depth schedule, the gradient-checkpointing rule
(:func:`maybe_checkpoint`), the official random init of convolutions and
linear layers (:func:`trunc_normal_fan_out_init`), layout permutes and the
check of the input images, which must fail loudly on a wrong shape instead of
giving a silently wrong result. The backbone base class that uses them is
:class:`mmssm.models.backbones.base.BaseBackbone`.
"""
import math
from typing import Callable, Dict, List, Sequence, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.model.weight_init import trunc_normal_

__all__ = [
    'parse_arch', 'parse_out_indices', 'stage_drop_path_rates',
    'check_image_input', 'to_channels_first', 'to_channels_last',
    'maybe_checkpoint', 'trunc_normal_fan_out_init'
]


def parse_arch(arch: Union[str, Dict],
               arch_zoo: Dict[str, Dict],
               required_keys: Sequence[str],
               name: str = 'backbone') -> Dict:
    """Resolve an ``arch`` argument following mmpretrain's arch-zoo convention.

    Args:
        arch (str | dict): The name of a preset in ``arch_zoo`` (case
            insensitive) or a dict holding at least ``required_keys``.
        arch_zoo (dict): The presets, ``{name: settings}``.
        required_keys (Sequence[str]): Keys a custom dict must provide.
        name (str): Name of the backbone, used in error messages.

    Returns:
        dict: A copy of the settings.
    """
    if isinstance(arch, str):
        key = arch.lower()
        if key not in arch_zoo:
            raise ValueError(f'Unknown {name} arch {arch!r}; choose one of '
                             f'{sorted(arch_zoo)} or pass a dict with keys '
                             f'{list(required_keys)}')
        return dict(arch_zoo[key])
    if isinstance(arch, dict):
        missing = [k for k in required_keys if k not in arch]
        if missing:
            raise ValueError(f'A custom {name} arch must define '
                             f'{list(required_keys)}; missing {missing}')
        return dict(arch)
    raise TypeError(f'{name} arch must be a str or a dict, got '
                    f'{type(arch).__name__}')


def parse_out_indices(out_indices: Union[int, Sequence[int]],
                      num_stages: int) -> tuple:
    """Normalise ``out_indices`` to a sorted tuple of non-negative indices.

    Negative indices count from the last stage (``-1`` is the last one).

    Args:
        out_indices (int | Sequence[int]): Stages whose outputs are returned.
        num_stages (int): Number of stages of the backbone.

    Returns:
        tuple[int]: Sorted, unique, non-negative stage indices.
    """
    if isinstance(out_indices, int):
        out_indices = [out_indices]
    if not isinstance(out_indices, Sequence) or len(out_indices) == 0:
        raise TypeError('out_indices must be an int or a non-empty sequence '
                        f'of ints, got {out_indices!r}')
    result = []
    for index in out_indices:
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError(f'out_indices must hold ints, got {index!r}')
        if not -num_stages <= index < num_stages:
            raise ValueError(f'out_indices {tuple(out_indices)} out of range '
                             f'for {num_stages} stages')
        result.append(index % num_stages)
    if len(set(result)) != len(result):
        raise ValueError(f'out_indices {tuple(out_indices)} name a stage '
                         'twice')
    return tuple(sorted(result))


def stage_drop_path_rates(drop_path_rate: float,
                          depths: Sequence[int]) -> List[List[float]]:
    """Stochastic-depth rates growing linearly over all blocks.

    The ``sum(depths)`` rates are ``linspace(0, drop_path_rate)`` (Huang et
    al., 2016; the schedule of Swin, ConvNeXt and MambaOut), split per stage.

    Args:
        drop_path_rate (float): Rate of the last block, in ``[0, 1)``.
        depths (Sequence[int]): Number of blocks of each stage.

    Returns:
        list[list[float]]: One list of rates per stage.
    """
    if not 0.0 <= drop_path_rate < 1.0:
        raise ValueError(
            f'drop_path_rate must be in [0, 1), got {drop_path_rate}')
    rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
    out, start = [], 0
    for depth in depths:
        out.append(rates[start:start + depth])
        start += depth
    return out


def maybe_checkpoint(with_cp: bool, training: bool, fn: Callable, *args):
    """Call ``fn(*args)``, through gradient checkpointing when it pays.

    The one ``with_cp`` rule of mmssm: a block is checkpointed (non-reentrant
    :func:`torch.utils.checkpoint.checkpoint`, which recomputes its forward
    in the backward pass instead of storing its activations) when ``with_cp``
    is set, the calling module is in training mode and autograd is recording.
    Evaluation, ``torch.no_grad()`` and frozen (eval-mode) stages run plainly.
    Whether the input itself requires a gradient does not matter (the first
    block after a frozen stem still saves memory).

    Args:
        with_cp (bool): The backbone's ``with_cp`` option.
        training (bool): ``module.training`` of the caller.
        fn (Callable): The block to run.
        *args: Its inputs.
    """
    if with_cp and training and torch.is_grad_enabled():
        return cp.checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


@torch.no_grad()
def trunc_normal_fan_out_init(module: nn.Module) -> None:
    """The random init of the official GroupMamba and ViT-Adapter code.

    Meant for ``model.apply``: linear layers get a truncated normal weight
    (std 0.02) and zero bias; LayerNorm, GroupNorm and BatchNorm weight 1 and
    bias 0 (when affine); 2D (transposed) convolutions a normal weight of std
    ``sqrt(2 / fan_out)`` with ``fan_out = k_h * k_w * out_channels /
    groups`` and zero bias. Other modules are left alone.
    """
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.LayerNorm, nn.GroupNorm,
                             nn.modules.batchnorm._NormBase)):
        if module.weight is not None:
            nn.init.ones_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        fan_out = (module.kernel_size[0] * module.kernel_size[1] *
                   module.out_channels) // module.groups
        module.weight.normal_(0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def check_image_input(x: torch.Tensor, in_channels: int,
                      name: str = 'backbone') -> None:
    """Raise a clear error unless ``x`` is a float ``(B, in_channels, H, W)``.

    Args:
        x (torch.Tensor): The input of a backbone.
        in_channels (int): The expected number of channels.
        name (str): Name of the backbone, used in error messages.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f'{name} expects a torch.Tensor, got '
                        f'{type(x).__name__}')
    if x.dim() != 4:
        raise ValueError(f'{name} expects a 4D (B, C, H, W) image tensor, got '
                         f'shape {tuple(x.shape)}')
    if x.shape[1] != in_channels:
        raise ValueError(f'{name} was built for {in_channels} input channels,'
                         f' got {x.shape[1]} (input shape {tuple(x.shape)})')
    if not x.is_floating_point():
        raise TypeError(f'{name} expects a floating point image tensor, got '
                        f'{x.dtype}; convert it (e.g. with .float()) and '
                        'normalise it first')
    if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f'{name} got an empty input of shape '
                         f'{tuple(x.shape)}')


def to_channels_first(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, W, C)`` -> contiguous ``(B, C, H, W)``."""
    return x.permute(0, 3, 1, 2).contiguous()


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, H, W, C)`` (a view, not a copy)."""
    return x.permute(0, 2, 3, 1)
