# CPU demo of the VMamba-like variant (mixer='ss2d4'), otherwise the same as
# upernet_groupmamba-demo_demo_ade-shapes.py, for a side-by-side run.
_base_ = ['./upernet_groupmamba-demo_demo_ade-shapes.py']
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

model = dict(backbone=dict(mixer='ss2d4'))
