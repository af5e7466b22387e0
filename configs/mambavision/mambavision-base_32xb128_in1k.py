# MambaVision-B on ImageNet-1k, the official recipe (NVlabs/MambaVision
# mambavision/configs/mambavision_base_1k.yaml): the T recipe (LAMB lr 5e-3,
# 310 epochs with 10 cool-down, EMA 0.9998, crop_pct 1.0, ...; see
# mambavision-tiny_32xb128_in1k.py) with the B backbone (layer scale 1e-5),
# drop path 0.3, weight decay 0.075 and 35 warm-up epochs (cosine from epoch
# 35 to 300). Not reproduced: MESA 1.0 from 30 % of training.
# Published: 84.2 top-1.
_base_ = ['./mambavision-tiny_32xb128_in1k.py']
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

model = dict(
    backbone=dict(arch='base', drop_path_rate=0.3),
    head=dict(in_channels=1024))
optim_wrapper = dict(optimizer=dict(weight_decay=0.075))
# the T schedule with 35 warm-up epochs (epochs 300-310 stay at eta_min)
param_scheduler = [
    dict(_base_.param_scheduler[0], end=35),
    dict(_base_.param_scheduler[1], begin=35)
]
