"""FOV-based scale normalisation (cross-camera inference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_rurnet.transforms import DRIVE_FOV_DIAMETER, FOVRescaler, fov_width


def _disc_image(h: int, w: int, radius: float, crop_rows: int = 0) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 <= radius**2
    if crop_rows:
        disc[:crop_rows] = False
        disc[-crop_rows:] = False
    rng = np.random.default_rng(0)
    img = np.zeros((3, h, w), np.float32)
    img[0][disc] = 0.7 + 0.1 * rng.random(disc.sum())
    img[1][disc] = 0.3
    img[2][disc] = 0.1
    return img


@pytest.mark.parametrize("radius,crop", [(270, 0), (480, 0), (320, 60)])
def test_fov_diameter_of_a_disc_of_known_radius(radius, crop):
    h = w = int(2 * radius + 40)
    img = _disc_image(h, w, radius, crop)
    r = FOVRescaler()
    factor = r.factor(img)
    expected = DRIVE_FOV_DIAMETER / (2 * radius)
    assert factor == 1.0 if abs(expected - 1) <= 0.05 else factor == pytest.approx(expected, rel=0.02)


def test_rescale_round_trip_returns_the_input_grid():
    r = FOVRescaler()
    image = torch.rand(3, 961, 999)
    for factor in (0.56, 1.0, 1.7):
        small = r.resize(image, factor)
        assert small.shape[1:] == (max(16, round(961 * factor)), max(16, round(999 * factor)))
        prob = torch.rand(*small.shape[1:])
        back = r.restore(prob, (961, 999))
        assert back.shape == (961, 999) and float(back.min()) >= 0 and float(back.max()) <= 1


def test_no_fov_means_no_rescale_and_width_of_empty_mask():
    assert FOVRescaler().factor(np.zeros((3, 64, 64), np.float32)) == 1.0
    assert fov_width(np.zeros((8, 8), bool)) == 0.0


def test_runner_option_can_be_switched_off(tmp_path):
    from PIL import Image

    from monai_rurnet.data.writers import PngMaskWriter
    from monai_rurnet.networks import build_network
    from monai_rurnet.runners import FolderSegmentationRunner, ImageFolderDataset

    img = (_disc_image(200, 232, 90).transpose(1, 2, 0) * 255).astype(np.uint8)
    (tmp_path / "in").mkdir()
    Image.fromarray(img).save(tmp_path / "in" / "a.png")
    seen: list[tuple[int, ...]] = []

    def inferer(x, net):
        seen.append(tuple(x.shape[2:]))
        return torch.zeros(1, 2, *x.shape[2:])

    def prep(d):
        t = torch.from_numpy(np.asarray(Image.open(d["image"]), np.float32).transpose(2, 0, 1) / 255)
        return {"image": t, "display": t}

    net = build_network("dru", features=(4, 8, 16, 32, 64))
    for rescaler, out in ((None, "off"), (FOVRescaler(), "on")):
        FolderSegmentationRunner(
            net,
            ImageFolderDataset(tmp_path / "in", prep),
            inferer,
            tmp_path / out,
            writer=PngMaskWriter(),
            progress=False,
            rescaler=rescaler,
        ).run()
        assert np.asarray(Image.open(tmp_path / out / "a_seg.png")).shape == (200, 232)
    assert seen[0] == (200, 232) and seen[1][0] > 400  # off: native grid; on: FOV 180 px -> ~539 px
