"""Convert an official Vim (hustvl/Vim) or Mamba-Reg (wangf3014/Mamba-Reg)
checkpoint to the mmssm layout.

Usage::

    python tools/model_converters/vim2mmssm.py vim_t_midclstok_76p1acc.pth \
        vim-tiny_mmssm.pth [--ema] [--no-head]

The official files are dicts with ``'model'`` (and ``'model_ema'``,
``'optimizer'``, ``'args'`` holding an ``argparse.Namespace`` ...); they are
loaded by :func:`mmssm.utils.checkpoint.load_checkpoint_file` (``torch.load``
with ``weights_only=True`` and the safe globals of
:func:`mmssm.utils.register_torch_safe_globals`).
The output ``{'meta': ..., 'state_dict': ...}`` is in the mmpretrain
``ImageClassifier`` layout (``backbone.*`` for :class:`mmssm.models.Vim`,
``head.fc.*`` for ``LinearClsHead``): use it as ``load_from`` of the
classification configs, or as ``init_cfg=dict(type='Pretrained',
checkpoint=..., prefix='backbone.')`` of a dense one. The class-token row of
``pos_embed`` stays in the middle (row ``M // 2``), the layout of
:class:`~mmssm.models.Vim`; the backbone resizes it to any grid when loading.
Note that :class:`~mmssm.models.Vim` also loads the unconverted official files
directly through ``init_cfg``. Mamba-Reg files (registers ``cls_token``
``(1, n, C)``, ``pos_embed_cls``, patch-only ``pos_embed``) convert the same
way for ``Vim(arch='reg-*')``; their classifier ``neck``/``norm_neck`` become
``head.neck``/``head.norm_neck`` (no mmpretrain head reads them).
"""
from mmssm.models.backbones.vim import convert_vim
from mmssm.utils.checkpoint import (convert_checkpoint_file,
                                    converter_arg_parser,
                                    split_classifier_keys)

__all__ = ['convert_vim', 'main']


def main(argv=None):
    parser = converter_arg_parser(
        'Convert an official Vim checkpoint to mmssm.')
    parser.add_argument(
        '--ema', action='store_true', help="convert 'model_ema'")
    parser.add_argument(
        '--no-head', action='store_true', help='drop the classifier head')
    args = parser.parse_args(argv)

    def convert(state_dict):
        # convert_vim gives the mmpretrain layout (backbone.*, head.fc.*)
        # already: only the head is placed (kept or dropped)
        return split_classifier_keys(
            convert_vim(state_dict), no_head=args.no_head)

    convert_checkpoint_file(args.src, args.dst, convert, use_ema=args.ema)


if __name__ == '__main__':
    main()
