"""The three bundles' inference on their shipped samples gives the committed reference outputs.

``tests/bundles/reference/<bundle>/`` holds, for every sample, the ``<stem>_seg.png`` mask and the probability as
uint8 ``<stem>_prob.png`` (``round(p * 255)``; the massroads ``_prob.tif`` float32 raster quantised the same way),
written from the default inference command. Refactors of the inference path must leave them unchanged (up to a
few pixels flipped by float rounding at the 0.5 threshold). Regenerate (only for an intended change of the
outputs) with ``python tests/bundles/test_reference_outputs.py OUTPUTS_ROOT`` after running each bundle's
inference into ``OUTPUTS_ROOT/<bundle>``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from monai.bundle import run
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = Path(__file__).resolve().parent / "reference"
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
    run(
        config_file=str(ROOT / "bundles" / bundle / "configs" / "inference.json"),
        bundle_root=str(ROOT / "bundles" / bundle),
        output_dir=str(tmp_path),
        device="$torch.device('cpu')",
        progress=False,
    )
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


if __name__ == "__main__":
    root = Path(sys.argv[1])
    for b in SUFFIX:
        (REFERENCE / b).mkdir(parents=True, exist_ok=True)
        for n, a in outputs(b, root / b).items():
            Image.fromarray(a).save(REFERENCE / b / n, optimize=True)
