"""Transforms: shapes, value ranges, and SigLIP preprocessing equal to transformers' processor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules.transforms import VideoTransform, center_crop, resize, siglip_preprocess, to_float
from tests.videos import real_clip


def test_to_float_layout_and_range() -> None:
    frames = np.zeros((2, 4, 6, 3), np.uint8)
    frames[1, 0, 0] = (255, 0, 51)
    x = to_float(frames)
    assert x.shape == (2, 3, 4, 6) and x.dtype == torch.float32
    assert x[1, :, 0, 0].tolist() == pytest.approx([1.0, 0.0, 0.2])
    with pytest.raises(ValueError, match="uint8"):
        to_float(frames.astype(np.float32))


def test_resize_short_side_and_crop() -> None:
    x = torch.rand(3, 3, 90, 160)
    y = resize(x, 45)
    assert y.shape == (3, 3, 45, 80) and y.min() >= 0 and y.max() <= 1
    assert center_crop(y, 40).shape == (3, 3, 40, 40)
    assert center_crop(y, (44, 10)).shape == (3, 3, 44, 10)
    with pytest.raises(ValueError, match="larger"):
        center_crop(y, 50)


def test_video_transform_normalises() -> None:
    frames = np.full((2, 300, 400, 3), 128, np.uint8)
    x = VideoTransform(resize=256, crop=224, mean=(0.5,) * 3, std=(0.25,) * 3)(frames)
    assert x.shape == (2, 3, 224, 224)
    assert torch.allclose(x, torch.full_like(x, (128 / 255 - 0.5) / 0.25), atol=1e-5)


def test_siglip_matches_transformers_image_processor() -> None:
    from transformers import SiglipImageProcessor

    clip = real_clip("bikes", frames=2, height=272)
    # the processor of siglip-so400m-patch14-384, built from its config values (no download)
    processor = SiglipImageProcessor(size={"height": 384, "width": 384})
    expected = processor(images=list(clip), return_tensors="pt")["pixel_values"]
    ours = siglip_preprocess(clip)
    assert ours.shape == expected.shape == (2, 3, 384, 384)
    # PIL rounds its bicubic result to uint8; we do not: about a tenth of a grey level on average
    assert (ours - expected).abs().mean() < 0.004
    assert (ours - expected).abs().max() < 0.03
