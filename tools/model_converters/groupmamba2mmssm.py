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

from mmssm.models.backbones.groupmamba import EMA_FIRST, convert_groupmamba
from mmssm.utils.checkpoint import (convert_checkpoint_file,
                                    converter_arg_parser)

__all__ = ['convert_groupmamba', 'main']


def main(argv=None):
    parser = converter_arg_parser(
        'Convert an official GroupMamba checkpoint to mmssm.')
    parser.add_argument(
        '--keep',
        choices=['none', 'cls', 'heads'],
        default='none',
        help='keep the class block (cls) or the class block and both heads '
        '(heads); dense prediction needs neither')
    args = parser.parse_args(argv)
    convert_checkpoint_file(
        args.src,
        args.dst,
        lambda state_dict: convert_groupmamba(
            state_dict,
            with_cls_block=args.keep in ('cls', 'heads'),
            with_heads=args.keep == 'heads'),
        keys=EMA_FIRST)


if __name__ == '__main__':
    main()
