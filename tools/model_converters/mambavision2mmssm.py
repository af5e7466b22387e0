"""Convert an official MambaVision checkpoint to mmssm keys.

Usage::

    python tools/model_converters/mambavision2mmssm.py \
        mambavision_tiny_1k.pth.tar mambavision-tiny_mmssm.pth \
        [--mmpretrain] [--no-head]

The source may be a release ``.pth.tar`` (weights under ``state_dict``), the
Hugging Face ``model.safetensors`` (keys under ``model.``; needs the
``safetensors`` package) or a flat state dict. The conversion is the one the
backbone runs on load (:func:`mmssm.models.backbones.mambavision.
convert_mambavision`, strict: a key no MambaVision has stops it, named). The
output holds ``{'meta': ..., 'state_dict': ...}``: the backbone keys of
:class:`mmssm.models.backbones.MambaVision` (with the classifier's final
BatchNorm ``norm.*``, used by ``out_type='avgpool'`` and ignored by dense
backbones) and the classifier as ``head.fc.*`` (mmpretrain's
``LinearClsHead``). ``--mmpretrain`` prefixes the backbone keys with
``backbone.`` so that the file loads into an mmpretrain ``ImageClassifier``;
``--no-head`` drops the classifier. MambaVision also loads the unconverted
files directly through ``init_cfg=dict(type='Pretrained', checkpoint=...)``.
"""
from mmssm.models.backbones.mambavision import (convert_mambavision,
                                                mambavision_checkpoint_layout)
from mmssm.utils.checkpoint import (convert_checkpoint_file,
                                    converter_arg_parser,
                                    split_classifier_keys)


def main(argv=None):
    parser = converter_arg_parser(
        'Convert an official MambaVision checkpoint to mmssm',
        head_options=True)
    args = parser.parse_args(argv)
    meta = {}

    def convert(state_dict):
        meta['source_layout'] = mambavision_checkpoint_layout(state_dict)
        return split_classifier_keys(
            convert_mambavision(state_dict), head_prefix='head.fc.',
            mmpretrain=args.mmpretrain, no_head=args.no_head)

    convert_checkpoint_file(args.src, args.dst, convert, meta=meta)


if __name__ == '__main__':
    main()
