"""Hand segmentation datalists: ``images/`` + ``masks/`` folders and the paper's datasets in their published layouts.

``hand_dataset_datalist(name, root)`` reads one of :data:`HAND_DATASETS` (where each comes from and under which
terms: ``bundles/handseg/docs/README.md``):

- ``folder``: ``root/images/<stem>.*`` + ``root/masks/<stem>.*`` (mask > 0 = hand), or several such subsets
  ``root/<subset>/images`` + ``root/<subset>/masks``.
- ``eyth`` (EgoYouTubeHands): ``images/<video>/<frame>.jpg`` + ``masks/<video>/<frame>.png``; with ``split``, the
  frames listed in ``train-val-test-split/<split>.txt`` (``<video>/<frame>`` per line).
- ``hof`` (HandOverFace): ``images_resized/<n>.jpg`` + ``masks/<n>.png`` (the masks match the resized images).
- ``gtea`` (GTEA hand masks, ``hand2K_dataset/GTEA``): ``Images/<stem>.jpg`` + ``Masks/<stem>.png``.
- ``egohands``: ``_LABELLED_SAMPLES/<VIDEO>/frame_<n>.jpg`` with the hand polygons of the video in
  ``_LABELLED_SAMPLES/<VIDEO>/polygons.mat`` (one entry per frame, in frame order; fields ``myleft``, ``myright``,
  ``yourleft``, ``yourright``, each ``(N, 2)`` x/y points); the polygons are rasterised once into
  ``mask_dir/<VIDEO>_frame_<n>.png``.
- ``kbh`` (Keyboard Hands): ``data_split_by_seq/**/<name>_halfres.jpg`` + ``<name>_mask.png`` beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from monai_rurnet.data.synthetic import synthetic_hand_image
from monai_rurnet.data.writers import save_png

__all__ = [
    "HAND_DATASETS",
    "HAND_SUFFIXES",
    "egohands_datalist",
    "eyth_datalist",
    "gtea_datalist",
    "hand_dataset_datalist",
    "hand_folder_datalist",
    "hof_datalist",
    "kbh_datalist",
    "make_synthetic_hands",
]

HAND_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
EGOHANDS_FIELDS = ("myleft", "myright", "yourleft", "yourright")


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: {what} folder not found")
    return path


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
    img_dir, mask_dir = _require_dir(root / "images", "hand images"), root / "masks"
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


def _nested_folder_datalist(root: str | Path) -> list[dict[str, str]]:
    """``root/images`` + ``root/masks``, or every ``root/<subset>/{images,masks}`` in name order."""
    root = _require_dir(Path(root), "hand dataset")
    if (root / "images").is_dir():
        return hand_folder_datalist(root)
    subsets = sorted(p.parent for p in root.glob("*/images") if p.is_dir())
    if not subsets:
        raise FileNotFoundError(f"{root}: neither images/ nor <subset>/images/ found")
    return [d for s in subsets for d in hand_folder_datalist(s)]


def _pairs(images: list[Path], mask_of: Callable[[Path], Path]) -> list[dict[str, str]]:
    if not images:
        raise FileNotFoundError("no hand images found")
    out = []
    for p in images:
        m = mask_of(p)
        if not m.is_file():
            raise FileNotFoundError(f"{p}: its mask {m} is missing")
        out.append({"image": str(p), "label": str(m)})
    return out


def _images(folder: Path, pattern: str) -> list[Path]:
    found = sorted(p for p in folder.glob(pattern) if p.suffix.lower() in HAND_SUFFIXES)
    if not found:
        raise FileNotFoundError(f"{folder}: no images matching {pattern!r}")
    return found


def eyth_datalist(root: str | Path, split: str | None = None) -> list[dict[str, str]]:
    """EgoYouTubeHands: ``images/<video>/<frame>.jpg`` + ``masks/<video>/<frame>.png``; ``split`` in train/val/test."""
    root = Path(root)
    img_dir, mask_dir = (
        _require_dir(root / "images", "EYTH images"),
        _require_dir(root / "masks", "EYTH masks"),
    )
    if split is None:
        images = _images(img_dir, "*/*")
    else:
        listing = root / "train-val-test-split" / f"{split}.txt"
        if not listing.is_file():
            raise FileNotFoundError(f"{listing}: EYTH split list not found")
        names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        images = [img_dir / Path(n).with_suffix(".jpg") for n in names]
        for p in images:
            if not p.is_file():
                raise FileNotFoundError(f"{p}: listed in {listing} but missing")
    return _pairs(images, lambda p: (mask_dir / p.relative_to(img_dir)).with_suffix(".png"))


def hof_datalist(root: str | Path) -> list[dict[str, str]]:
    """HandOverFace: ``images_resized/<n>.jpg`` + ``masks/<n>.png``."""
    root = Path(root)
    img_dir = _require_dir(root / "images_resized", "HOF images_resized")
    mask_dir = _require_dir(root / "masks", "HOF masks")
    return _pairs(_images(img_dir, "*"), lambda p: mask_dir / f"{p.stem}.png")


def gtea_datalist(root: str | Path) -> list[dict[str, str]]:
    """GTEA hand masks: ``Images/<stem>.jpg`` + ``Masks/<stem>.png``."""
    root = Path(root)
    img_dir, mask_dir = (
        _require_dir(root / "Images", "GTEA Images"),
        _require_dir(root / "Masks", "GTEA Masks"),
    )
    return _pairs(_images(img_dir, "*"), lambda p: mask_dir / f"{p.stem}.png")


def kbh_datalist(root: str | Path) -> list[dict[str, str]]:
    """Keyboard Hands: ``data_split_by_seq/**/<name>_halfres.jpg`` + ``<name>_mask.png`` in the same folder."""
    seq_dir = _require_dir(Path(root) / "data_split_by_seq", "KBH data_split_by_seq")
    images = _images(seq_dir, "**/*_halfres.jpg")
    return _pairs(images, lambda p: p.with_name(p.name[: -len("_halfres.jpg")] + "_mask.png"))


def _polygon_mask(size: tuple[int, int], polygons: list[np.ndarray]) -> np.ndarray:
    """Rasterise ``(N, 2)`` x/y polygons (fewer than 3 points are skipped) into a uint8 ``(H, W)`` 0/255 mask."""
    canvas = Image.new("L", (size[1], size[0]), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2) if np.size(poly) else np.zeros((0, 2))
        if len(pts) >= 3:
            draw.polygon([tuple(p) for p in pts], fill=255)
    return np.asarray(canvas)


def egohands_datalist(root: str | Path, mask_dir: str | Path) -> list[dict[str, str]]:
    """EgoHands: ``_LABELLED_SAMPLES/<VIDEO>/frame_*.jpg`` + ``polygons.mat``, masks written to ``mask_dir``.

    A mask already in ``mask_dir`` is reused; a video whose ``polygons.mat`` lists a different number of frames
    than its folder holds raises ``ValueError`` naming the file.
    """
    from scipy.io import loadmat

    samples = _require_dir(Path(root) / "_LABELLED_SAMPLES", "EgoHands _LABELLED_SAMPLES")
    mask_dir = Path(mask_dir)
    videos = sorted(p for p in samples.iterdir() if p.is_dir())
    if not videos:
        raise FileNotFoundError(f"{samples}: no video folders")
    out = []
    for video in videos:
        frames = _images(video, "frame_*.jpg")
        mat = video / "polygons.mat"
        if not mat.is_file():
            raise FileNotFoundError(f"{mat}: EgoHands polygons not found")
        table = loadmat(str(mat))["polygons"].reshape(-1)
        if len(table) != len(frames):
            raise ValueError(f"{mat}: {len(table)} polygon entries for {len(frames)} frames in {video}")
        for frame, entry in zip(frames, table):
            target = mask_dir / f"{video.name}_{frame.stem}.png"
            if not target.is_file():
                with Image.open(frame) as im:
                    size = (im.height, im.width)
                mask = _polygon_mask(size, [entry[f] for f in EGOHANDS_FIELDS if f in entry.dtype.names])
                save_png(mask, target)
            out.append({"image": str(frame), "label": str(target)})
    return out


HAND_DATASETS: dict[str, Callable[..., list[dict[str, str]]]] = {
    "folder": _nested_folder_datalist,
    "eyth": eyth_datalist,
    "hof": hof_datalist,
    "gtea": gtea_datalist,
    "egohands": egohands_datalist,
    "kbh": kbh_datalist,
}


def hand_dataset_datalist(
    name: str, root: str | Path | None, mask_dir: str | Path | None = None
) -> list[dict[str, str]]:
    """Datalist ``[{"image", "label"}]`` of the hand dataset ``name`` (a key of :data:`HAND_DATASETS`) at ``root``.

    ``mask_dir`` is where EgoHands masks are written (default ``<root>/masks_from_polygons``). ``root=None`` gives
    an empty list (the bundle then trains on synthetic hands).
    """
    if root is None:
        return []
    key = str(name).lower()
    if key not in HAND_DATASETS:
        raise ValueError(f"hand_dataset {name!r} is not one of {sorted(HAND_DATASETS)}")
    if not Path(root).is_dir():
        raise FileNotFoundError(
            f"{root}: {key} hand dataset folder not found. Pass the dataset's root folder as --dataset_dir, and its "
            f"layout as --hand_dataset (one of {sorted(HAND_DATASETS)}; 'folder' is images/ + masks/ matched by "
            "stem); see bundles/handseg/docs/README.md for where each dataset comes from."
        )
    root = Path(root)
    if key == "egohands":
        return egohands_datalist(root, mask_dir or root / "masks_from_polygons")
    return HAND_DATASETS[key](root)


def _write_synthetic_pair(job: tuple[Path, Path, tuple[int, int], int]) -> None:
    """Generate one synthetic pair and write its image and mask PNGs atomically."""
    image_path, mask_path, size, seed = job
    img, mask = synthetic_hand_image(size, seed=seed)
    save_png(img, image_path)
    save_png(mask * 255, mask_path)


def make_synthetic_hands(
    out_dir: str | Path,
    n: int = 16,
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    workers: int = 0,
) -> list[dict[str, str]]:
    """Write ``n`` synthetic pairs ``out_dir/images/hand_XXXX.png`` + ``out_dir/masks/hand_XXXX.png`` (mask 255).

    Image ``i`` uses generator seed ``seed * 100003 + i``. ``workers`` > 0 generates in that many processes (the
    files are the same). Returns the datalist ``[{"image", "label"}]``.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    jobs = [
        (
            out / "images" / f"hand_{i:04d}.png",
            out / "masks" / f"hand_{i:04d}.png",
            tuple(size),
            seed * 100003 + i,
        )
        for i in range(n)
    ]
    if workers > 0 and n > 1:
        with ProcessPoolExecutor(min(workers, n)) as pool:
            list(pool.map(_write_synthetic_pair, jobs, chunksize=max(1, n // (4 * workers))))
    else:
        for job in jobs:
            _write_synthetic_pair(job)
    return [{"image": str(ip), "label": str(mp)} for ip, mp, _, _ in jobs]
