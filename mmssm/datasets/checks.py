"""Cheap checks that a dataset root holds the expected layout.

Training and testing tools call :func:`check_data_root` before building a
runner, so that a missing dataset fails in a second with a message naming the
missing path and saying how to get the data, instead of deep inside a dataset
class.
Only the existence of the key files and folders is checked.
"""
import os
import os.path as osp
from typing import List, Optional, Sequence

__all__ = [
    'DATA_KINDS', 'check_data_root', 'guess_data_kind', 'data_hint',
    'check_dataset_paths'
]

_GENERATE = ('python tools/misc/generate_synthetic_data.py '
             '[--root data/synthetic]')

# Per kind: split -> key paths relative to the data root.
_LAYOUTS = {
    'coco': {
        'train': ('annotations/instances_train2017.json', 'train2017/'),
        'val': ('annotations/instances_val2017.json', 'val2017/'),
    },
    'ade20k': {
        'train': ('images/training/', 'annotations/training/'),
        'val': ('images/validation/', 'annotations/validation/'),
    },
    'coco_shapes': {
        'train': ('annotations/instances_train.json', 'train/'),
        'val': ('annotations/instances_val.json', 'val/'),
    },
    'ade_shapes': {
        'train': ('images/training/', 'annotations/training/'),
        'val': ('images/validation/', 'annotations/validation/'),
    },
}
# Test splits of these configs read the validation data.
_SPLIT_ALIASES = {'train': 'train', 'val': 'val', 'test': 'val'}

#: Dataset layouts :func:`check_data_root` knows.
DATA_KINDS = tuple(_LAYOUTS)

_HINTS = {
    'coco':
    ('To get COCO 2017: download train2017.zip, val2017.zip and '
     'annotations_trainval2017.zip from https://cocodataset.org/#download '
     'and unzip them into data/coco/, so that it holds '
     'annotations/instances_train2017.json, '
     'annotations/instances_val2017.json, train2017/ and val2017/ (or '
     'pass --data-root DIR to tools/train.py and tools/test.py). To try mmssm '
     'without COCO, generate the synthetic shapes with `' + _GENERATE +
     '` and use a *_coco-shapes demo config.'),
    'ade20k':
    ('To get ADE20K: download ADEChallengeData2016.zip from '
     'http://data.csail.mit.edu/places/ADEchallenge/'
     'ADEChallengeData2016.zip (see http://sceneparsing.csail.mit.edu/) '
     'and unzip it into data/ade/, so that '
     'data/ade/ADEChallengeData2016/{images,annotations}/'
     '{training,validation}/ exist (or pass --data-root DIR to '
     'tools/train.py and tools/test.py). To try mmssm without ADE20K, generate the '
     'synthetic data with `' + _GENERATE + '` and use an '
     '*_ade-shapes demo config.'),
    'coco_shapes': ('Generate the synthetic COCO-format shapes with `' +
                    _GENERATE + '`; it writes <root>/coco_shapes (and '
                    '<root>/ade_shapes) in a few seconds.'),
    'ade_shapes': ('Generate the synthetic ADE20K-layout data with `' +
                   _GENERATE + '`; it writes <root>/ade_shapes (and '
                   '<root>/coco_shapes) in a few seconds.'),
}
_TITLES = {
    'coco': 'COCO',
    'ade20k': 'ADE20K',
    'coco_shapes': 'synthetic coco_shapes',
    'ade_shapes': 'synthetic ade_shapes'
}


def data_hint(kind: str) -> str:
    """How to get the data of one of :data:`DATA_KINDS`."""
    _check_kind(kind)
    return _HINTS[kind]


def _check_kind(kind: str) -> None:
    if kind not in _LAYOUTS:
        raise ValueError(
            f'unknown data kind {kind!r}; choose from {list(DATA_KINDS)}')


def guess_data_kind(data_root: str,
                    dataset_type: Optional[str] = None) -> Optional[str]:
    """Guess which layout a dataset config points at.

    Args:
        data_root (str): The config's ``data_root``.
        dataset_type (str, optional): The config's dataset ``type`` (e.g.
            ``'CocoDataset'``, ``'ADE20KDataset'``, ``'BaseSegDataset'``).

    Returns:
        str | None: One of :data:`DATA_KINDS`, or None when neither the root
        nor the type says.
    """
    root = (data_root or '').replace('\\', '/').lower()
    dtype = (dataset_type or '').split('.')[-1].lower()
    if 'coco_shapes' in root or 'coco-shapes' in root:
        return 'coco_shapes'
    if 'ade_shapes' in root or 'ade-shapes' in root:
        return 'ade_shapes'
    if 'coco' in dtype or 'coco' in root:
        return 'coco'
    if 'ade' in dtype or 'ade' in root:
        return 'ade20k'
    return None


def check_data_root(
    data_root: str,
    kind: str = 'coco',
    splits: Sequence[str] = ('train', 'val')) -> List[str]:
    """Raise a helpful error when a dataset root lacks its key files.

    Layouts (``<split>`` in ``train``/``val``; ``test`` reads ``val``):

    * ``coco``: ``annotations/instances_<split>2017.json`` and ``<split>2017/``
      (``data/coco``);
    * ``ade20k``: ``images/{training,validation}/`` and
      ``annotations/{training,validation}/``
      (``data/ade/ADEChallengeData2016``);
    * ``coco_shapes``: ``annotations/instances_<split>.json`` and ``<split>/``
      (``data/synthetic/coco_shapes``);
    * ``ade_shapes``: as ``ade20k`` (``data/synthetic/ade_shapes``).

    Args:
        data_root (str): The dataset root.
        kind (str): One of :data:`DATA_KINDS`. Defaults to ``'coco'``.
        splits (Sequence[str]): Splits to check, among ``'train'``, ``'val'``
            and ``'test'``. Defaults to ``('train', 'val')``.

    Returns:
        list[str]: The paths that were checked.

    Raises:
        ValueError: For an unknown ``kind`` or split.
        FileNotFoundError: Naming the first missing path and how to get the
            data.
    """
    _check_kind(kind)
    unknown = [s for s in splits if s not in _SPLIT_ALIASES]
    if unknown:
        raise ValueError(f'unknown splits {unknown}; choose from '
                         f'{list(_SPLIT_ALIASES)}')
    paths = [data_root]
    for split in dict.fromkeys(_SPLIT_ALIASES[s] for s in splits):
        paths += [osp.join(data_root, p) for p in _LAYOUTS[kind][split]]
    for path in paths:
        is_dir = path == data_root or path.endswith('/')
        found = osp.isdir(path) if is_dir else osp.isfile(path)
        if not found:
            what = 'folder' if is_dir else 'file'
            raise FileNotFoundError(
                f'{_TITLES[kind]} data not found: the {what} '
                f'{path.rstrip("/")!r} does not exist '
                f'(data_root={data_root!r}, '
                f'kind={kind!r}).\n{_HINTS[kind]}')
    return [p.rstrip('/') for p in paths]


def _listing(folder: str, limit: int = 8) -> str:
    """`` ('folder' holds: a, b, ...)`` or ``''``."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return ''
    if not names:
        return f' ({folder!r} is empty)'
    more = f', ... ({len(names) - limit} more)' if len(names) > limit else ''
    return f' ({folder!r} holds: {", ".join(names[:limit])}{more})'


def check_dataset_paths(ds: dict, split: str = 'train',
                        root_flag: Optional[str] = None) -> List[str]:
    """Check the paths one dataset config reads, before it is built.

    In order: ``data_root`` (a folder), ``ann_file`` (relative to the root
    unless absolute) and the image/label folders of ``data_prefix``. Each
    failure gets its own message: a missing root says how to get the data
    (:func:`data_hint`) and how to point the config at it (``--data-root``);
    a missing annotation file or folder under an existing root names the
    config field and lists what the root holds instead (the data is there,
    the config does not fit it).

    Args:
        ds (dict): A leaf dataset config (``type``, ``data_root``,
            ``ann_file``, ``data_prefix``).
        split (str): ``train``/``val``/``test``, for the messages.
        root_flag (str, optional): How the root was given (``'--data-root'``),
            for the messages.

    Returns:
        list[str]: The paths checked.

    Raises:
        FileNotFoundError: Naming the missing path, the config field it
            comes from and what to do.
    """
    dtype = ds.get('type', None)
    root = ds.get('data_root', '') or ''
    where = f'(dataset {dtype}, data_root={root!r})'
    checked = []
    if root:
        checked.append(root)
        if not osp.isdir(root):
            kind = guess_data_kind(root, dtype)
            given = f'{root_flag} ' if root_flag else 'data_root '
            how = ('\n' + data_hint(kind)) if kind is not None else ''
            raise FileNotFoundError(
                f'{split} data not found: {given}{root.rstrip("/") or root!r} '
                'does not exist '
                f'{where}. Pass --data-root DIR with the folder that holds '
                f'the dataset.{how}')
    ann = ds.get('ann_file', '') or ''
    if ann:
        path = ann if osp.isabs(ann) or not root else osp.join(root, ann)
        checked.append(path)
        if not osp.isfile(path):
            parent = osp.dirname(path)
            while parent and not osp.isdir(parent) and parent != root:
                parent = osp.dirname(parent)
            raise FileNotFoundError(
                f'{split} annotation file {path!r} does not exist {where}; '
                f'the data root exists, so the config\'s '
                f'{split}_dataloader ann_file={ann!r} does not fit it'
                f'{_listing(parent or root or ".")}. Fix ann_file (e.g. '
                f'--cfg-options {split}_dataloader.dataset.ann_file=...) or '
                'point --data-root at the right folder.')
    prefix = ds.get('data_prefix', None) or {}
    if isinstance(prefix, str):  # mmpretrain
        prefix = {'img_path': prefix}
    for key, sub in prefix.items():
        if not isinstance(sub, str) or not sub or '://' in sub:
            continue
        path = sub if osp.isabs(sub) or not root else osp.join(root, sub)
        checked.append(path.rstrip('/'))
        if not osp.isdir(path):
            raise FileNotFoundError(
                f'{split} image/label folder {path.rstrip("/")!r} does not '
                f'exist {where}; the config\'s data_prefix.{key}={sub!r} '
                f'does not fit the data root{_listing(root or ".")}. Fix '
                f'data_prefix (--cfg-options {split}_dataloader.dataset.'
                f'data_prefix.{key}=...) or point --data-root at the right '
                'folder.')
    return checked
