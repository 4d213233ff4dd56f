"""Massachusetts Roads datalist and void (white pixel) handling."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["MASSROADS_HELP", "massroads_datalist", "void_mask", "MarkVoidd", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


def _by_stem(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


#: where Massachusetts Roads comes from and the layout the readers expect (in the error when it is missing).
MASSROADS_HELP = (
    "Massachusetts Roads (Mnih 2013) is at https://www.cs.toronto.edu/~vmnih/data/ (also mirrored on Kaggle as "
    "balraj98/massachusetts-roads-dataset). Expected layout: MassRoads/train/sat/<tile>.png (or .tiff) and "
    "MassRoads/train/map/<tile>.png (or .tif), matched by tile name (e.g. 10078660_15); valid/ likewise. "
    "Pass its folder to the train/evaluate command with --dataset_dir /path/to/MassRoads."
)


def massroads_datalist(
    root: str | Path, split: str = "train", ids: Iterable[str] | None = None
) -> list[dict[str, str]]:
    """List Massachusetts Roads tiles ``root/{split}/sat/<tile>.*`` + ``root/{split}/map/<tile>.*`` by stem.

    Returns ``[{"image", "label"}]`` (``label`` omitted when the ``map`` folder is absent). ``ids`` keeps
    only the given tile names (e.g. ``["10228690_15"]``). Note ``valid/sat`` may be 1024 px while
    ``valid/map`` is 1500 px: use ``ResizeToImaged``/``roads_eval_transforms`` (nearest) to match them.
    """
    base = Path(root) / split
    sat, lab = base / "sat", base / "map"
    if not sat.is_dir():
        raise FileNotFoundError(f"{sat}: Massachusetts Roads image folder not found. {MASSROADS_HELP}")
    images = _by_stem(sat)
    if not images:
        raise FileNotFoundError(f"{sat}: no images (*.png/*.tif/*.jpg) found")
    labels = _by_stem(lab) if lab.is_dir() else {}
    keep = None if ids is None else {str(i) for i in ids}
    if keep is not None:
        missing = sorted(keep - set(images))
        if missing:
            raise FileNotFoundError(f"{sat}: no image for tiles {missing}")
    out = []
    for stem, p in images.items():
        if keep is not None and stem not in keep:
            continue
        item = {"image": str(p)}
        if labels:
            if stem not in labels:
                raise FileNotFoundError(f"{lab}: no label for image {p.name}")
            item["label"] = str(labels[stem])
        out.append(item)
    return out


def void_mask(image: np.ndarray | torch.Tensor, channel_dim: int = 0, value: float = 255) -> np.ndarray:
    """Bool mask of void pixels (all channels == ``value``, i.e. white in 0..255 images).

    ``image`` is channel-first ``(C, H, W)`` by default; returns ``(H, W)``.
    """
    a = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if a.ndim == 2:
        return a == value
    return np.all(a == value, axis=channel_dim)


class MarkVoidd(MapTransform):
    """Add ``void_key``: a bool ``(1, H, W)`` mask of white void pixels of ``keys`` (channel-first, 0..255).

    Apply before intensity scaling. The mask keeps the image's type (``MetaTensor`` in, ``MetaTensor`` out).
    """

    def __init__(
        self, keys: KeysCollection = "image", void_key: str = "void", allow_missing_keys: bool = False
    ):
        super().__init__(keys, allow_missing_keys)
        self.void_key = void_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            if isinstance(img, torch.Tensor):
                v = torch.all(img == 255, dim=0, keepdim=True)
                if hasattr(img, "copy_meta_from"):
                    from monai.data import MetaTensor

                    v = MetaTensor(v, meta=dict(img.meta), applied_operations=list(img.applied_operations))
                d[self.void_key] = v
            else:
                d[self.void_key] = void_mask(img)[None]
        return d
