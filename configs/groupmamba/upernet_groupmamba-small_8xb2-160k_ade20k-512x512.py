# UperNet 160k with GroupMamba-S on ADE20K: the recipe of the Tiny config with
# the Small backbone.
_base_ = ['./upernet_groupmamba-tiny_8xb2-160k_ade20k-512x512.py']
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

model = _base_.groupmamba_seg['small']
