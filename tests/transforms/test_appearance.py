"""Camera-appearance augmentations used by the retina training recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_rurnet.transforms import RandHueSaturationd, RandJPEGd


def _image(seed: int = 0) -> MetaTensor:
    g = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 72, 72, generator=g), 9, 1)[0]
    return MetaTensor(smooth.clamp(0, 1), meta={"filename_or_obj": "fundus.png"})


def test_hue_saturation_keeps_luminance_and_grey_and_meta():
    x = _image()
    t = RandHueSaturationd("image", prob=1.0, hue=0.5, saturation=(0.5, 1.5))
    t.set_random_state(3)
    y = t({"image": x})["image"]
    assert isinstance(y, MetaTensor) and y.meta["filename_or_obj"] == "fundus.png"
    assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    lum = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    unclipped = ((y > 0) & (y < 1)).all(0)
    assert torch.allclose((y * lum).sum(0)[unclipped], (x * lum).sum(0)[unclipped], atol=1e-5)
    assert float((y - x).abs().max()) > 0.01
    grey = torch.full((3, 8, 8), 0.4)
    assert torch.allclose(t({"image": grey})["image"], grey, atol=1e-6)


def test_hue_saturation_prob_zero_is_identity_and_rejects_non_rgb():
    x = _image()
    assert torch.equal(RandHueSaturationd("image", prob=0.0)({"image": x})["image"], x)
    with pytest.raises(ValueError, match="channel-first RGB"):
        RandHueSaturationd("image", prob=1.0)({"image": torch.rand(1, 8, 8)})


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_degrades_more_at_low_quality(channels):
    x = _image()[:channels]
    errors = []
    for q in (10, 90):
        t = RandJPEGd("image", prob=1.0, quality=(q, q))
        y = t({"image": x})["image"]
        assert y.shape == x.shape and y.dtype == torch.float32
        errors.append(float((y - x).abs().mean()))
    assert errors[0] > errors[1] > 0
    assert errors[1] < 0.02


def test_jpeg_is_seeded_and_validates_quality():
    x = _image()
    a, b = RandJPEGd("image", prob=0.5, quality=(20, 80)), RandJPEGd("image", prob=0.5, quality=(20, 80))
    a.set_random_state(7)
    b.set_random_state(7)
    for _ in range(4):
        np.testing.assert_array_equal(a({"image": x})["image"].numpy(), b({"image": x})["image"].numpy())
    with pytest.raises(ValueError, match="quality range"):
        RandJPEGd("image", quality=(0, 120))


def test_jpeg_at_a_smaller_scale_keeps_the_size_and_loses_more_detail():
    x = _image()
    plain = RandJPEGd("image", prob=1.0, quality=(75, 75))({"image": x})["image"]
    small = RandJPEGd("image", prob=1.0, quality=(75, 75), zoom=(0.5, 0.5))({"image": x})["image"]
    assert small.shape == x.shape and small.dtype == torch.float32
    assert 0.0 <= float(small.min()) and float(small.max()) <= 1.0
    assert float((small - x).abs().mean()) > float((plain - x).abs().mean())
    with pytest.raises(ValueError, match="zoom range"):
        RandJPEGd("image", zoom=(0.0, 1.0))
    with pytest.raises(ValueError, match="zoom range"):
        RandJPEGd("image", zoom=(0.8, 1.2))
