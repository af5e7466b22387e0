"""Convert an official GroupMamba checkpoint to the mmssm layout.

Usage::

    python tools/model_converters/groupmamba2mmssm.py \
        groupmamba_tiny_ema.pth groupmamba-t_mmssm.pth [--keep cls|heads]

The official release (Amshaker/GroupMamba) is a flat EMA state dict; training
checkpoints with ``model`` / ``model_ema`` entries are unwrapped too (EMA
first). By default the classifier's class block and both heads are dropped
(dense prediction: load the output with ``init_cfg=dict(type='Pretrained',
checkpoint=...)`` of ``GroupMamba``). ``--keep cls`` keeps the class block
(``GroupMamba(out_type='cls_token')``); ``--keep heads`` writes a full
``DistillImageClassifier`` state dict (``backbone.*`` and ``head.{fc,
dist_fc}.*`` of ``GroupMambaDistHead``).
"""
import argparse
import os
import os.path as osp

import torch
from mmengine.runner.checkpoint import CheckpointLoader

from mmssm.models.backbones.groupmamba import EMA_FIRST, convert_groupmamba
from mmssm.utils.checkpoint import unwrap_state_dict

__all__ = ['convert_groupmamba', 'main']


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert an official GroupMamba checkpoint to mmssm.')
    parser.add_argument('src', help='official checkpoint (path or URL)')
    parser.add_argument('dst', help='output path')
    parser.add_argument(
        '--keep',
        choices=['none', 'cls', 'heads'],
        default='none',
        help='keep the class block (cls) or the class block and both heads '
        '(heads); dense prediction needs neither')
    args = parser.parse_args(argv)

    checkpoint = CheckpointLoader.load_checkpoint(args.src, map_location='cpu')
    state_dict = convert_groupmamba(
        unwrap_state_dict(checkpoint, EMA_FIRST),
        with_cls_block=args.keep in ('cls', 'heads'),
        with_heads=args.keep == 'heads')
    if osp.dirname(args.dst):
        os.makedirs(osp.dirname(args.dst), exist_ok=True)
    torch.save(
        dict(state_dict=state_dict, meta=dict(converted_from=args.src)),
        args.dst)
    print(f'{len(state_dict)} tensors written to {args.dst}')


if __name__ == '__main__':
    main()
