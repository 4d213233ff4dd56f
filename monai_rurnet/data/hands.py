"""Hand segmentation datalist (``images/`` + ``masks/`` by stem) and a synthetic hand generator.

Arranging the paper's datasets into ``root/images`` + ``root/masks`` (same file stem, any of
png/jpg/jpeg/bmp/tif; mask > 0 means hand, e.g. 255):

- **EYTH** (EgoYouTubeHands): ``images/<vid>/*.jpg`` and ``masks/<vid>/*.png`` -> flatten each video
  folder, prefixing the stem with the video name (``vid1_frame0001``).
- **HOF** (HandOverFace): ``images/*.jpg`` + ``masks/*.png`` already match by stem.
- **GTEA**: ``Images/*.jpg`` + ``Masks/*.png`` (hand masks of GTEA/GTEA-gaze) -> rename the folders.
- **EgoHands**: masks are polygons in ``metadata.mat``; rasterise all hand polygons of a frame into one
  binary mask ``masks/<video>_<frame>.png`` next to ``images/<video>_<frame>.jpg``.
- **KBH** (Keyboard Hands): RGB frames and label images; binarise labels (> 0) into ``masks/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from monai_rurnet.data.synthetic import smooth_noise

__all__ = ["hand_folder_datalist", "make_synthetic_hands", "synthetic_hand_image", "HAND_SUFFIXES"]

HAND_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _stems(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in HAND_SUFFIXES:
            if p.stem in out:
                raise ValueError(f"{p}: stem {p.stem!r} is duplicated by {out[p.stem].name}")
            out[p.stem] = p
    return out


def hand_folder_datalist(root: str | Path, require_masks: bool = True) -> list[dict[str, str]]:
    """List ``root/images/<stem>.*`` with ``root/masks/<stem>.*`` as ``[{"image", "label"}]``.

    Raises ``FileNotFoundError`` naming the image when its mask is missing (unless ``require_masks=False``,
    then ``label`` is omitted).
    """
    root = Path(root)
    img_dir, mask_dir = root / "images", root / "masks"
    if not img_dir.is_dir():
        raise FileNotFoundError(f"{img_dir}: hand images folder not found")
    images = _stems(img_dir)
    if not images:
        raise FileNotFoundError(f"{img_dir}: no images ({'/'.join(HAND_SUFFIXES)}) found")
    masks = _stems(mask_dir) if mask_dir.is_dir() else {}
    out = []
    for stem, p in images.items():
        item = {"image": str(p)}
        if stem in masks:
            item["label"] = str(masks[stem])
        elif require_masks:
            raise FileNotFoundError(f"{p}: no mask with stem {stem!r} in {mask_dir}")
        out.append(item)
    return out


def _capsule(draw: ImageDraw.ImageDraw, p0, p1, width: float, fill) -> None:
    draw.line([p0, p1], fill=fill, width=int(width))
    r = width / 2.0
    for x, y in (p0, p1):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    kind = rng.integers(0, 3)
    base = rng.uniform(30, 220, 3).astype(np.float32)
    if kind == 0:  # noise texture
        t = smooth_noise(rng, (h, w), cell=int(rng.integers(4, 40)))
        other = rng.uniform(30, 220, 3).astype(np.float32)
        img = base[:, None, None] * (1 - t) + other[:, None, None] * t
    elif kind == 1:  # stripes
        yy, xx = np.mgrid[:h, :w]
        ang, period = rng.uniform(0, np.pi), rng.uniform(8, 40)
        s = 0.5 + 0.5 * np.sin((xx * np.cos(ang) + yy * np.sin(ang)) * 2 * np.pi / period)
        other = rng.uniform(30, 220, 3).astype(np.float32)
        img = base[:, None, None] * (1 - s) + other[:, None, None] * s
    else:  # colour blobs
        canvas = Image.new("RGB", (w, h), tuple(int(c) for c in base))
        d = ImageDraw.Draw(canvas)
        for _ in range(int(rng.integers(5, 15))):
            x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, 0.3 * max(h, w))
            d.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(c) for c in rng.integers(20, 235, 3)))
        img = np.asarray(canvas).transpose(2, 0, 1).astype(np.float32)
    return img


def synthetic_hand_image(size: tuple[int, int] = (256, 256), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic hand image: ``image`` uint8 ``(3, H, W)`` and ``mask`` uint8 ``(H, W)`` in {0, 1}."""
    rng = np.random.default_rng(seed)
    h, w = size
    img = _background(rng, h, w)
    # distractors: rectangles / ellipses, sometimes skin-ish but not hand-shaped
    dist = Image.new("RGB", (w, h), 0)
    dd = ImageDraw.Draw(dist)
    dmask = Image.new("L", (w, h), 0)
    dm = ImageDraw.Draw(dmask)
    for _ in range(int(rng.integers(1, 5))):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        sx, sy = rng.uniform(8, 0.25 * w), rng.uniform(8, 0.25 * h)
        col = tuple(int(c) for c in (rng.integers(20, 235, 3)))
        shape = [x, y, x + sx, y + sy]
        if rng.random() < 0.5:
            dd.rectangle(shape, fill=col)
            dm.rectangle(shape, fill=1)
        else:
            dd.ellipse(shape, fill=col)
            dm.ellipse(shape, fill=1)
    dmask_a = np.asarray(dmask, bool)
    img = np.where(dmask_a[None], np.asarray(dist).transpose(2, 0, 1).astype(np.float32), img)

    hand = Image.new("L", (w, h), 0)
    hd = ImageDraw.Draw(hand)
    n_hands = int(rng.integers(1, 3))
    s = min(h, w)
    for _ in range(n_hands):
        cx, cy = rng.uniform(0.25, 0.75) * w, rng.uniform(0.3, 0.8) * h
        pr = rng.uniform(0.08, 0.14) * s  # palm radius
        ang = rng.uniform(0, 2 * np.pi)
        # palm as ellipse approximated by a polygon (rotated)
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        ex, ey = pr * np.cos(t), pr * 1.2 * np.sin(t)
        ca, sa = np.cos(ang), np.sin(ang)
        hd.polygon([(cx + ca * a - sa * b, cy + sa * a + ca * b) for a, b in zip(ex, ey)], fill=1)
        # wrist / forearm
        _capsule(
            hd,
            (cx, cy),
            (cx + np.cos(ang + np.pi / 2) * 3 * pr, cy + np.sin(ang + np.pi / 2) * 3 * pr),
            1.4 * pr,
            1,
        )
        n_f = int(rng.integers(4, 6))
        for k in range(n_f):
            fa = ang - np.pi / 2 + (k - (n_f - 1) / 2) * rng.uniform(0.25, 0.4)
            base = (cx + np.cos(fa) * pr, cy + np.sin(fa) * pr * 1.1)
            ln = pr * rng.uniform(0.9, 1.5) * (0.7 if k in (0, n_f - 1) else 1.0)
            tip = (base[0] + np.cos(fa) * ln, base[1] + np.sin(fa) * ln)
            _capsule(hd, base, tip, pr * rng.uniform(0.4, 0.5), 1)
    mask = np.asarray(hand) > 0
    red = rng.uniform(120, 245)
    green = red * rng.uniform(0.6, 0.8)
    skin = np.array([red, green, green * rng.uniform(0.7, 0.9)], np.float32)
    shade = 0.75 + 0.35 * smooth_noise(rng, (h, w), cell=24)
    yy = np.linspace(0.9, 1.1, h, dtype=np.float32)[:, None]
    img = np.where(mask[None], skin[:, None, None] * shade[None] * yy[None], img)
    img = img + rng.normal(0, 5.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), mask.astype(np.uint8)


def make_synthetic_hands(
    out_dir: str | Path, n: int = 16, size: tuple[int, int] = (256, 256), seed: int = 0
) -> list[dict[str, str]]:
    """Write ``n`` synthetic pairs ``out_dir/images/hand_XXXX.png`` + ``out_dir/masks/hand_XXXX.png`` (mask 255).

    Returns the datalist ``[{"image", "label"}]``; deterministic for a given ``seed``.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        img, mask = synthetic_hand_image(size, seed=seed * 100003 + i)
        ip, mp = out / "images" / f"hand_{i:04d}.png", out / "masks" / f"hand_{i:04d}.png"
        Image.fromarray(img.transpose(1, 2, 0)).save(ip)
        Image.fromarray(mask * 255).save(mp)
        items.append({"image": str(ip), "label": str(mp)})
    return items
