"""Each bundle's shipped ``models/model.pt`` loads with ``torch.load(weights_only=True)`` into the bundle's own
network and, run through the bundle's inference command on its shipped samples, gives a sane segmentation: the
committed reference outputs, unchanged by refactors of the inference path.

``tests/bundles/reference/<bundle>/`` holds, for every sample, the ``<stem>_seg.png`` mask and the probability as
uint8 ``<stem>_prob.png`` (``round(p * 255)``; the massroads ``_prob.tif`` float32 raster quantised the same way),
written from the default inference command; the outputs must match them up to a few pixels flipped by float
rounding at the 0.5 threshold. Regenerate them (only for an intended change of the outputs) with
``python tests/bundles/test_shipped_weights.py OUTPUTS_ROOT`` after running each bundle's inference into
``OUTPUTS_ROOT/<bundle>``.
"""

from __future__ import annotations

import sys
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
    """On the reference outputs, which ``test_outputs_match_reference`` shows the inference command reproduces."""
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
    """On the reference outputs, which ``test_outputs_match_reference`` shows the inference command reproduces."""
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


SUFFIX = {"retina_drive": ".png", "massroads": ".tif", "handseg": ".png"}


def _read(path: Path) -> np.ndarray:
    """A bundle output as uint8 (H, W): masks as written, probabilities as ``round(p * 255)``."""
    if path.suffix == ".png":
        return np.asarray(Image.open(path))
    with rasterio.open(path) as f:
        a = f.read(1)
    return a if a.dtype == np.uint8 else np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)


def outputs(bundle: str, out_dir: Path) -> dict[str, np.ndarray]:
    """``{<stem>_seg.png: mask, <stem>_prob.png: probability}`` of every output of ``bundle`` in ``out_dir``."""
    found = {}
    for kind in ("seg", "prob"):
        for path in sorted(out_dir.glob(f"*_{kind}{SUFFIX[bundle]}")):
            found[f"{path.name[: -len(path.suffix)]}.png"] = _read(path)
    return found


@pytest.mark.parametrize("bundle", sorted(SUFFIX))
def test_outputs_match_reference(bundle, tmp_path):
    _infer(bundle, tmp_path)
    got = outputs(bundle, tmp_path)
    expected = sorted(p.name for p in (REFERENCE / bundle).glob("*.png"))
    assert sorted(got) == expected and expected
    for name in expected:
        ref = np.asarray(Image.open(REFERENCE / bundle / name))
        out = got[name]
        assert out.shape == ref.shape, f"{bundle}/{name}: shape {out.shape} != {ref.shape}"
        diff = np.abs(out.astype(np.int16) - ref.astype(np.int16))
        if name.endswith("_seg.png"):
            assert np.mean(diff > 0) <= 1e-4, f"{bundle}/{name}: {int(np.sum(diff > 0))} mask pixels differ"
        else:
            assert diff.max() <= 2, f"{bundle}/{name}: probability differs by {diff.max()}/255"


if (
    __name__ == "__main__"
):  # regenerate the references from OUTPUTS_ROOT/<bundle> (intended output changes only)
    root = Path(sys.argv[1])
    for b in SUFFIX:
        (REFERENCE / b).mkdir(parents=True, exist_ok=True)
        for n, a in outputs(b, root / b).items():
            Image.fromarray(a).save(REFERENCE / b / n, optimize=True)
