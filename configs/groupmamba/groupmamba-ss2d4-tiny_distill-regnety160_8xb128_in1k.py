# The VMamba-like variant of GroupMamba-T (mixer='ss2d4': every channel
# scanned in the four directions, summed) on ImageNet-1k with the recipe of
# the grouped Tiny config: the paper's "4-D scanning" ablation.
_base_ = ['./groupmamba-tiny_distill-regnety160_8xb128_in1k.py']
custom_imports = dict(
    imports=['mmssm', 'mmssm.cls'], allow_failed_imports=False)

model = dict(backbone=dict(mixer='ss2d4'))
