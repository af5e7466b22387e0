"""Convert an official or timm MambaOut checkpoint to mmssm keys.

Usage::

    python tools/model_converters/mambaout2mmssm.py mambaout_tiny.pth \
        mambaout-tiny_mmssm.pth [--mmpretrain] [--no-head] [--ema]

The source may be the official release (``yuweihao/MambaOut``), a timm
``mambaout_*`` file (``.pth``/``.bin``, or ``.safetensors`` when the
``safetensors`` package is installed), or a training checkpoint wrapping one
of them in ``'state_dict'``, ``'model'`` or ``'model_ema'``. The output holds
``{'meta': ..., 'state_dict': ...}``: backbone keys as in
:class:`mmssm.models.backbones.MambaOut` plus ``head.*`` for
:class:`mmssm.models.heads.mambaout_head.MambaOutHead`. ``--mmpretrain``
prefixes the backbone keys with ``backbone.`` so that the file loads into an
mmpretrain ``ImageClassifier`` (``load_from``); ``--no-head`` drops the head.
Note that MambaOut also loads the unconverted files directly through
``init_cfg=dict(type='Pretrained', checkpoint=...)``.
"""
import argparse
import os.path as osp
from collections import OrderedDict

import torch
from mmengine.runner import CheckpointLoader

from mmssm.models.backbones.mambaout import (convert_mambaout,
                                             mambaout_checkpoint_layout)
from mmssm.utils.checkpoint import unwrap_state_dict


def load_source(path):
    """Load a ``.pth``/``.bin`` file with mmengine, ``.safetensors`` too."""
    if path.endswith('.safetensors'):
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise ImportError('Reading .safetensors needs the safetensors '
                              'package: pip install safetensors') from exc
        return load_file(path, device='cpu')
    return CheckpointLoader.load_checkpoint(path, map_location='cpu')


def parse_args():
    parser = argparse.ArgumentParser(
        description='Convert an official/timm MambaOut checkpoint to mmssm')
    parser.add_argument('src', help='source checkpoint (path or URL)')
    parser.add_argument('dst', help='output checkpoint path')
    parser.add_argument(
        '--mmpretrain',
        action='store_true',
        help='prefix backbone keys with "backbone." (mmpretrain classifier)')
    parser.add_argument(
        '--no-head', action='store_true', help='drop the classifier head')
    parser.add_argument(
        '--ema', action='store_true', help="use the 'model_ema' weights")
    return parser.parse_args()


def main():
    args = parse_args()
    state_dict = unwrap_state_dict(load_source(args.src), use_ema=args.ema)
    layout = mambaout_checkpoint_layout(state_dict)
    converted = convert_mambaout(state_dict)
    out = OrderedDict()
    for key, value in converted.items():
        if key.startswith('head.'):
            if not args.no_head:
                out[key] = value
        else:
            out[('backbone.' if args.mmpretrain else '') + key] = value
    dst_dir = osp.dirname(osp.abspath(args.dst))
    if not osp.isdir(dst_dir):
        raise FileNotFoundError(f'Output directory {dst_dir} does not exist')
    meta = dict(source=args.src, source_layout=layout, converter=__file__)
    torch.save(dict(meta=meta, state_dict=out), args.dst)
    print(f'Converted {len(state_dict)} {layout}-layout keys from {args.src} '
          f'to {len(out)} mmssm keys in {args.dst}')


if __name__ == '__main__':
    main()
