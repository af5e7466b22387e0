"""Reading the state dict out of checkpoint files of any origin."""
from collections import OrderedDict
from typing import Dict, Sequence

import torch

#: Where OpenMMLab, DeiT-style official releases and EMA copies keep weights.
DEFAULT_KEYS = ('state_dict', 'model', 'model_ema')


def unwrap_state_dict(checkpoint: dict,
                      keys: Sequence[str] = DEFAULT_KEYS,
                      use_ema: bool = False) -> Dict[str, torch.Tensor]:
    """Return the flat state dict held by a loaded checkpoint.

    The first of ``keys`` whose entry is a dict is taken (a checkpoint without
    any of them is taken to be flat already); a ``module.`` prefix (DDP) is
    stripped.

    Args:
        checkpoint (dict): What ``torch.load`` returned.
        keys (Sequence[str]): Entries to look for, in order of preference.
            Defaults to ``('state_dict', 'model', 'model_ema')``; put
            ``'model_ema'`` first to prefer EMA weights when present.
        use_ema (bool): Take ``'model_ema'``, which must exist.
            Defaults to False.

    Returns:
        OrderedDict: Tensors keyed without a ``module.`` prefix.

    Raises:
        KeyError: When ``use_ema`` is set and there is no ``'model_ema'``.
        TypeError: When the checkpoint is not a dict or the selected entry
            holds something other than tensors.
    """
    if not isinstance(checkpoint, dict):
        raise TypeError('expected the checkpoint to hold a dict, got '
                        f'{type(checkpoint).__name__}')
    if use_ema:
        if not isinstance(checkpoint.get('model_ema'), dict):
            raise KeyError('EMA weights were asked for but the checkpoint has '
                           "no 'model_ema' entry (entries: "
                           f'{sorted(checkpoint)[:10]})')
        keys = ('model_ema', )
    state_dict = checkpoint
    for key in keys:
        if isinstance(checkpoint.get(key), dict):
            state_dict = checkpoint[key]
            break
    out = OrderedDict()
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f'entry {key!r} of the checkpoint is a '
                f'{type(value).__name__}, not a tensor: not a state dict '
                f'(looked for the entries {tuple(keys)})')
        out[key[len('module.'):] if key.startswith('module.') else key] = value
    return out
