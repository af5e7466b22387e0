# UperNet 160k with MambaVision-S on ADE20K: the official recipe of the Tiny
# config with the Small backbone, windows (8, 8, 160, 56), lr 6e-5 and batch
# 16 as 8 GPUs x 2 (official config
# mamba_vision_160k_ade20k-512x512_small.py; its written drop_path_rate 0.7
# never reached the backbone, 0.2 here). Published: mIoU 48.2.
_base_ = ['./upernet_mambavision-tiny_16xb1-160k_ade20k-512x512.py']
custom_imports = dict(imports=['mmssm'], allow_failed_imports=False)

model = _base_.mambavision_seg['small']
optim_wrapper = dict(optimizer=dict(lr=6e-5))
# 8 GPUs x 2 images
train_dataloader = dict(batch_size=2)
