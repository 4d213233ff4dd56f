"""Datalists and field-of-view (FOV) helpers for retinal vessel datasets (DRIVE, CHASE_DB1, STARE)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from scipy import ndimage

__all__ = [
    "DRIVE_HELP",
    "drive_datalist",
    "chase_datalist",
    "stare_datalist",
    "fov_mask_from_image",
    "fov_diameter",
]


#: where DRIVE comes from and the layout the readers expect (in the error when it is missing).
DRIVE_HELP = (
    "DRIVE (Staal et al. 2004) is distributed, after registration, at https://drive.grand-challenge.org/. "
    "Expected layout: DRIVE/training/images/21_training.tif, DRIVE/training/1st_manual/21_manual1.gif, "
    "DRIVE/training/mask/21_training_mask.gif (ids 21-40; test/ likewise with 01_test.tif, no labels). "
    "Pass its folder to the train/evaluate command with --dataset_dir /path/to/DRIVE."
)


def _check_dir(folder: Path, what: str, help: str = "") -> None:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: {what} folder not found. {help}".rstrip())


def _leading_id(name: str) -> int | None:
    m = re.match(r"(\d+)", name)
    return int(m.group(1)) if m else None


def drive_datalist(
    root: str | Path, split: str = "training", ids: Iterable[int] | None = None
) -> list[dict[str, str]]:
    """List DRIVE cases as ``{"image", "label", "mask"}`` dicts (``label`` omitted when absent, e.g. test).

    Layout: ``root/{training,test}/images/21_training.tif``, ``1st_manual/21_manual1.gif``,
    ``mask/21_training_mask.gif``. ``ids`` keeps only the given numeric ids (e.g. ``[21, 22]``).
    """
    if split not in ("training", "test"):
        raise ValueError(f"{root}: DRIVE split must be 'training' or 'test', got {split!r}")
    base = Path(root) / split
    img_dir, lab_dir, mask_dir = base / "images", base / "1st_manual", base / "mask"
    _check_dir(img_dir, "DRIVE images", DRIVE_HELP)
    files = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in (".tif", ".tiff", ".png"))
    if not files:
        raise FileNotFoundError(f"{img_dir}: no DRIVE images (*.tif) found")
    keep = None if ids is None else {int(i) for i in ids}
    out: list[dict[str, str]] = []
    for p in files:
        num = _leading_id(p.name)
        if num is None or (keep is not None and num not in keep):
            continue
        item = {"image": str(p)}
        lab = lab_dir / f"{num:02d}_manual1.gif"
        if lab.is_file():
            item["label"] = str(lab)
        elif split == "training":
            raise FileNotFoundError(f"{lab}: label for image {p.name} not found")
        mask = mask_dir / f"{num:02d}_{split}_mask.gif"
        if not mask.is_file():
            raise FileNotFoundError(f"{mask}: FOV mask for image {p.name} not found")
        item["mask"] = str(mask)
        out.append(item)
    if keep is not None:
        found = {_leading_id(Path(d["image"]).name) for d in out}
        missing = sorted(keep - found)
        if missing:
            raise FileNotFoundError(f"{img_dir}: no image for DRIVE ids {missing}")
    return out


def chase_datalist(root: str | Path, observer: int = 1) -> list[dict[str, str]]:
    """List CHASE_DB1 cases (flat folder ``Image_01L.jpg`` + ``Image_01L_1stHO.png``) as ``{"image", "label"}``.

    There is no FOV mask: compute it from the image (:func:`fov_mask_from_image`).
    """
    root = Path(root)
    _check_dir(root, "CHASE_DB1")
    tag = {1: "1stHO", 2: "2ndHO"}[observer]
    out = []
    for p in sorted(root.glob("Image_*.jpg")):
        lab = p.with_name(f"{p.stem}_{tag}.png")
        if not lab.is_file():
            raise FileNotFoundError(f"{lab}: label for image {p.name} not found")
        out.append({"image": str(p), "label": str(lab)})
    if not out:
        raise FileNotFoundError(f"{root}: no CHASE_DB1 images (Image_*.jpg) found")
    return out


def stare_datalist(root: str | Path, observer: str = "ah") -> list[dict[str, str]]:
    """List STARE cases ``im0001.ppm`` + ``im0001.ah.ppm`` as ``{"image", "label"}``.

    Supports a flat folder or ``root/images`` + ``root/labels-ah`` (``labels-vk`` for ``observer="vk"``);
    ``.gz``-free files only. No FOV mask: compute it from the image.
    """
    root = Path(root)
    _check_dir(root, "STARE")
    img_dir, lab_dir = (
        (root / "images", root / f"labels-{observer}") if (root / "images").is_dir() else (root, root)
    )
    out = []
    for p in sorted(img_dir.glob("im*.ppm")):
        if p.name.count(".") > 1:  # skip label files in the flat layout
            continue
        lab = lab_dir / f"{p.stem}.{observer}.ppm"
        if not lab.is_file():
            raise FileNotFoundError(f"{lab}: label for image {p.name} not found")
        out.append({"image": str(p), "label": str(lab)})
    if not out:
        raise FileNotFoundError(f"{img_dir}: no STARE images (im*.ppm) found")
    return out


def _to_channel_first(image: np.ndarray, channel_dim: int | None) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 2:
        return a[None]
    if a.ndim != 3:
        raise ValueError(f"image must be 2D or 3D, got shape {a.shape}")
    if channel_dim is None:
        channel_dim = 0 if a.shape[0] <= 4 else -1
    return np.moveaxis(a, channel_dim, 0)


def fov_mask_from_image(
    image: np.ndarray,
    threshold: float | None = None,
    erosion: int = 1,
    channel_dim: int | None = 0,
) -> np.ndarray:
    """Estimate the circular field of view of a fundus image, returning a bool ``(H, W)`` mask.

    ``image`` is channel-first ``(C, H, W)`` (MONAI layout; ``channel_dim=-1`` for ``(H, W, C)``,
    ``None`` to guess) or ``(H, W)``; any intensity scale. The red channel (channel 0, or luminance for
    one channel) is thresholded at ``threshold`` (in image units) or, by default, at 15% of its 99th
    percentile; then holes are filled, the largest component kept and the mask eroded by ``erosion`` px.
    """
    a = _to_channel_first(image, channel_dim).astype(np.float32)
    red = a[0]
    if threshold is None:
        hi = float(np.percentile(red, 99))
        threshold = 0.15 * hi if hi > 0 else 0.5
    fov = red > threshold
    fov = ndimage.binary_opening(fov, iterations=2)
    fov = ndimage.binary_fill_holes(fov)
    lab, n = ndimage.label(fov)
    if n > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        fov = lab == int(np.argmax(sizes))
    if erosion > 0:
        fov = ndimage.binary_erosion(fov, iterations=erosion)
    return fov.astype(bool)


def fov_diameter(mask: np.ndarray) -> float:
    """FOV diameter in pixels from its area, ``2 * sqrt(area / pi)`` (``mask`` is ``(H, W)`` or ``(1, H, W)``)."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[0]
    return float(2.0 * np.sqrt(np.count_nonzero(m) / np.pi))
