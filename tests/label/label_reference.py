"""What the label tests compare the server with: the bundle CLI (``monai.bundle.run`` on the bundle's
``configs/inference.json``, in this process) on a folder of studies."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["bundle_cli_labels", "to_hwc"]


def to_hwc(image: np.ndarray) -> np.ndarray:
    """A synthetic RGB image as ``(H, W, 3)`` for PIL (the generators return ``(3, H, W)``)."""
    a = np.asarray(image)
    return np.ascontiguousarray(a.transpose(1, 2, 0) if a.shape[0] == 3 and a.shape[-1] != 3 else a)


def _read(path: Path) -> tuple[np.ndarray, dict]:
    if path.suffix.lower() in (".tif", ".tiff"):
        import rasterio

        with rasterio.open(path) as src:
            geo = {"crs": src.crs, "transform": src.transform} if src.crs is not None else {}
            return src.read(1), geo
    return np.asarray(Image.open(path)), {}


def bundle_cli_labels(
    bundle: Path,
    images: list[Path],
    work: Path,
    model_file: str | os.PathLike | None = None,
    threads: int | None = None,
    **options: str,
) -> dict[str, tuple[np.ndarray, dict]]:
    """``{image file name: (_seg array, {"crs", "transform"} of a georeferenced _seg.tif)}`` from the bundle CLI
    run on copies of ``images`` (with ``model_file`` instead of the shipped weights when given, and more CLI
    ``options`` such as ``prior_dir``/``strokes_dir``), with ``threads`` torch threads when given: a server's
    (convolutions sum in another order with another thread count, which flips the odd pixel whose probability is
    within float rounding of the threshold)."""
    import torch
    from monai.bundle import run

    in_dir, out_dir = work / "in", work / "out"
    in_dir.mkdir(parents=True)
    for p in images:
        shutil.copy(p, in_dir / p.name)
    extra = {"model_file": str(model_file)} if model_file else {}
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        run(
            config_file=str(bundle / "configs" / "inference.json"),
            bundle_root=str(bundle),
            dataset_dir=str(in_dir),
            output_dir=str(out_dir),
            device="$torch.device('cpu')",
            progress=False,
            **extra,
            **options,
        )
    finally:
        torch.set_num_threads(before)
    out = {}
    for p in images:
        segs = sorted(out_dir.glob(f"{p.stem}_seg.*"))
        assert segs, f"the {bundle.name} CLI wrote no _seg for {p.name}"
        geo_seg = _read(segs[0])
        # a GeoTIFF label is expected only for a TIFF study; a PNG study's label carries no georeferencing
        out[p.name] = geo_seg if p.suffix.lower() in (".tif", ".tiff") else (geo_seg[0], {})
    return out
