"""GeoTIFF I/O for MONAI through rasterio: reader, writer, windowed helpers and Massachusetts Roads georeferencing.

Arrays are channel-first ``(C, H, W)`` in rasterio's row/column order (unlike MONAI's ``PILReader``, which
by default returns ``(W, H)`` spatial axes). Metadata keys: ``crs`` (WKT or ``None``), ``transform``
(GDAL geotransform ``[c, a, b, f, d, e]``: ``x = c + a*col + b*row``, ``y = f + d*col + e*row``), ``nodata``,
``spatial_shape`` ``(H, W)``, ``original_channel_dim`` = 0 and ``affine``, the 3x3 pixel-to-world matrix
mapping ``(row, col, 1)`` to ``(x, y, 1)``; MONAI spatial transforms update ``affine``, and the writer
derives the output geotransform from it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from monai.data import ImageReader
from monai.utils import ensure_tuple
from rasterio.transform import Affine
from rasterio.windows import Window

from monai_rurnet.utils import atomic_path

__all__ = [
    "RasterioReader",
    "iter_windows",
    "read_window",
    "three_bands",
    "normalize_bands",
    "raster_unit_scale",
    "valid_pixels",
    "PROB_NODATA",
    "MIN_RASTER_SIDE",
    "create_like",
    "write_geotiff",
    "geotransform_to_affine",
    "affine_to_geotransform",
    "massroads_geotransform",
    "write_georeferenced_tile",
    "MASSROADS_CRS",
    "RASTERIO_SUFFIXES",
]

MASSROADS_CRS = "EPSG:26986"
RASTERIO_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2", ".png", ".jpg", ".jpeg")


def geotransform_to_affine(gt: Sequence[float]) -> np.ndarray:
    """3x3 matrix mapping ``(row, col, 1)`` to ``(x, y, 1)`` from a GDAL geotransform ``(c, a, b, f, d, e)``."""
    c, a, b, f, d, e = (float(v) for v in gt)
    return np.array([[b, a, c], [e, d, f], [0.0, 0.0, 1.0]], dtype=np.float64)


def affine_to_geotransform(affine: Any) -> tuple[float, ...]:
    """Inverse of :func:`geotransform_to_affine` (accepts a 3x3 array/tensor)."""
    m = affine.detach().cpu().numpy() if isinstance(affine, torch.Tensor) else np.asarray(affine)
    m = np.asarray(m, dtype=np.float64)
    if m.shape != (3, 3):
        raise ValueError(f"affine must be 3x3 for a 2D raster, got shape {m.shape}")
    return (m[0, 2], m[0, 1], m[0, 0], m[1, 2], m[1, 1], m[1, 0])


class RasterioReader(ImageReader):
    """MONAI ``ImageReader`` backed by rasterio; returns ``(C, H, W)`` arrays as stored (no scaling).

    Usable as ``LoadImage(reader=RasterioReader())`` or ``LoadImaged(keys, reader=RasterioReader)``.
    ``bands`` (1-based) selects bands; ``dtype`` casts the array.
    """

    def __init__(self, bands: Sequence[int] | None = None, dtype: Any = None, **kwargs):
        super().__init__()
        self.bands = None if bands is None else list(bands)
        self.dtype = dtype
        self.kwargs = kwargs

    def verify_suffix(self, filename: Sequence[os.PathLike] | os.PathLike | str) -> bool:
        return all(str(f).lower().endswith(RASTERIO_SUFFIXES) for f in ensure_tuple(filename))

    def read(self, data: Sequence[os.PathLike] | os.PathLike | str, **kwargs) -> list[dict] | dict:
        """Read whole raster(s) into memory; returns a dict (or list of dicts) with ``array`` and ``meta``."""
        out = []
        for name in ensure_tuple(data):
            try:
                with rasterio.open(name, **{**self.kwargs, **kwargs}) as ds:
                    arr = ds.read(self.bands)
                    meta = {
                        "crs": ds.crs.to_wkt() if ds.crs is not None else None,
                        "transform": list(ds.transform.to_gdal()),
                        "nodata": ds.nodata,
                        "dtype": str(ds.dtypes[0]),
                        "count": ds.count,
                    }
            except rasterio.errors.RasterioIOError as e:
                raise OSError(f"{name}: rasterio cannot open the file ({e})") from e
            out.append({"array": arr, "meta": meta, "filename": str(name)})
        return out if len(out) > 1 else out[0]

    def get_data(self, img: list[dict] | dict) -> tuple[np.ndarray, dict]:
        """Return ``(array (C, H, W), meta)``; several files are stacked on a new first axis."""
        items = [img] if isinstance(img, dict) else list(img)
        arrays = []
        for it in items:
            a = it["array"]
            arrays.append(a.astype(self.dtype) if self.dtype is not None else a)
        first = items[0]
        meta = dict(first["meta"])
        meta["spatial_shape"] = np.asarray(arrays[0].shape[1:])
        meta["original_channel_dim"] = 0
        meta["affine"] = geotransform_to_affine(meta["transform"])
        meta["original_affine"] = meta["affine"].copy()
        meta["filename_or_obj"] = first["filename"]
        arr = arrays[0] if len(arrays) == 1 else np.stack(arrays, axis=0)
        return arr, meta


def write_geotiff(
    path: str | os.PathLike,
    array: np.ndarray,
    transform: Sequence[float] | Affine | None = None,
    crs: str | None = None,
    nodata: float | None = None,
    compress: str = "deflate",
) -> str:
    """Write ``array`` ``(C, H, W)`` or ``(H, W)`` as a tiled GeoTIFF atomically (temp file + ``os.replace``)."""
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"{path}: array must be (C, H, W) or (H, W), got shape {a.shape}")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    if transform is None:
        tr = Affine.identity()
    elif isinstance(transform, Affine):
        tr = transform
    else:
        tr = Affine.from_gdal(*[float(v) for v in transform])
    profile = {
        "driver": "GTiff",
        "height": a.shape[1],
        "width": a.shape[2],
        "count": a.shape[0],
        "dtype": a.dtype.name,
        "crs": crs,
        "transform": tr,
        "nodata": nodata,
        "compress": compress,
        "BIGTIFF": "IF_SAFER",
    }
    if a.shape[1] >= 256 and a.shape[2] >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    path = Path(path)
    with atomic_path(path, ".tif") as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(a)
    return str(path)


def iter_windows(
    height: int,
    width: int,
    window: int | Sequence[int],
    overlap: int | Sequence[int] = 0,
    align_last: bool = True,
) -> Iterator[Window]:
    """Windows of size ``window`` (``int`` or ``(h, w)``) covering ``height x width`` with ``overlap`` px.

    With ``align_last`` the last row/column of windows is aligned to the raster edge (full-size windows); without
    it windows start every ``window - overlap`` px and the last ones are clipped at the edge (with ``overlap=0``:
    a partition of the raster). Windows are clipped when the raster is smaller than ``window``.
    """
    wh, ww = (window, window) if isinstance(window, int) else tuple(window)
    oh, ow = (overlap, overlap) if isinstance(overlap, int) else tuple(overlap)
    if oh >= wh or ow >= ww or min(wh, ww) <= 0:
        raise ValueError(f"overlap {overlap} must be smaller than window {window}")

    def starts(n: int, w: int, o: int) -> list[int]:
        if not align_last:
            return list(range(0, n, w - o))
        if n <= w:
            return [0]
        s = list(range(0, n - w, w - o))
        return s + [n - w]

    for r in starts(height, wh, oh):
        for c in starts(width, ww, ow):
            yield Window(c, r, min(ww, width - c), min(wh, height - r))


def three_bands(a: np.ndarray, path: Any = "raster") -> np.ndarray:
    """Band array ``(C, h, w)`` as 3 bands: grey repeated, RGBA and extra bands cut to RGB; errors name ``path``."""
    if a.shape[0] == 3:
        return a
    if a.shape[0] == 1:
        return np.repeat(a, 3, axis=0)
    if a.shape[0] > 3:
        return a[:3]
    raise ValueError(f"{path}: expected 1, 3 or 4 bands, got {a.shape[0]}")


#: The value of the ``_prob`` rasters' nodata pixels (outside [0, 1], so it cannot pass for a probability).
PROB_NODATA = -1.0
#: Rasters smaller than this on either side are refused.
MIN_RASTER_SIDE = 16


def raster_unit_scale(ds: Any, sample: int = 1024) -> float:
    """The divisor that brings a raster's values to [0, 1], checked on a decimated read; errors name the file.

    Integers: their type's maximum (uint8 255, uint16 65535); negative values are refused. Floats: 1 when the
    values lie in [0, 1], 255 when they lie in [0, 255] (8-bit data stored as float); other ranges and negative
    values are refused. NaN/Inf and nodata pixels are left out (they are treated as nodata). Rasters smaller than
    :data:`MIN_RASTER_SIDE` px on a side are refused.
    """
    if min(ds.height, ds.width) < MIN_RASTER_SIDE:
        raise ValueError(
            f"{ds.name}: raster of {ds.width}x{ds.height} px is too small (at least {MIN_RASTER_SIDE} px a side)."
        )
    dtype = np.dtype(ds.dtypes[0])
    shape = (ds.count, min(ds.height, sample), min(ds.width, sample))
    a = ds.read(out_shape=shape).astype(np.float64)
    ok = valid_pixels(a, ds.nodata)
    values = a[:, ok]
    lo = float(values.min()) if values.size else 0.0
    hi = float(values.max()) if values.size else 0.0
    if lo < 0:
        raise ValueError(
            f"{ds.name}: negative pixel values (down to {lo:g}); expected an image with values >= 0 "
            "(set the raster's nodata value if they mark missing data)."
        )
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"{ds.name}: unsupported pixel type {dtype}")
    if hi <= 1.0 + 1e-6:
        return 1.0
    if hi <= 255.0 + 1e-6:
        return 255.0
    raise ValueError(
        f"{ds.name}: float pixel values up to {hi:g}; expected reflectances in [0, 1] or 8-bit values in [0, 255]."
    )


def valid_pixels(a: np.ndarray, nodata: float | None) -> np.ndarray:
    """``(h, w)`` bool: pixels whose bands are all finite and not all equal to ``nodata``."""
    ok = np.isfinite(a).all(0) if np.issubdtype(a.dtype, np.floating) else np.ones(a.shape[1:], bool)
    if nodata is not None and not np.isnan(nodata):
        ok &= ~(a == nodata).all(0)
    return ok


def normalize_bands(
    a: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    path: Any,
    scale: float,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Band array ``(C, h, w)`` -> float32 ``(a / scale - mean) / std`` per band; pixels not ``valid`` are 0.

    ``scale`` is the raster's :func:`raster_unit_scale`. Values that fall outside [0, 1] after scaling (where
    valid) raise a ``ValueError`` naming ``path``.
    """
    unit = a.astype(np.float32) / np.float32(scale)
    if valid is not None:
        unit = np.where(valid[None], unit, 0.0).astype(np.float32)
    lo, hi = (float(unit.min()), float(unit.max())) if unit.size else (0.0, 0.0)
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(
            f"{path}: pixel values span [{lo * scale:g}, {hi * scale:g}], outside the expected [0, {scale:g}] "
            "(negative values, or a float raster whose scale changes between windows)."
        )
    out = (unit - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]
    if valid is not None:
        out[:, ~valid] = 0.0
    return out


def read_window(
    src: str | os.PathLike | Any, window: Window, pad: str | None = "constant", pad_value: float = 0
) -> np.ndarray:
    """Read ``window`` ``(C, h, w)`` from a path or an open dataset.

    Parts outside the raster are padded with ``np.pad`` mode ``pad`` (``"constant"``, ``"reflect"``, ...) so
    the result has the full window size; ``pad=None`` returns only the part inside the raster.
    """
    if isinstance(src, (str, os.PathLike)):
        with rasterio.open(src) as ds:
            return read_window(ds, window, pad, pad_value)
    r0, c0 = int(window.row_off), int(window.col_off)
    h, w = int(window.height), int(window.width)
    rr0, cc0 = max(r0, 0), max(c0, 0)
    rr1, cc1 = min(r0 + h, src.height), min(c0 + w, src.width)
    if rr1 <= rr0 or cc1 <= cc0:
        raise ValueError(
            f"{src.name}: window {window} does not intersect the raster {src.height}x{src.width}"
        )
    a = src.read(window=Window(cc0, rr0, cc1 - cc0, rr1 - rr0))
    if pad is None:
        return a
    widths = ((0, 0), (rr0 - r0, r0 + h - rr1), (cc0 - c0, c0 + w - cc1))
    if not any(p for pair in widths for p in pair):
        return a
    if pad == "constant":
        return np.pad(a, widths, mode="constant", constant_values=pad_value)
    return np.pad(a, widths, mode=pad)


@contextmanager
def create_like(
    src_path: str | os.PathLike,
    dst_path: str | os.PathLike,
    count: int,
    dtype: Any,
    nodata: float | None = None,
    block: int = 256,
    compress: str = "deflate",
) -> Iterator[Any]:
    """Open an output GeoTIFF with the georeferencing and size of ``src_path`` for window-by-window writing.

    Context manager yielding a rasterio dataset in write mode (tiled, compressed, ``BIGTIFF=IF_SAFER``);
    it is written to a temp file in the destination folder and moved to ``dst_path`` on success::

        with create_like("in.tif", "out.tif", count=1, dtype="uint8") as dst:
            for w in iter_windows(dst.height, dst.width, 1024):
                dst.write(pred_for(w), window=w)
    """
    with rasterio.open(src_path) as src:
        profile = src.profile.copy()
    profile.update(
        driver="GTiff",
        count=int(count),
        dtype=np.dtype(dtype).name,
        nodata=nodata,
        compress=compress,
        BIGTIFF="IF_SAFER",
    )
    profile.pop("photometric", None)
    if profile["height"] >= block and profile["width"] >= block:
        profile.update(tiled=True, blockxsize=block, blockysize=block)
    else:
        profile.update(tiled=False)
        profile.pop("blockxsize", None)
        profile.pop("blockysize", None)
    with atomic_path(dst_path, ".tif") as tmp, rasterio.open(tmp, "w", **profile) as dst:
        yield dst


def massroads_geotransform(
    tile_name: str, size: int = 1500
) -> tuple[float, float, float, float, float, float]:
    """True GDAL geotransform of a Massachusetts Roads tile ``EEEENNNN_15`` (EPSG:26986, metres).

    ``origin_x = EEEE*100 - 713.563826``, ``origin_y = NNNN*100 + 771.024778`` (rule from the
    ``geotiff_sample`` README); pixel size 1 m for the full 1500 px tile, ``1500 / size`` for a resized one.
    """
    stem = Path(str(tile_name)).name.split(".")[0]
    m = re.match(r"^(\d{4})(\d{4})_\d+", stem)
    if m is None:
        raise ValueError(f"{tile_name}: not a Massachusetts Roads tile name (expected EEEENNNN_15)")
    east, north = int(m.group(1)), int(m.group(2))
    px = 1500.0 / float(size)
    return (east * 100 - 713.563826, px, 0.0, north * 100 + 771.024778, 0.0, -px)


def write_georeferenced_tile(
    image_path: str | os.PathLike,
    out_path: str | os.PathLike,
    tile_name: str | None = None,
    nodata: float | None = None,
) -> str:
    """Write a Massachusetts Roads PNG/TIFF tile as a GeoTIFF with its true origin and CRS (EPSG:26986)."""
    from PIL import Image

    with Image.open(image_path) as im:
        a = np.asarray(im)
    a = a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0)
    if a.shape[1] != a.shape[2]:
        raise ValueError(f"{image_path}: tile is not square ({a.shape[1]}x{a.shape[2]})")
    gt = massroads_geotransform(tile_name or Path(image_path).stem, size=a.shape[1])
    return write_geotiff(out_path, a, transform=gt, crs=MASSROADS_CRS, nodata=nodata)
