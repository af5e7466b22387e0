"""A gray (2-D) numpy image given to mmdet's ``inference_detector`` with an
mmssm detection config: the detections of the same image as three equal
channels (it used to end in an IndexError inside the data preprocessor)."""
import numpy as np
import torch


def test_gray_array_is_the_three_channel_image(tmp_path):
    from mmdet.apis import inference_detector, init_detector
    from tiny_demo_configs import DET_DEMO, build_model

    import mmssm.det  # noqa: F401  (the configs' custom_imports)
    from mmssm.datasets import SHAPES_METAINFO
    from mmssm.det.gray import gray_to_bgr
    torch.manual_seed(0)
    # random weights, saved with the class names (init_detector without a
    # checkpoint warns and names the classes after COCO)
    ckpt = tmp_path / 'random.pth'
    torch.save({'state_dict': build_model(DET_DEMO, 'mmdet').state_dict(),
                'meta': {'dataset_meta': dict(SHAPES_METAINFO)}}, ckpt)
    model = init_detector(
        DET_DEMO, str(ckpt), device='cpu',
        cfg_options=dict(model=dict(test_cfg=dict(
            rcnn=dict(score_thr=0.0, max_per_img=5)))))
    gray = (np.random.default_rng(0).random((64, 80)) * 255).astype(np.uint8)
    rgb3 = np.repeat(gray[..., None], 3, axis=2)
    got = inference_detector(model, gray).pred_instances
    want = inference_detector(model, rgb3).pred_instances
    assert len(want) > 0
    torch.testing.assert_close(got.bboxes, want.bboxes)
    torch.testing.assert_close(got.scores, want.scores)
    # H x W x 1 too, and colour images untouched
    assert gray_to_bgr(gray[..., None]).shape == (64, 80, 3)
    assert gray_to_bgr(rgb3) is rgb3
