# UperNet 160k with MambaVision-B on ADE20K: the official recipe of the Tiny
# config with the Base backbone (layer scale 1e-5), windows (8, 8, 64, 32),
# lr 5e-5, batch 16 as 16 GPUs x 1 (official config
# mamba_vision_160k_ade20k-512x512_base.py; its written drop_path_rate 0.4
# never reached the backbone, 0.2 here). Published: mIoU 49.1.
_base_ = ['./upernet_mambavision-tiny_16xb1-160k_ade20k-512x512.py']
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

model = _base_.mambavision_seg['base']
