"""Input-checking transforms shared by training, evaluation and inference pipelines."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from PIL import Image as PILImage

__all__ = ["EnsureChannelsd", "ToUnitRanged", "InvalidImageError", "pil_standard_mode"]


class InvalidImageError(ValueError):
    """An input image that cannot be segmented; the message names the file and the cause."""


def _name(data: Mapping, key: Hashable) -> str:
    img = data[key]
    meta = getattr(img, "meta", {}) or {}
    return str(meta.get("filename_or_obj", data.get(f"{key}_path", key)))


class EnsureChannelsd(MapTransform):
    """Make a channel-first image have ``channels`` channels where the conversion is unambiguous.

    1 -> 3: grey replicated; 4 -> 3: alpha dropped; 3 -> 1: luminance (ITU-R 601); anything else raises
    :class:`InvalidImageError` naming the file.
    """

    def __init__(self, keys: KeysCollection, channels: int = 3, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.channels = channels

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            c = img.shape[0]
            if c == self.channels:
                continue
            if self.channels == 3 and c == 1:
                d[key] = img.repeat(3, *([1] * (img.dim() - 1)))
            elif self.channels == 3 and c == 4:
                d[key] = img[:3]
            elif self.channels == 1 and c in (3, 4):
                w = torch.tensor([0.299, 0.587, 0.114], dtype=img.dtype, device=img.device)
                d[key] = (img[:3] * w.view(3, *([1] * (img.dim() - 1)))).sum(0, keepdim=True)
            else:
                raise InvalidImageError(
                    f"{_name(d, key)}: image has {c} channels, expected {self.channels} (or a grey/RGB/RGBA image "
                    "that converts unambiguously)."
                )
        return d


class ToUnitRanged(MapTransform):
    """Scale intensities to ``[0, 1]`` from the range their values imply, and reject bad images.

    Values above 255 are taken as 16-bit (divided by 65535), values above 1 as 8-bit (divided by 255); float
    images already in ``[0, 1]`` are kept. NaN/Inf, negative values and images smaller than ``min_size``
    raise :class:`InvalidImageError` naming the file.
    """

    def __init__(self, keys: KeysCollection, min_size: int = 16, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.min_size = min_size

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            name = _name(d, key)
            spatial = tuple(int(s) for s in img.shape[1:])
            if min(spatial, default=0) < self.min_size:
                raise InvalidImageError(
                    f"{name}: image size {spatial} is too small (minimum {self.min_size} px)."
                )
            img = img.float()
            if not bool(torch.isfinite(img).all()):
                raise InvalidImageError(f"{name}: image contains NaN or Inf values.")
            lo, hi = float(img.min()), float(img.max())
            if lo < 0:
                raise InvalidImageError(
                    f"{name}: image has negative intensities (min {lo}); expected 0..255/65535."
                )
            scale = 65535.0 if hi > 255.0 else 255.0 if hi > 1.0 else 1.0
            d[key] = img / scale
        return d


def pil_standard_mode(image):
    """PIL converter for ``PILReader(converter=...)``: palette, CMYK and LA/PA images become RGB/L/RGBA so
    intensities, not palette indices, are read; other modes are returned unchanged."""
    tags = getattr(image, "tag_v2", None)
    samples = int(tags.get(277, 1)) if tags is not None else 1  # TIFF SamplesPerPixel
    if samples == 2 and image.mode == "L":
        # PIL reads only the first of two bands; return both channels' worth so that EnsureChannelsd rejects the
        # file by name (raising here would make MONAI's LoadImage silently fall back to another reader).
        return PILImage.merge("LA", (image, image))
    if image.mode in ("P", "PA"):
        return image.convert("RGBA" if "transparency" in image.info or image.mode == "PA" else "RGB")
    if image.mode == "CMYK":
        return image.convert("RGB")
    if image.mode == "LA":
        return image.convert("L")
    return image
