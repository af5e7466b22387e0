# MambaVision-L2 on ImageNet-1k, the official recipe (NVlabs/MambaVision
# mambavision/configs/mambavision_large2_1k.yaml): the L recipe (see
# mambavision-large_32xb128_in1k.py: drop path 0.3, weight decay 0.12) with
# the L2 backbone (stage-3 depth 12). Not reproduced: MESA 6.0 from 25 % of
# training. Published: 85.3 top-1.
_base_ = ['./mambavision-large_32xb128_in1k.py']
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

model = dict(backbone=dict(arch='large2'))
