# GroupMamba-B on ImageNet-1k with hard distillation from RegNetY-16G (the
# recipe of the Tiny config).
_base_ = ['./groupmamba-tiny_distill-regnety160_8xb128_in1k.py']
custom_imports = dict(
    imports=['mmssm', 'mmssm.cls'], allow_failed_imports=False)

model = dict(backbone=dict(arch='base'), head=dict(in_channels=512))
