"""Input discovery and output checks for the folder runners: nothing dropped silently, nothing trusted blindly.

- :func:`scan_inputs` lists a folder's images and, per file, why one cannot be used (a dangling symbolic link,
  a link loop, two files that share a stem and would write the same outputs);
- :func:`image_size` reads an image's size from its header only, and :func:`check_pixel_limit` refuses an image
  over a pixel limit before it is decoded (a small PNG can decode to gigabytes);
- :func:`output_is_complete` tells a finished output from a zero-byte or truncated one before a run skips it.
"""

from __future__ import annotations

import errno
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from monai_rurnet.data.readers import TIFF_SUFFIXES

__all__ = [
    "IMAGE_SUFFIXES",
    "DEFAULT_MAX_PIXELS",
    "InputScan",
    "scan_inputs",
    "image_size",
    "check_pixel_limit",
    "output_is_complete",
]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".ppm", ".gif")
#: Default pixel limit of the whole-image runners (a 565x584 DRIVE image has 0.33 MP; 9000x9000 = 81 MP).
DEFAULT_MAX_PIXELS = 40_000_000


@dataclass
class InputScan:
    """The usable images of a folder (sorted) and, for each refused file, the reason."""

    files: list[Path] = field(default_factory=list)
    refused: dict[Path, str] = field(default_factory=dict)


def _link_problem(path: Path) -> str | None:
    """Why a symbolic link cannot be read, or None when it resolves to a file."""
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symbolic link loop"
        return f"dangling symbolic link (target {os.readlink(path)} does not exist)"
    return None


def scan_inputs(folder: str | Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> InputScan:
    """Images in ``folder`` with one of ``suffixes`` (case-insensitive), sorted, plus the refused ones.

    Refused (never dropped silently): broken symbolic links and link loops; files sharing a stem (``a.png`` and
    ``a.tif``), since both would write ``a_seg.*``: each is refused with both names so that the user renames
    one. Raises ``FileNotFoundError`` naming the folder when it is missing or holds no image at all.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: input folder does not exist.")
    scan = InputScan()
    by_stem: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in suffixes or p.name.startswith("."):
            continue
        if p.is_symlink():
            problem = _link_problem(p)
            if problem:
                scan.refused[p] = problem
                continue
        if p.is_file():
            by_stem.setdefault(p.stem, []).append(p)
    for stem, paths in by_stem.items():
        if len(paths) == 1:
            scan.files.append(paths[0])
            continue
        names = ", ".join(q.name for q in paths)
        for q in paths:
            scan.refused[q] = (
                f"{len(paths)} inputs share the stem {stem!r} ({names}) and would write the same outputs; "
                "rename all but one"
            )
    scan.files.sort()
    if not scan.files and not scan.refused:
        raise FileNotFoundError(f"{folder}: no input images ({', '.join(suffixes)}) found.")
    return scan


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image from its header, without decoding the pixels."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                return int(src.width), int(src.height)
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            return img.size


def check_pixel_limit(path: str | Path, max_pixels: int | None, option: str = "--max_pixels") -> None:
    """Raise ``ValueError`` naming ``path``, its size and the limit when it has more than ``max_pixels``
    pixels (``None`` or 0: no limit). ``option`` is the name of the setting that raises the limit."""
    if not max_pixels:
        return
    w, h = image_size(path)
    if w * h > max_pixels:
        raise ValueError(
            f"{path}: image of {w}x{h} = {w * h / 1e6:.1f} megapixels is over the limit of {max_pixels / 1e6:.1f} "
            f"megapixels; raise it with {option} N if the machine has the memory."
        )


def output_is_complete(path: str | Path) -> bool:
    """Whether an existing output file is a readable image (not zero bytes, not truncated)."""
    path = Path(path)
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return False
        if path.suffix.lower() in TIFF_SUFFIXES:
            import rasterio

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with rasterio.open(path) as src:
                    src.read(1, window=((src.height - 1, src.height), (src.width - 1, src.width)))
            return True
        from PIL import Image

        with Image.open(path) as img:
            img.load()
        return True
    except Exception:  # unreadable, truncated or not an image
        return False
