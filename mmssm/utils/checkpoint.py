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


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message is one line."""


def _kind_of_unreadable(path: str, head: bytes) -> str:
    if head.startswith(b'PK\x03\x04'):
        return 'a truncated or corrupt checkpoint (zip archive unreadable)'
    if head[:1] == b'\x80':
        return 'a truncated or corrupt checkpoint (pickle stream unreadable)'
    try:
        head.decode('utf-8')
        return ('not a PyTorch checkpoint (a text file, starting with '
                f'{head[:24]!r})')
    except UnicodeDecodeError:
        return ('not a PyTorch checkpoint (unknown binary format, starting '
                f'with {head[:8]!r})')


def read_checkpoint_shapes(path: str,
                           keys: Sequence[str] = ('state_dict', )
                           ) -> Dict[str, torch.Size]:
    """Check that ``path`` is a readable checkpoint; return its weights' shapes.

    Meant to run before a model or dataset is built: the zip checkpoints of
    torch are memory-mapped, so only the header and the pickled structure are
    read. Loads with ``weights_only=True`` as mmengine's ``load_from`` does
    (see :func:`mmssm.utils.register_torch_safe_globals`).

    Args:
        path (str): A local checkpoint file.
        keys (Sequence[str]): Where the weights are, as for
            :func:`unwrap_state_dict`. Defaults to ``('state_dict', )``, what
            mmengine's ``load_from`` reads (a checkpoint without it is taken
            to be a flat state dict).

    Returns:
        dict[str, torch.Size]: Shape of each weight, keyed without a
        ``module.`` prefix.

    Raises:
        CheckpointError: With a one-line message naming the file and what is
            wrong with it (missing, a directory, empty, a text file, a
            truncated archive, no state dict inside).
    """
    import os
    import os.path as osp
    if not osp.exists(path):
        raise CheckpointError(f'checkpoint {path!r} not found')
    if osp.isdir(path):
        raise CheckpointError(
            f'checkpoint {path!r} is a directory, not a checkpoint file')
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(
            f'checkpoint {path!r} is an empty file (0 bytes), not a checkpoint')
    try:
        with open(path, 'rb') as f:
            head = f.read(64)
    except OSError as e:
        raise CheckpointError(f'checkpoint {path!r} cannot be read: '
                              f'{e.strerror or e}') from None
    if not (head.startswith(b'PK\x03\x04') or head[:1] == b'\x80'):
        # neither torch's zip format nor a (legacy) pickle stream
        raise CheckpointError(f'checkpoint {path!r} ({size} bytes) is '
                              f'{_kind_of_unreadable(path, head)}')
    from mmssm.utils.setup_env import register_torch_safe_globals
    register_torch_safe_globals()
    try:
        try:
            ckpt = torch.load(path, map_location='cpu', weights_only=True,
                              mmap=head.startswith(b'PK\x03\x04'))
        except RuntimeError as e:
            if 'mmap' not in str(e):
                raise
            ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # noqa: BLE001 (torch raises many kinds)
        if isinstance(e, __import__('pickle').UnpicklingError) and \
                'Weights only load failed' in str(e):
            first = str(e).strip().splitlines()
            reason = next((ln for ln in first if 'Unsupported' in ln),
                          first[0] if first else '')
            raise CheckpointError(
                f'checkpoint {path!r} holds objects torch refuses to load '
                f'with weights_only=True ({reason.strip()[:200]})') from None
        detail = (str(e).strip().splitlines() or [''])[0].split('. ')[0]
        raise CheckpointError(
            f'checkpoint {path!r} ({size} bytes) is '
            f'{_kind_of_unreadable(path, head)} ({type(e).__name__}: '
            f'{detail[:160]})') from None
    try:
        state_dict = unwrap_state_dict(ckpt, keys)
    except (TypeError, KeyError) as e:
        raise CheckpointError(
            f'checkpoint {path!r} holds no state dict: {e}') from None
    if not state_dict:
        raise CheckpointError(f'checkpoint {path!r} holds an empty state dict')
    return {k: v.shape for k, v in state_dict.items()}


def compare_state_dict_shapes(expected: Dict[str, torch.Size],
                              found: Dict[str, torch.Size]) -> Dict[str, list]:
    """Keys of a model (``expected``) against those of a checkpoint.

    Returns:
        dict: ``missing`` (in the model, not in the checkpoint),
        ``unexpected`` (in the checkpoint only) and ``mismatched``
        (``(name, checkpoint shape, model shape)``); all empty when the
        checkpoint fits.
    """
    return dict(
        missing=[k for k in expected if k not in found],
        unexpected=[k for k in found if k not in expected],
        mismatched=[(k, tuple(found[k]), tuple(v))
                    for k, v in expected.items()
                    if k in found and tuple(found[k]) != tuple(v)])


def describe_mismatch(diff: Dict[str, list], limit: int = 8) -> str:
    """One line per kind of mismatch, at most ``limit`` names each."""

    def names(items):
        shown = ', '.join(items[:limit])
        more = f', ... ({len(items) - limit} more)' if len(items) > limit \
            else ''
        return shown + more

    lines = []
    if diff['missing']:
        lines.append(f'missing in the checkpoint ({len(diff["missing"])}): '
                     + names(diff['missing']))
    if diff['unexpected']:
        lines.append(
            f'unexpected (not in the model) ({len(diff["unexpected"])}): ' +
            names(diff['unexpected']))
    if diff['mismatched']:
        lines.append(
            f'shape mismatch ({len(diff["mismatched"])}): ' + names([
                f'{k} {list(c)} in checkpoint vs {list(m)} in model'
                for k, c, m in diff['mismatched']
            ]))
    return '\n'.join(lines)
