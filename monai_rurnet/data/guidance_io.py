"""Read the files of interactive refinement: a prior mask and the annotator's strokes, per input stem.

File formats (the bundles' ``--prior_dir`` / ``--strokes_dir``; encodings of :mod:`monai_rurnet.networks.guidance`):

* prior, ``<stem>_prob.*`` (preferred when both exist) or ``<stem>_seg.*``, ``.tif``/``.tiff`` before ``.png``:
  an earlier run's output. One band; 8-bit values are divided by 255 (``_prob.png`` probability x 255,
  ``_seg`` 0/255), 16-bit by 65535; float values must lie in [0, 1] (the massroads ``_prob.tif``), its nodata
  pixels (and NaN) mean "no prior here" (:data:`~monai_rurnet.networks.guidance.NO_PRIOR`).
* strokes, ``<stem>_strokes.tif``/``.tiff``/``.png``: one integer band, 0 no stroke, 1 background, 2 foreground;
  holds all strokes so far. Two stroke files for one stem are an error.

Both have the image's size; a georeferenced file must share a georeferenced image's CRS and geotransform.
Every error is a ``ValueError`` (``FileNotFoundError`` for a missing folder or file) naming the file.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from monai_rurnet.data.geotiff import read_window
from monai_rurnet.networks.guidance import NO_PRIOR, STROKE_BACKGROUND, STROKE_FOREGROUND, STROKE_NONE

__all__ = [
    "PRIOR_SUFFIXES",
    "STROKES_SUFFIXES",
    "GuidanceFiles",
    "GuidanceRasters",
    "read_prior",
    "read_strokes",
]

#: names of a stem's prior, in order of preference (the first that exists is used).
PRIOR_SUFFIXES = (
    "_prob.tif", "_prob.tiff", "_prob.png", "_seg.tif", "_seg.tiff", "_seg.png",
)  # fmt: skip
#: names of a stem's stroke file (at most one may exist).
STROKES_SUFFIXES = ("_strokes.tif", "_strokes.tiff", "_strokes.png")
_STROKE_VALUES = (STROKE_NONE, STROKE_BACKGROUND, STROKE_FOREGROUND)


def _open(path: str | os.PathLike, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} file not found.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(path)
    except rasterio.errors.RasterioIOError as e:
        raise ValueError(f"{path}: cannot read the {what} file ({e}).") from e
    if ds.count != 1:
        ds.close()
        raise ValueError(f"{path}: a {what} file must have one band (grey), got {ds.count}.")
    return ds


def _check_size(ds: Any, shape: Sequence[int], what: str) -> None:
    if (ds.height, ds.width) != tuple(int(s) for s in shape):
        raise ValueError(
            f"{ds.name}: {what} of {ds.width}x{ds.height} px, but the image is {shape[1]}x{shape[0]} px "
            "(width x height); it must have the image's size."
        )


def _decode_prior(a: np.ndarray, nodata: float | None, path: Any) -> np.ndarray:
    """Foreground probability float32 ``(h, w)`` of one band ``a``; nodata/NaN pixels -> ``NO_PRIOR``."""
    missing = ~np.isfinite(a) if a.dtype.kind == "f" else np.zeros(a.shape, bool)
    if nodata is not None and not np.isnan(nodata):
        missing |= a == nodata
    if a.dtype.kind in "ub":
        p = a.astype(np.float32) / (np.float32(np.iinfo(a.dtype).max) if a.dtype.kind == "u" else 1.0)
    elif a.dtype.kind == "f":
        p = a.astype(np.float32)
        bad = ~missing & ((p < 0) | (p > 1))
        if bad.any():
            raise ValueError(
                f"{path}: prior values outside [0, 1] (e.g. {float(p[bad][0]):g}); expected foreground "
                "probabilities (set the raster's nodata value for pixels without a prior)."
            )
    else:
        raise ValueError(f"{path}: prior of pixel type {a.dtype} is not supported (uint8, uint16 or float).")
    p[missing] = NO_PRIOR
    return p


def _check_strokes(a: np.ndarray, path: Any) -> np.ndarray:
    """The stroke map ``a`` as uint8 after checking its values are 0/1/2."""
    if a.dtype.kind not in "uib":
        raise ValueError(f"{path}: strokes must be an integer image (uint8 0/1/2), got pixel type {a.dtype}.")
    values = np.unique(a)
    bad = [int(v) for v in values if v not in _STROKE_VALUES]
    if bad:
        raise ValueError(
            f"{path}: stroke values {bad[:5]} are not allowed; expected 0 (no stroke), 1 (background) or "
            "2 (foreground)."
        )
    return a.astype(np.uint8)


def read_prior(path: str | os.PathLike, shape: Sequence[int]) -> np.ndarray:
    """The prior of ``path`` as float32 ``(H, W)`` foreground probability in [0, 1] (``NO_PRIOR``, -1, on the
    file's nodata pixels); ``shape`` is the image's ``(H, W)``. See the module docstring for the formats."""
    with _open(path, "prior") as ds:
        _check_size(ds, shape, "prior")
        return _decode_prior(ds.read(1), ds.nodata, path)


def read_strokes(path: str | os.PathLike, shape: Sequence[int]) -> np.ndarray:
    """The stroke map of ``path`` as uint8 ``(H, W)`` (0 none, 1 background, 2 foreground); ``shape`` is the
    image's ``(H, W)``."""
    with _open(path, "strokes") as ds:
        _check_size(ds, shape, "strokes")
        return _check_strokes(ds.read(1), path)


def _find(folder: Path, stem: str, suffixes: Sequence[str]) -> list[Path]:
    return [folder / f"{stem}{s}" for s in suffixes if (folder / f"{stem}{s}").is_file()]


class GuidanceFiles:
    """The prior and stroke files of each input stem in ``prior_dir`` / ``strokes_dir`` (either may be ``None``).

    Raises ``FileNotFoundError`` naming a folder that does not exist.
    """

    def __init__(self, prior_dir: str | os.PathLike | None, strokes_dir: str | os.PathLike | None) -> None:
        self.prior_dir = None if prior_dir is None else Path(prior_dir)
        self.strokes_dir = None if strokes_dir is None else Path(strokes_dir)
        for name, folder in (("prior_dir", self.prior_dir), ("strokes_dir", self.strokes_dir)):
            if folder is not None and not folder.is_dir():
                raise FileNotFoundError(f"{folder}: {name} folder does not exist.")

    def __bool__(self) -> bool:
        return self.prior_dir is not None or self.strokes_dir is not None

    def prior(self, stem: str) -> Path | None:
        """The prior file of ``stem`` (``_prob`` before ``_seg``), or ``None``."""
        found = _find(self.prior_dir, stem, PRIOR_SUFFIXES) if self.prior_dir is not None else []
        return found[0] if found else None

    def strokes(self, stem: str) -> Path | None:
        """The stroke file of ``stem``, or ``None``; two of them raise a ``ValueError``."""
        found = _find(self.strokes_dir, stem, STROKES_SUFFIXES) if self.strokes_dir is not None else []
        if len(found) > 1:
            raise ValueError(
                f"{len(found)} stroke files for '{stem}': {', '.join(map(str, found))}; keep one."
            )
        return found[0] if found else None

    def paths(self, stem: str) -> list[Path]:
        """The guidance files of ``stem`` (prior, strokes) that exist."""
        return [p for p in (self.prior(stem), self.strokes(stem)) if p is not None]

    def _listed(self) -> list[tuple[Path, str]]:
        """``(file, stem)`` of every file of the folders named like a prior or stroke file."""
        out = []
        for folder, suffixes in ((self.prior_dir, PRIOR_SUFFIXES), (self.strokes_dir, STROKES_SUFFIXES)):
            if folder is None:
                continue
            for p in sorted(folder.iterdir()):
                suffix = next((s for s in suffixes if p.name.endswith(s)), None)
                if suffix is not None:
                    out.append((p, p.name[: -len(suffix)]))
        return out

    def orphans(self, stems: Iterable[str]) -> list[Path]:
        """Guidance files whose stem is none of ``stems`` (no input image to refine)."""
        known = set(stems)
        return [p for p, stem in self._listed() if stem not in known]

    def files_of(self, stems: Iterable[str]) -> set[Path]:
        """The (resolved) guidance files of ``stems``: not inputs themselves when a folder is the input folder."""
        known = set(stems)
        return {p.resolve() for p, stem in self._listed() if stem in known}


class GuidanceRasters:
    """A prior and/or stroke raster on an image raster's grid, read window by window (context manager).

    Args:
        image: the open image dataset (rasterio); its size, and its CRS and geotransform when both it and the
            guidance file are georeferenced, must match (``ValueError`` naming the file otherwise).
        prior, strokes: paths, or ``None``.
    """

    def __init__(
        self, image: Any, prior: str | os.PathLike | None, strokes: str | os.PathLike | None
    ) -> None:
        self.prior = self.strokes = None
        try:
            if prior is not None:
                self.prior = _open(prior, "prior")
                self._check_grid(self.prior, image, "prior")
            if strokes is not None:
                self.strokes = _open(strokes, "strokes")
                self._check_grid(self.strokes, image, "strokes")
        except Exception:
            self.close()
            raise

    @staticmethod
    def _check_grid(ds: Any, image: Any, what: str) -> None:
        _check_size(ds, (image.height, image.width), what)
        if ds.crs is not None and image.crs is not None and ds.crs != image.crs:
            raise ValueError(f"{ds.name}: {what} CRS {ds.crs} differs from the image's ({image.crs}).")
        georeferenced = ds.crs is not None and image.crs is not None
        if georeferenced and not ds.transform.almost_equals(image.transform):
            raise ValueError(
                f"{ds.name}: {what} geotransform {tuple(ds.transform)[:6]} differs from the image's "
                f"{tuple(image.transform)[:6]}: it must share the raster's grid."
            )

    def read(self, window: Window) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(prior, strokes)`` of ``window`` (the part inside the raster), each ``None`` when not given."""
        prior = strokes = None
        if self.prior is not None:
            prior = _decode_prior(
                read_window(self.prior, window, pad=None)[0], self.prior.nodata, self.prior.name
            )
        if self.strokes is not None:
            strokes = _check_strokes(read_window(self.strokes, window, pad=None)[0], self.strokes.name)
        return prior, strokes

    def close(self) -> None:
        for ds in (self.prior, self.strokes):
            if ds is not None:
                ds.close()

    def __enter__(self) -> GuidanceRasters:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
