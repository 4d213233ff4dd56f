"""Read one 2D image file (PNG, GIF, PPM, JPEG, TIFF, GeoTIFF) as a numpy array in its stored data type."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

__all__ = ["PLANE_SUFFIXES", "read_plane"]

PLANE_SUFFIXES = (".png", ".gif", ".ppm", ".pgm", ".pbm", ".jpg", ".jpeg", ".tif", ".tiff")
_TIFF = (".tif", ".tiff")


def _read_tiff(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            arr = src.read()  # (bands, H, W)
            nodata = src.nodata
    valid = None
    if nodata is not None:
        hit = np.isnan(arr) if np.isnan(nodata) else arr == nodata
        valid = ~hit.any(0)
    return arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1), valid


def _read_pil(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        if img.mode in ("1", "P", "PA"):
            img = img.convert("LA" if img.mode == "PA" else "L")
        arr = np.asarray(img)
    if arr.dtype.kind == "i" and arr.size and arr.min() >= 0 and arr.max() <= 65535:
        arr = arr.astype(np.uint16)  # PIL's mode "I" for 16-bit PNGs
    return arr


def read_plane(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a 2D image file; returns ``(array, valid)``.

    ``array`` is ``(H, W)`` or ``(H, W, C)`` in the file's data type (palette and 1-bit images as 8-bit grey,
    16-bit PNGs as ``uint16``); TIFFs are read with rasterio (any band count and type). ``valid`` is a bool
    ``(H, W)`` array that is False on a GeoTIFF's nodata pixels, or ``None`` when the file declares no nodata.
    Raises ``ValueError`` naming the file when it cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found.")
    try:
        if path.suffix.lower() in _TIFF:
            return _read_tiff(path)
        return _read_pil(path), None
    except Exception as e:  # unreadable, truncated or not an image
        raise ValueError(f"{path}: cannot read the image ({type(e).__name__}: {e}).") from e
