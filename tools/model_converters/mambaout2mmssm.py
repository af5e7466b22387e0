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
:class:`mmssm.cls.mambaout_head.MambaOutHead`. ``--mmpretrain``
prefixes the backbone keys with ``backbone.`` so that the file loads into an
mmpretrain ``ImageClassifier`` (``load_from``); ``--no-head`` drops the head.
Note that MambaOut also loads the unconverted files directly through
``init_cfg=dict(type='Pretrained', checkpoint=...)``.
"""
from mmssm.models.backbones.mambaout import (convert_mambaout,
                                             mambaout_checkpoint_layout)
from mmssm.utils.checkpoint import (convert_checkpoint_file,
                                    converter_arg_parser,
                                    split_classifier_keys)


def main(argv=None):
    parser = converter_arg_parser(
        'Convert an official/timm MambaOut checkpoint to mmssm',
        head_options=True)
    parser.add_argument(
        '--ema', action='store_true', help="use the 'model_ema' weights")
    args = parser.parse_args(argv)
    meta = {}

    def convert(state_dict):
        meta['source_layout'] = mambaout_checkpoint_layout(state_dict)
        return split_classifier_keys(
            convert_mambaout(state_dict),
            mmpretrain=args.mmpretrain, no_head=args.no_head)

    convert_checkpoint_file(
        args.src, args.dst, convert, use_ema=args.ema, meta=meta)


if __name__ == '__main__':
    main()
