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

from PIL import Image

from monai_rurnet.data.synthetic import synthetic_hand_image

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
        Image.fromarray(img).save(ip)
        Image.fromarray(mask * 255).save(mp)
        items.append({"image": str(ip), "label": str(mp)})
    return items
