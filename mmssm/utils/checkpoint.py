"""Checkpoint files of any origin: reading them with one clear error for an
unusable file (:func:`load_checkpoint_file`, :func:`read_state_dict`,
:func:`read_checkpoint_shapes`), comparing their keys with a model's, the
strict loader behind every mmssm backbone's ``init_cfg=dict(type='Pretrained',
...)`` (:func:`load_pretrained`) and the converter CLIs' shared load -> unwrap
-> convert -> save (:func:`convert_checkpoint_file`, with the classifier keys
placed by :func:`split_classifier_keys`)."""
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


def load_checkpoint_file(path: str, map_location: str = 'cpu',
                         mmap: bool = False):
    """Load a checkpoint file, with one clear error when it is unusable.

    Local files are checked first (missing, a directory, empty, a text file,
    a truncated archive or pickle stream, objects refused by
    ``weights_only=True``: a :class:`CheckpointError` naming the file and the
    problem) and loaded with ``torch.load(weights_only=True)`` as mmengine's
    ``load_from`` does (see :func:`mmssm.utils.register_torch_safe_globals`,
    which lets the ``argparse.Namespace`` of official Vim files through);
    ``.safetensors`` files are read with the ``safetensors`` package. Remote
    checkpoints (URLs, ``open-mmlab://`` ...) go through mmengine's
    ``CheckpointLoader``.

    Args:
        path (str): The checkpoint.
        map_location (str): Device of the tensors. Defaults to ``'cpu'``.
        mmap (bool): Memory-map torch's zip checkpoints (read only what is
            touched). Defaults to False.

    Returns:
        The loaded object (usually a dict).
    """
    import os
    import os.path as osp
    if '://' in path:
        from mmengine.runner.checkpoint import CheckpointLoader
        return CheckpointLoader.load_checkpoint(
            path, map_location=map_location)
    if not osp.exists(path):
        raise CheckpointError(f'checkpoint {path!r} not found')
    if osp.isdir(path):
        raise CheckpointError(
            f'checkpoint {path!r} is a directory, not a checkpoint file')
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(
            f'checkpoint {path!r} is an empty file (0 bytes), not a checkpoint')
    if path.endswith('.safetensors'):
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise CheckpointError(
                f'reading {path!r} needs the safetensors package: pip '
                'install safetensors') from None
        try:
            return load_file(path, device=str(map_location))
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(
                f'checkpoint {path!r} ({size} bytes) is not a readable '
                f'safetensors file ({type(e).__name__}: '
                f'{str(e).strip()[:160]})') from None
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
            return torch.load(
                path,
                map_location=map_location,
                weights_only=True,
                mmap=mmap and head.startswith(b'PK\x03\x04'))
        except RuntimeError as e:
            if not mmap or 'mmap' not in str(e):
                raise
            return torch.load(path, map_location=map_location,
                              weights_only=True)
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


def read_checkpoint_shapes(path: str,
                           keys: Sequence[str] = ('state_dict', )
                           ) -> Dict[str, torch.Size]:
    """Check that ``path`` is a readable checkpoint; return its weights' shapes.

    Meant to run before a model or dataset is built: the zip checkpoints of
    torch are memory-mapped, so only the header and the pickled structure are
    read. Loads with ``weights_only=True`` as mmengine's ``load_from`` does
    (see :func:`load_checkpoint_file`).

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
    state_dict = read_state_dict(path, keys, mmap=True)
    if not state_dict:
        raise CheckpointError(f'checkpoint {path!r} holds an empty state dict')
    return {k: v.shape for k, v in state_dict.items()}


def read_state_dict(path: str,
                    keys: Sequence[str] = DEFAULT_KEYS,
                    map_location: str = 'cpu',
                    mmap: bool = False,
                    use_ema: bool = False) -> Dict[str, torch.Tensor]:
    """:func:`load_checkpoint_file` then :func:`unwrap_state_dict`, with a
    :class:`CheckpointError` naming the file when it holds no state dict."""
    ckpt = load_checkpoint_file(path, map_location=map_location, mmap=mmap)
    try:
        return unwrap_state_dict(ckpt, keys, use_ema=use_ema)
    except (TypeError, KeyError) as e:
        msg = e.args[0] if e.args else str(e)
        raise CheckpointError(
            f'checkpoint {path!r} holds no state dict: {msg}') from None


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


# ---------------------------------------------------------------------------
# The one way weights reach an mmssm model: strict loading of a checkpoint
# whose official/timm layout the model converts in its load_state_dict
# pre-hook, and the converter CLIs' shared load -> unwrap -> convert -> save.
# ---------------------------------------------------------------------------
def apply_checkpoint_conversions(model: torch.nn.Module,
                                 state_dict: Dict[str, torch.Tensor]) -> list:
    """Run the layout conversions of ``model`` on ``state_dict`` in place.

    Every module of ``model`` with a ``convert_checkpoint(state_dict,
    prefix)`` method (every mmssm backbone, see
    :class:`mmssm.models.backbones.base.BaseBackbone`) converts the keys
    under its prefix, parents before children, as their
    ``load_state_dict`` pre-hooks do when the dict is loaded. The
    conversions are idempotent, so loading the result converts nothing
    more.

    Returns:
        list[str]: Keys of ``model`` that the detected source layout does not
        have by design (e.g. MambaOut's extra output norms, absent from the
        official classifier); they keep their initialisation and are not
        reported as missing.
    """
    absent = []
    for name, module in model.named_modules():
        convert = getattr(module, 'convert_checkpoint', None)
        if callable(convert):
            prefix = name + '.' if name else ''
            absent += [prefix + k for k in (convert(state_dict, prefix) or [])]
    return absent


def _guess_prefix(state_dict: Dict[str, torch.Tensor],
                  model_keys: Sequence[str]) -> str:
    """``'backbone.'`` when the checkpoint's ``backbone.`` part fits the
    model's names better than the names as they are, else ``''``."""
    own = set(model_keys)
    as_is = sum(k in own for k in state_dict)
    stripped = sum(
        k[len('backbone.'):] in own for k in state_dict
        if k.startswith('backbone.'))
    return 'backbone.' if stripped > as_is else ''


def load_pretrained(model: torch.nn.Module,
                    checkpoint: str,
                    prefix: str = None,
                    strict: bool = True,
                    map_location: str = 'cpu',
                    keys: Sequence[str] = DEFAULT_KEYS,
                    logger='current') -> Dict[str, list]:
    """Load a checkpoint into an mmssm backbone, strictly by default.

    What ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...,
    strict=...)`` of every mmssm backbone runs (mmengine's own
    ``PretrainedInit`` loads with ``strict=False`` and only logs a wrong
    checkpoint):

    1. the file is read by :func:`load_checkpoint_file` (one clear error for
       a missing, truncated or foreign file);
    2. the weights are taken from the first of ``keys`` present (official
       releases keep them under ``'model'``/``'model_ema'``);
    3. ``prefix`` keeps the keys under it (stripped); ``None`` takes the
       ``backbone.`` part of a detector/segmentor/classifier checkpoint when
       its names fit the model better than the names as they are;
    4. the model converts official/timm layouts
       (:func:`apply_checkpoint_conversions`, the code of its
       ``load_state_dict`` pre-hook);
    5. with ``strict=True`` any missing, unexpected or shape-mismatched key
       stops with one :class:`CheckpointError` naming them all; with
       ``strict=False`` the weights that fit are loaded and the others are
       logged as a warning.

    Args:
        model (nn.Module): The backbone.
        checkpoint (str): Path or URL.
        prefix (str, optional): See above. Defaults to None.
        strict (bool): Defaults to True.
        map_location (str): Defaults to ``'cpu'``.
        keys (Sequence[str]): Entries holding the weights, in order of
            preference. Defaults to ``('state_dict', 'model', 'model_ema')``.
        logger: mmengine logger (name). Defaults to ``'current'``.

    Returns:
        dict: ``missing``, ``unexpected``, ``mismatched`` (empty when strict)
        and ``absent_by_design`` key lists.
    """
    from mmengine.logging import print_log
    name = type(model).__name__
    state_dict = read_state_dict(checkpoint, keys, map_location)
    own = model.state_dict()
    if prefix is None:
        prefix = _guess_prefix(state_dict, list(own))
    if prefix:
        state_dict = OrderedDict((k[len(prefix):], v)
                                 for k, v in state_dict.items()
                                 if k.startswith(prefix))
    if not state_dict:
        raise CheckpointError(
            f'checkpoint {checkpoint!r} holds no weights for {name}'
            + (f' (no key starts with {prefix!r})' if prefix else ''))
    try:
        absent = apply_checkpoint_conversions(model, state_dict)
    except (KeyError, ValueError) as e:
        msg = e.args[0] if e.args else str(e)
        raise CheckpointError(
            f'checkpoint {checkpoint!r} cannot be loaded into {name}: '
            f'{msg}') from None
    diff = compare_state_dict_shapes(
        {k: v.shape for k, v in own.items() if k not in absent},
        {k: v.shape for k, v in state_dict.items()})
    if any(diff.values()):
        text = describe_mismatch(diff)
        if strict:
            raise CheckpointError(
                f'checkpoint {checkpoint!r} does not fit {name} (loaded '
                f'strictly; init_cfg strict=False loads the weights that '
                f'fit):\n{text}')
        print_log(
            f'{name}: strict=False: loading the weights of {checkpoint!r} '
            f'that fit; not loaded:\n{text}',
            logger=logger,
            level=30)
        for key, _, _ in diff['mismatched']:
            del state_dict[key]
        for key in diff['unexpected']:
            del state_dict[key]
    model.load_state_dict(state_dict, strict=False)
    if absent:
        print_log(
            f'{name}: {len(absent)} weights are not part of the checkpoint '
            f'layout and keep their initialisation: {sorted(absent)}',
            logger=logger,
            level=20)
    print_log(
        f'{name}: loaded {len(state_dict)} tensors from {checkpoint}'
        + (f' (keys under {prefix!r})' if prefix else ''),
        logger=logger,
        level=20)
    return dict(diff, absent_by_design=absent)


def converter_arg_parser(description: str, head_options: bool = False):
    """The argument parser of a converter CLI, with ``src`` and ``dst``.

    Args:
        description (str): The CLI's one-line description.
        head_options (bool): Add ``--mmpretrain`` and ``--no-head``, the
            options of :func:`split_classifier_keys` (``args.mmpretrain``,
            ``args.no_head``). Defaults to False.
    """
    import argparse
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('src', help='source checkpoint (path or URL)')
    parser.add_argument('dst', help='output checkpoint path')
    if head_options:
        parser.add_argument(
            '--mmpretrain',
            action='store_true',
            help='prefix backbone keys with "backbone." (mmpretrain '
            'classifier)')
        parser.add_argument(
            '--no-head', action='store_true', help='drop the classifier head')
    return parser


def split_classifier_keys(state_dict: Dict[str, torch.Tensor],
                          head_prefix: str = 'head.',
                          mmpretrain: bool = False,
                          no_head: bool = False) -> Dict[str, torch.Tensor]:
    """Place the keys of a converted classifier for the output file.

    The keys under ``head.`` (the classifier) are renamed to
    ``head_prefix`` + the rest of the key, or dropped with ``no_head``; every
    other key is a backbone key, prefixed with ``backbone.`` when
    ``mmpretrain`` is set (the layout of an mmpretrain ``ImageClassifier``).
    The order of the keys is kept.

    Args:
        state_dict (dict): Converted weights, backbone keys and ``head.*``.
        head_prefix (str): Prefix of the classifier keys in the output, e.g.
            ``'head.fc.'`` for mmpretrain's ``LinearClsHead``. Defaults to
            ``'head.'`` (kept as they are).
        mmpretrain (bool): Prefix the backbone keys with ``backbone.``.
            Defaults to False.
        no_head (bool): Drop the classifier keys. Defaults to False.

    Returns:
        OrderedDict: The renamed weights (the tensors are not copied).
    """
    out = OrderedDict()
    backbone = 'backbone.' if mmpretrain else ''
    for key, value in state_dict.items():
        if key.startswith('head.'):
            if not no_head:
                out[head_prefix + key[len('head.'):]] = value
        else:
            out[backbone + key] = value
    return out


def convert_checkpoint_file(src: str,
                            dst: str,
                            convert,
                            keys: Sequence[str] = DEFAULT_KEYS,
                            use_ema: bool = False,
                            meta: dict = None) -> Dict[str, torch.Tensor]:
    """What every ``tools/model_converters/*2mmssm.py`` does.

    Load ``src`` (:func:`load_checkpoint_file`), unwrap its weights
    (:func:`unwrap_state_dict` with ``keys`` / ``use_ema``), convert them with
    ``convert(state_dict) -> state_dict`` and save ``{'meta': ...,
    'state_dict': ...}`` to ``dst`` (its folder is created).

    Raises:
        SystemExit: With one line naming ``src`` and the problem (unusable
            file, no state dict, keys the conversion does not know).
    """
    import os
    import os.path as osp
    try:
        state_dict = read_state_dict(src, keys, use_ema=use_ema)
        converted = convert(state_dict)
    except CheckpointError as e:
        raise SystemExit(f'error: {e}') from None
    except (KeyError, ValueError, TypeError) as e:
        msg = e.args[0] if e.args else str(e)
        raise SystemExit(f'error: cannot convert {src!r}: {msg}') from None
    if osp.dirname(dst):
        os.makedirs(osp.dirname(dst), exist_ok=True)
    torch.save(
        dict(meta=dict(meta or {}, converted_from=src), state_dict=converted),
        dst)
    print(f'{len(state_dict)} tensors of {src} converted to '
          f'{len(converted)} tensors in {dst}')
    return converted
