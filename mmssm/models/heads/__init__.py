"""Classification heads of mmssm.

They subclass mmpretrain's heads, so they are not imported by ``import mmssm``
(which must work without mmpretrain's mmcv version gate). Import them where
they are used, e.g. in an mmpretrain config::

    custom_imports = dict(
        imports=['mmssm', 'mmssm.models.heads.mambaout_head'],
        allow_failed_imports=False)
"""
