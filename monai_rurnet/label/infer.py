"""A MONAI Label infer task for our bundles that writes 2D labels in the image's own orientation.

Needs the MONAI Label environment (``monailabel`` importable); the core environment never imports this module.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import numpy as np
import torch
from monai.transforms import LoadImaged
from monailabel.tasks.infer.bundle import BundleInferTask
from monailabel.transform.pre import LoadImageTensord
from PIL import Image

__all__ = ["RurnetBundleInferTask", "reader_reverses_axes", "write_label_png"]

logger = logging.getLogger(__name__)

REVERSE_KEY = "rurnet_reverse_indexing"
RASTER_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp")


def reader_reverses_axes(transforms: list[Any]) -> bool:
    """Whether the first image loader in ``transforms`` returns ``(W, H)`` arrays (MONAI's default for 2D).

    ``PILReader``/``ITKReader`` swap the two spatial axes unless built with ``reverse_indexing=False``; a loader
    with no explicit reader is taken to use the default (swapped) layout.
    """
    for t in transforms:
        loader = t.load_image_d if isinstance(t, LoadImageTensord) else t
        if isinstance(loader, LoadImaged):
            readers = [r for r in getattr(loader._loader, "readers", []) if hasattr(r, "reverse_indexing")]
            user = [r for r in readers if type(r).__name__ in {"PILReader", "ITKReader"}]
            if user:
                return bool(user[-1].reverse_indexing)
            return True
    return True


def write_label_png(
    pred: Any, image_path: str | None, reverse_indexing: bool, path: str | None = None
) -> str:
    """Write a 2D label map (``(1, *S)`` or ``S``) as an 8-bit PNG with the size of the image at ``image_path``.

    ``reverse_indexing`` says whether ``pred``'s spatial axes are ``(W, H)`` (MONAI's default) or ``(H, W)``.
    """
    arr = pred.detach().cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
    arr = np.squeeze(arr)
    if arr.ndim != 2:
        raise ValueError(f"Expected a 2D label map, got shape {tuple(np.shape(pred))}.")
    if reverse_indexing:
        arr = arr.T
    arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    out = Image.fromarray(np.ascontiguousarray(arr), mode="L")
    if image_path and os.path.isfile(image_path):
        with Image.open(image_path) as im:
            size = im.size  # (W, H)
        if out.size != size:
            logger.warning(f"Resizing label {out.size} to the image size {size} (nearest).")
            out = out.resize(size, Image.NEAREST)
    if path is None:
        fd, path = tempfile.mkstemp(suffix=".png")
        os.close(fd)
    out.save(path)
    return path


class RurnetBundleInferTask(BundleInferTask):
    """``BundleInferTask`` with safer defaults for our 2D bundles.

    * loads ``models/model.pt`` strictly (a config/weights mismatch fails instead of silently running a
      half-initialised network);
    * 2D raster inputs: skips MONAI Label's ``Restored`` (it resizes to the reader's ``spatial_shape``, which is
      ``(W, H)`` even when the bundle's ``PILReader(reverse_indexing=False)`` yields ``(H, W)`` arrays) and writes
      the label as a uint8 PNG of the input's size and orientation, whatever the bundle's reader does.
    """

    def __init__(self, path: str, conf: dict[str, str], **kwargs: Any) -> None:
        kwargs.setdefault("load_strict", True)
        kwargs.setdefault("add_post_restore", False)
        super().__init__(path, conf, **kwargs)

    def pre_transforms(self, data: dict[str, Any] | None = None) -> list[Any]:
        pre = list(super().pre_transforms(data))
        if data is not None:
            data[REVERSE_KEY] = reader_reverses_axes(pre)
        return pre

    def writer(
        self, data: dict[str, Any], extension: str | None = None, dtype: Any = None
    ) -> tuple[Any, Any]:
        image_path = data.get("image_path")
        ext = os.path.splitext(str(image_path or ""))[1].lower()
        pred = data.get(self.output_label_key)
        spatial = np.squeeze(np.asarray(pred.shape)) if pred is not None else None
        is_2d = pred is not None and len([s for s in pred.shape if s != 1]) == 2 and len(pred.shape) <= 3
        if self.dimension != 2 or not is_2d or (ext and ext not in RASTER_EXTS):
            logger.info(
                f"Using MONAI Label's writer (dimension={self.dimension}, shape={spatial}, ext={ext!r})."
            )
            return super().writer(data, extension=extension, dtype=dtype)
        if self.labels is not None:
            data["labels"] = self.labels
        path = write_label_png(pred, image_path, bool(data.get(REVERSE_KEY, True)))
        return path, data.get(self.output_json_key, {})
