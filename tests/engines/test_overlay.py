"""The evaluation overlay is written in the orientation of the evaluated file (MONAI reads 2D files as (W, H))."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from monai.transforms import Compose
from PIL import Image

from monai_rurnet.data.transforms import load_transforms
from monai_rurnet.engines import OverlaySaver


def test_overlay_keeps_the_file_orientation(tmp_path):
    h, w = 24, 40  # not square: a transposed overlay would be 24 wide
    rgb = np.full((h, w, 3), 90, np.uint8)
    label = np.zeros((h, w), np.uint8)
    label[2:6, :] = 255  # a road along the top rows
    Image.fromarray(rgb).save(tmp_path / "tile.png")
    Image.fromarray(label).save(tmp_path / "tile_label.png")
    d = Compose(load_transforms("image", ["label"]))(
        {"image": str(tmp_path / "tile.png"), "label": str(tmp_path / "tile_label.png")}
    )
    y = (d["label"] > 0).float()
    assert tuple(y.shape[1:]) == (w, h)  # MONAI's axis order
    pred = torch.cat([1 - y, y])  # a perfect prediction: true positives (white) exactly on the label
    engine = SimpleNamespace(
        state=SimpleNamespace(output=[{"pred": pred, "label": y}], batch=[d], iteration=1)
    )
    out = tmp_path / "eval"
    out.mkdir()
    OverlaySaver(out)(engine)
    overlay = np.asarray(Image.open(out / "tile_overlay.png"))
    assert overlay.shape == (h, w, 3)
    white = (overlay == 255).all(axis=-1)
    np.testing.assert_array_equal(white, label > 0)
