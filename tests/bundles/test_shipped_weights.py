"""Each bundle's shipped ``models/model.pt`` loads with ``torch.load(weights_only=True)`` into the bundle's own
network and, run through the bundle's inference command on its shipped samples, gives a sane segmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from monai.bundle import ConfigParser, run
from PIL import Image

from monai_rurnet.data.retina import fov_mask_from_image

ROOT = Path(__file__).resolve().parents[2]
BUNDLES = ["retina_drive", "massroads", "handseg"]
REFERENCE = Path(__file__).resolve().parent / "reference"


@pytest.mark.parametrize("bundle", BUNDLES)
def test_weights_load_strictly_without_pickle(bundle):
    parser = ConfigParser()
    parser.read_config(str(ROOT / "bundles" / bundle / "configs" / "inference.json"))
    parser.update({"bundle_root": str(ROOT / "bundles" / bundle), "device": "$torch.device('cpu')"})
    net = parser.get_parsed_content("network_def")
    state = torch.load(
        ROOT / "bundles" / bundle / "models" / "model.pt", map_location="cpu", weights_only=True
    )
    assert net.load_state_dict(state, strict=True)  # no missing / unexpected keys
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def _infer(bundle: str, out: Path, **overrides) -> None:
    run(
        config_file=str(ROOT / "bundles" / bundle / "configs" / "inference.json"),
        bundle_root=str(ROOT / "bundles" / bundle),
        output_dir=str(out),
        device="$torch.device('cpu')",
        progress=False,
        **overrides,
    )


def test_retina_samples_vessel_fraction():
    """On the reference outputs, which ``test_reference_outputs.py`` shows the inference command reproduces."""
    for src in sorted((ROOT / "bundles" / "retina_drive" / "sample_data").glob("*.png")):
        image = np.asarray(Image.open(src).convert("RGB"))
        seg = np.asarray(Image.open(REFERENCE / "retina_drive" / f"{src.stem}_seg.png")) > 0
        fov = fov_mask_from_image(image, channel_dim=-1)
        fraction = seg[fov].mean()
        assert 0.05 <= fraction <= 0.20, f"{src.name}: vessel fraction inside the FOV {fraction:.3f}"
        assert seg[~fov].mean() < 0.01, f"{src.name}: vessels predicted outside the FOV"


def test_massroads_samples_road_fraction(tmp_path):
    _infer("massroads", tmp_path)
    for src in sorted((ROOT / "bundles" / "massroads" / "sample_data").glob("*.tif")):
        with rasterio.open(src) as s, rasterio.open(tmp_path / f"{src.stem}_seg.tif") as o:
            valid = ~(s.read() == 255).all(axis=0)
            seg = o.read(1) > 0
            assert o.crs == s.crs and o.transform == s.transform
        fraction = seg[valid].mean()
        assert 0.03 <= fraction <= 0.35, f"{src.name}: road fraction {fraction:.3f}"


def test_handseg_samples_hand_fraction():
    """On the reference outputs, which ``test_reference_outputs.py`` shows the inference command reproduces."""
    for src in sorted((ROOT / "bundles" / "handseg" / "sample_data").glob("*.png")):
        seg = np.asarray(Image.open(REFERENCE / "handseg" / f"{src.stem}_seg.png")) > 0
        assert 0.02 <= seg.mean() <= 0.60, f"{src.name}: hand fraction {seg.mean():.3f}"


def _read_mask(path: Path) -> np.ndarray:
    if path.suffix == ".png":
        return np.asarray(Image.open(path)) > 0
    with rasterio.open(path) as f:
        return f.read(1) > 0


@pytest.mark.parametrize("bundle,pattern", [("retina_drive", "*_seg.png"), ("massroads", "*_seg.tif")])
def test_bfloat16_inference_agrees_with_float32(tmp_path, bundle, pattern):
    """``--precision bfloat16`` (the network in bfloat16 on the fast path) segments the shipped samples as
    float32 does, up to a few boundary pixels."""
    for precision in ("float32", "bfloat16"):
        _infer(bundle, tmp_path / precision, precision=precision, flip_tta=False)
    outs = sorted((tmp_path / "float32").glob(pattern))
    assert outs
    for a in outs:
        sa, sb = (_read_mask(d / a.name) for d in (tmp_path / "float32", tmp_path / "bfloat16"))
        assert sa.any() and np.mean(sa == sb) >= 0.995, f"{a.name}: {np.mean(sa == sb):.4f} of pixels agree"
