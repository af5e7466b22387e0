# UperNet 160k with the VMamba-like variant of GroupMamba-T (mixer='ss2d4'),
# same recipe as the grouped Tiny config. No official ImageNet weights exist
# for this variant: pre-train it with
# configs/groupmamba/groupmamba-ss2d4-tiny_distill-regnety160_8xb128_in1k.py.
_base_ = ['./upernet_groupmamba-tiny_8xb2-160k_ade20k-512x512.py']
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

model = _base_.groupmamba_seg['ss2d4_tiny']
