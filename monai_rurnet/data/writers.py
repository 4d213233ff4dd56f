"""Writers of the runners' outputs: PNG mask/probability/overlay and window-by-window GeoTIFF mask/probability.

Every file is written to a temp file beside it and renamed in (the ``_seg`` file last, so its presence marks a
finished input).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from monai_rurnet.data.geotiff import PROB_NODATA, create_like
from monai_rurnet.utils import atomic_write

__all__ = ["overlay_image", "save_png", "PngMaskWriter", "GeoTiffMaskWriter"]


def overlay_image(rgb: np.ndarray, seg: np.ndarray, color: tuple[int, int, int] = (0, 255, 0)) -> np.ndarray:
    """Blend a binary mask (H, W) in ``color`` over an RGB uint8 image (H, W, 3)."""
    out = rgb.astype(np.float32).copy()
    m = seg.astype(bool)
    out[m] = 0.45 * out[m] + 0.55 * np.asarray(color, np.float32)
    return out.clip(0, 255).astype(np.uint8)


def save_png(array: np.ndarray, path: str | Path) -> None:
    """Write a uint8 array as a PNG atomically."""
    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


class PngMaskWriter:
    """Writes ``<stem>_seg.png`` (0/255), ``<stem>_prob.png`` (probability x 255) and ``<stem>_overlay.png``."""

    def __init__(self, threshold: float = 0.5, overlay: bool = True, prob: bool = True) -> None:
        self.threshold = threshold
        self.overlay = overlay
        self.prob = prob

    def outputs(self, src: Path, out_dir: Path) -> list[Path]:
        """The files written for input ``src``, the ``_seg`` file first."""
        names = [f"{src.stem}_seg.png"]
        if self.prob:
            names.append(f"{src.stem}_prob.png")
        if self.overlay:
            names.append(f"{src.stem}_overlay.png")
        return [out_dir / n for n in names]

    def write(self, src: Path, out_dir: Path, prob: np.ndarray, display: np.ndarray | None) -> None:
        """``prob`` (H, W) in [0, 1]; ``display`` (H, W, 3) uint8 or None (no overlay then)."""
        seg = (prob >= self.threshold).astype(np.uint8) * 255
        paths = self.outputs(src, out_dir)
        if self.overlay and display is not None:
            save_png(overlay_image(display, seg > 0), paths[-1])
        if self.prob:
            save_png(np.round(prob * 255.0).clip(0, 255).astype(np.uint8), paths[1])
        save_png(seg, paths[0])


class GeoTiffMaskWriter:
    """Writes ``<stem>_seg.tif`` (uint8 0/255) and ``<stem>_prob.tif`` (float32, nodata tag
    :data:`~monai_rurnet.data.geotiff.PROB_NODATA`) window by window, with the input's size, CRS and
    geotransform. Nodata pixels (probability ``PROB_NODATA``) are 0 in ``_seg``."""

    def __init__(self, threshold: float = 0.5, prob: bool = True) -> None:
        self.threshold = threshold
        self.prob = prob

    def outputs(self, src: Path, out_dir: Path) -> list[Path]:
        """The files written for input ``src``, the ``_seg`` file first."""
        stem = Path(src).stem
        names = [f"{stem}_seg.tif"] + ([f"{stem}_prob.tif"] if self.prob else [])
        return [Path(out_dir) / n for n in names]

    @contextmanager
    def open(self, src: Path, out_dir: Path) -> Iterator[Any]:
        """Context manager yielding ``write(prob, window)`` for a probability window ``(h, w)``; the files are
        renamed in on exit (probability first, the mask last)."""
        paths = self.outputs(src, out_dir)
        with ExitStack() as stack:
            seg = stack.enter_context(create_like(src, paths[0], count=1, dtype="uint8"))
            prob = (
                stack.enter_context(create_like(src, paths[1], count=1, dtype="float32", nodata=PROB_NODATA))
                if self.prob
                else None
            )

            def write(p: np.ndarray, window: Any) -> None:
                seg.write(((p >= self.threshold).astype(np.uint8) * 255)[None], window=window)
                if prob is not None:
                    prob.write(p[None].astype(np.float32), window=window)

            yield write
