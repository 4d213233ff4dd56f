"""Read 2D image files (PNG, GIF, PPM, JPEG, TIFF, GeoTIFF): as numpy arrays in their stored data type
(:func:`read_plane`, for scoring), and through MONAI's ``LoadImage`` (:class:`TiffFallbackPILReader`)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from monai.data import PILReader
from monai.utils import ensure_tuple
from PIL import Image, UnidentifiedImageError

__all__ = ["PLANE_SUFFIXES", "TIFF_SUFFIXES", "read_plane", "TiffFallbackPILReader"]

PLANE_SUFFIXES = (".png", ".gif", ".ppm", ".pgm", ".pbm", ".jpg", ".jpeg", ".tif", ".tiff")
TIFF_SUFFIXES = (".tif", ".tiff")


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
        if path.suffix.lower() in TIFF_SUFFIXES:
            return _read_tiff(path)
        return _read_pil(path), None
    except Exception as e:  # unreadable, truncated or not an image
        raise ValueError(f"{path}: cannot read the image ({type(e).__name__}: {e}).") from e


def _tiff_as_pil(path: Path) -> Image.Image:
    """A TIFF that Pillow cannot decode (16-bit RGB, band-interleaved, LZW/deflate/tiled 16-bit, ...) read with
    rasterio and given to Pillow as Pillow reads the TIFFs it can: 16-bit colour as its high byte (8-bit RGB),
    16-bit grey as ``I;16``, one float band as ``F``."""
    arr, _ = _read_tiff(path)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        if arr.dtype == np.uint16:
            arr = (arr >> 8).astype(np.uint8)
        if arr.dtype != np.uint8:
            raise ValueError(f"{path}: {arr.shape[-1]}-band TIFF of type {arr.dtype} is not supported")
        return Image.fromarray(np.ascontiguousarray(arr), "RGB" if arr.shape[-1] == 3 else "RGBA")
    if arr.ndim == 2 and arr.dtype in (np.uint8, np.uint16, np.float32):
        return Image.fromarray(np.ascontiguousarray(arr))
    if arr.ndim == 2 and np.issubdtype(arr.dtype, np.floating):
        return Image.fromarray(arr.astype(np.float32))
    raise ValueError(f"{path}: TIFF with shape {arr.shape} and type {arr.dtype} is not supported")


class TiffFallbackPILReader(PILReader):
    """MONAI's ``PILReader``, except that a TIFF Pillow cannot decode is read with rasterio (GDAL) instead of
    failing (see :func:`_tiff_as_pil`); images Pillow reads come out exactly as with ``PILReader``."""

    def read(self, data, **kwargs):  # noqa: ANN001, ANN201 - MONAI's signature
        images = []
        names = ensure_tuple(data)
        for name in names:
            try:
                img = super().read(name, **kwargs)
                img.load()  # Pillow decodes lazily: a layout it cannot decode fails here, not later
            except (UnidentifiedImageError, ValueError, OSError):
                if Path(name).suffix.lower() not in TIFF_SUFFIXES:
                    raise
                img = _tiff_as_pil(Path(name))
                if callable(self.converter):
                    img = self.converter(img)
            images.append(img)
        return images if len(names) > 1 else images[0]
