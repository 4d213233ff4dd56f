"""One image through a bundle's own inference runner, as a MONAI Label label (``0`` background, ``1`` foreground).

The label is the bundle CLI's ``<stem>_seg`` output pixel for pixel: :class:`BundleSegmenter` builds the
``evaluator`` (the runner) of the bundle's ``configs/inference.json`` (the object ``python -m monai.bundle run`` runs) once,
points it at a one-image folder per call and converts ``_seg`` (0/255) to label indices. A GeoTIFF input gets a
GeoTIFF label with its CRS and geotransform; everything else a PNG. Needs torch/MONAI, not MONAI Label.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from monai_rurnet.utils import atomic_write

__all__ = ["GEO_SUFFIXES", "BundleSegmenter", "seg_to_label", "file_signature", "sha256_file"]

GEO_SUFFIXES = (".tif", ".tiff")
logger = logging.getLogger(__name__)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_signature(path: str | os.PathLike) -> tuple[int, int]:
    """``(mtime_ns, size)`` of a file: changes whenever the file is replaced."""
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


def _read_seg(seg_path: Path) -> tuple[np.ndarray, dict[str, Any] | None]:
    """The ``(H, W)`` seg array and, for a TIFF, its rasterio profile (CRS, transform)."""
    if seg_path.suffix.lower() in GEO_SUFFIXES:
        import rasterio

        with rasterio.open(seg_path) as src:
            return src.read(1), dict(src.profile)
    with Image.open(seg_path) as im:
        return np.asarray(im), None


def seg_to_label(
    seg_path: str | os.PathLike, image_path: str | os.PathLike, out_dir: str | os.PathLike
) -> Path:
    """Write the 0/255 ``seg_path`` as a uint8 0/1 label in ``out_dir``, named after ``image_path``.

    A TIFF seg of a TIFF image becomes a GeoTIFF (same CRS and transform), anything else a PNG.
    """
    seg, profile = _read_seg(Path(seg_path))
    if seg.ndim != 2:
        raise ValueError(f"{seg_path}: expected a single-band seg output, got shape {seg.shape}")
    label = (seg > 0).astype(np.uint8)
    image_path = Path(image_path)
    geo = profile is not None and image_path.suffix.lower() in GEO_SUFFIXES
    out = Path(out_dir) / f"{image_path.stem}{'.tif' if geo else '.png'}"
    if geo:
        import rasterio

        profile.update(count=1, dtype="uint8", nodata=None, driver="GTiff")

        def _write(tmp: str) -> None:
            with rasterio.open(tmp, "w", **profile) as dst:
                dst.write(label[None])

        atomic_write(out, _write)
    else:
        atomic_write(out, lambda tmp: Image.fromarray(label, mode="L").save(tmp, format="PNG"))
    return out


class BundleSegmenter:
    """A bundle's inference ``runner`` kept in memory, reloaded when its weights file changes.

    Args:
        bundle_dir: the bundle (its ``configs/inference.json`` is read, never written).
        model_file: the weights to use (default the bundle's ``models/model.pt``).
        overrides: more config overrides (e.g. ``{"device": "$torch.device('cpu')"}``).

    The runner reads a private one-image folder and writes a private output folder, both under a temporary
    folder that exists only during a call. ``segment(image, out_dir)`` is thread-safe (one image at a time).
    """

    def __init__(
        self,
        bundle_dir: str | os.PathLike,
        model_file: str | os.PathLike | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        self.bundle_dir = Path(bundle_dir).resolve()
        self.config_file = self.bundle_dir / "configs" / "inference.json"
        if not self.config_file.is_file():
            raise FileNotFoundError(f"{self.config_file}: the bundle has no inference config.")
        self.model_file = Path(model_file or self.bundle_dir / "models" / "model.pt").resolve()
        self.overrides = dict(overrides or {})
        self._lock = threading.Lock()
        self._work: Path | None = None
        self._runner: Any = None
        self._signature: tuple[int, int] | None = None
        #: SHA-256 of the weights file when the runner loaded it (``None`` before the first call).
        self.weights_sha256: str | None = None

    def _build(self, in_dir: Path, out_dir: Path) -> Any:
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config(str(self.config_file))
        parser.update(
            {
                "bundle_root": str(self.bundle_dir),
                "model_file": str(self.model_file),
                "dataset_dir": str(in_dir),
                "output_dir": str(out_dir),
                "overwrite": True,
                "progress": False,
                **self.overrides,
            }
        )
        return parser.get_parsed_content("evaluator", instantiate=True)

    def _folders(self) -> tuple[Path, Path]:
        """Empty ``in``/``out`` folders under the private folder (same paths each call: the runner keeps them)."""
        if self._work is None:
            self._work = Path(tempfile.mkdtemp(prefix=f"rurnet-{self.bundle_dir.name}-"))
        in_dir, out_dir = self._work / "in", self._work / "out"
        for d in (in_dir, out_dir):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
        return in_dir, out_dir

    def _current_runner(self, in_dir: Path, out_dir: Path) -> Any:
        if not self.model_file.is_file():
            raise FileNotFoundError(f"{self.model_file}: weights file not found.")
        signature = file_signature(self.model_file)
        if self._runner is None or signature != self._signature:
            logger.info(f"Loading {self.bundle_dir.name} with {self.model_file}")
            self._runner = self._build(in_dir, out_dir)
            self._signature = signature
            self.weights_sha256 = sha256_file(self.model_file)
        return self._runner

    def _set_guidance(
        self, runner: Any, image: Path, prior: np.ndarray | None, strokes: np.ndarray | None
    ) -> None:
        """Point the runner at this call's prior/strokes folders (``None``: none, as for a plain request)."""
        if not hasattr(runner, "strokes_dir"):
            if prior is not None or strokes is not None:
                raise RuntimeError(f"the {self.bundle_dir.name} bundle's runner takes no prior or strokes.")
            return
        from monai_rurnet.label.refine import write_guidance
        from monai_rurnet.runners.geotiff import GeoTiffSegmentationRunner

        geotiff = isinstance(runner, GeoTiffSegmentationRunner)
        runner.prior_dir, runner.strokes_dir = write_guidance(self._work, image, prior, strokes, geotiff)

    def segment(
        self,
        image: str | os.PathLike,
        out_dir: str | os.PathLike,
        prior: np.ndarray | None = None,
        strokes: np.ndarray | None = None,
    ) -> Path:
        """Segment ``image`` with the bundle's runner (reloading the weights when the file changed); returns the
        label file written in ``out_dir``.

        ``prior`` (boolean ``(H, W)``, the current label) and ``strokes`` (``uint8`` 0/1/2) refine it: they are
        written as the CLI's ``--prior_dir``/``--strokes_dir`` files (:func:`~monai_rurnet.label.refine.write_guidance`,
        GeoTIFFs on the raster's grid for a TIFF study of a GeoTIFF runner) in the private folder for this call.
        """
        image = Path(image)
        if not image.is_file():
            raise FileNotFoundError(f"{image}: image not found.")
        with self._lock:
            in_dir, seg_dir = self._folders()
            try:
                os.symlink(image.resolve(), in_dir / image.name)
                runner = self._current_runner(in_dir, seg_dir)
                self._set_guidance(runner, image, prior, strokes)
                try:
                    summary = runner.run()
                except SystemExit as e:  # the runner's "some images failed" exit; the cause is in the log
                    raise RuntimeError(
                        f"{image.name}: the {self.bundle_dir.name} bundle could not segment it."
                    ) from e
                segs = sorted(seg_dir.glob(f"{image.stem}_seg.*"))
                if not segs or not summary.get("done"):
                    raise RuntimeError(
                        f"{image.name}: the {self.bundle_dir.name} bundle wrote no _seg output."
                    )
                return seg_to_label(segs[0], image, out_dir)
            finally:
                shutil.rmtree(in_dir.parent, ignore_errors=True)  # recreated by the next call
