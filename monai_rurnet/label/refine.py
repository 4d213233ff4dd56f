"""What a refinement request (MONAI Label's ``<bundle>_refine`` task) carries, checked and turned into the bundle
CLI's ``--prior_dir``/``--strokes_dir`` files (core environment: numpy, scipy, PIL, rasterio; no MONAI Label).

A request holds the current label (label indices, any positive value is foreground), strokes as a label image
(``0`` none, ``1`` background, ``2`` foreground: :mod:`monai_rurnet.networks.guidance`) and/or DeepEdit-style
``foreground``/``background`` point lists in its params. Coordinates follow MONAI Label's 2D convention,
``[x, y]`` = ``[column, row]`` in pixels from the top-left corner (what MONAI's readers index first; DeepEdit and
the CVAT plugin send this, 3D Slicer sends IJK ``[x, y, 0]`` for a 2D image). Each element of a list is

* a point ``[x, y]`` (or ``[x, y, 0]``): a click, one disc of ``stroke_radius`` pixels; or
* a polyline ``[[x, y], [x, y], ...]``: a drawn stroke, its consecutive points joined by lines of that width.

Consecutive *points* are never joined: DeepEdit-style clients send independent clicks, which a line between them
would falsify. Anything malformed, outside the image, of the wrong size or marked both foreground and background
raises :class:`RefineRequestError` (the server's 422) before anything is written.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from monai_rurnet.data.files import image_size
from monai_rurnet.data.readers import TIFF_SUFFIXES, read_plane
from monai_rurnet.label.safety import is_safe_name
from monai_rurnet.networks.guidance import STROKE_BACKGROUND, STROKE_FOREGROUND, STROKE_NONE
from monai_rurnet.utils import atomic_write

__all__ = [
    "DEFAULT_STROKE_RADIUS",
    "MAX_STROKE_RADIUS",
    "MAX_POINTS",
    "REFINE_SUFFIX",
    "PRIOR_TAGS",
    "RefineRequestError",
    "bundle_refines",
    "datastore_guidance",
    "parse_point_list",
    "draw_strokes",
    "read_label_image",
    "read_strokes_image",
    "refine_inputs",
    "write_guidance",
]

#: radius in pixels of a point's disc and of a polyline's half-width (1: a 5-pixel cross, 3 pixels wide).
DEFAULT_STROKE_RADIUS = 1
MAX_STROKE_RADIUS = 32
#: most points (clicks plus polyline vertices) one request may hold.
MAX_POINTS = 10000
#: a bundle's refinement task is served as ``<bundle>_refine``.
REFINE_SUFFIX = "_refine"
#: datastore tags whose newest label is the prior when the request uploads none.
PRIOR_TAGS = ("final", "original")


class RefineRequestError(ValueError):
    """A refinement request that cannot be served as sent (the server answers 422 with the message)."""


def bundle_refines(bundle_dir: str | os.PathLike) -> bool:
    """Whether the bundle's inference takes a prior and strokes (its ``configs/inference.json`` has ``strokes_dir``)."""
    config = json.loads((Path(bundle_dir) / "configs" / "inference.json").read_text())
    return "strokes_dir" in config


def _datastore_label(datastore: Any, labels: Mapping[str, str], tags: list[str]) -> tuple[str, str]:
    """``(tag, file)`` of the newest existing label among ``labels`` (``{tag: label id}``) tagged one of ``tags``,
    else ``("", "")``."""
    files = {t: datastore.get_label_uri(labels[t], t) for t in tags if t in labels}
    files = {t: f for t, f in files.items() if f and os.path.isfile(f)}
    if not files:
        return "", ""
    tag = max(files, key=lambda t: os.stat(files[t]).st_mtime_ns)
    return tag, files[tag]


def datastore_guidance(request: Mapping[str, Any], datastore: Any) -> dict[str, Any]:
    """``request`` with the datastore's files for an image id: ``label`` (the prior) is the newest of the image's
    ``final``/``original`` labels, or its ``prior_tag`` label, unless the request carries an uploaded label;
    ``strokes`` is its ``strokes_tag`` label. ``datastore`` is MONAI Label's (``get_labels_by_image_id``,
    ``get_label_uri``)."""
    out = dict(request)
    tags = {key: out.get(key) for key in ("prior_tag", "strokes_tag")}
    for key, tag in tags.items():
        if tag is not None and not is_safe_name(tag):
            raise RefineRequestError(f"{key} must be a plain label tag, got {tag!r}")
    for key, upload in (("prior_tag", "label"), ("strokes_tag", "strokes")):
        if tags[key] and out.get(upload):
            raise RefineRequestError(f"give either an uploaded {upload} or {key}, not both")
    image_id = out.get("image")
    if not isinstance(image_id, str) or os.path.exists(image_id):  # an uploaded image: no datastore labels
        if tags["prior_tag"] or tags["strokes_tag"]:
            raise RefineRequestError(
                "prior_tag and strokes_tag need an image id of the datastore (?image=ID)"
            )
        return out
    labels = datastore.get_labels_by_image_id(image_id)
    if not out.get("label"):
        wanted = [tags["prior_tag"]] if tags["prior_tag"] else list(PRIOR_TAGS)
        tag, file = _datastore_label(datastore, labels, wanted)
        if tags["prior_tag"] and not file:
            raise RefineRequestError(f"image {image_id!r} has no label tagged {tags['prior_tag']!r}")
        if file:
            out["label"], out["prior_source"] = file, f"datastore label {tag!r}"
    if tags["strokes_tag"]:
        tag, file = _datastore_label(datastore, labels, [tags["strokes_tag"]])
        if not file:
            raise RefineRequestError(f"image {image_id!r} has no label tagged {tags['strokes_tag']!r}")
        out["strokes"] = file
    return out


def _coordinate(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RefineRequestError(f"{what}: coordinates must be finite numbers, got {value!r}")
    return round(value)


def _is_point(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and not any(isinstance(v, (list, tuple)) for v in value)


def _point(value: Any, what: str, size: tuple[int, int]) -> tuple[int, int]:
    """``(x, y)`` of ``[x, y]`` or ``[x, y, 0]`` inside an image of ``size`` ``(H, W)``."""
    if len(value) not in (2, 3):
        raise RefineRequestError(f"{what}: a point is [x, y] (or [x, y, 0]), got {value!r}")
    x, y, *z = (_coordinate(v, what) for v in value)
    if z and z[0] != 0:
        raise RefineRequestError(f"{what}: a 2D image has only slice 0, got the point {value!r}")
    h, w = size
    if not (0 <= x < w and 0 <= y < h):
        raise RefineRequestError(
            f"{what}: the point [x, y] = {value!r} is outside the image of {w} x {h} pixels"
        )
    return x, y


def parse_point_list(value: Any, what: str, size: tuple[int, int]) -> list[np.ndarray]:
    """The polylines of a ``foreground``/``background`` param, each an ``(N, 2)`` int array of ``(x, y)`` (a
    point is a polyline of one vertex). ``size`` is the image's ``(H, W)``; ``None`` or ``[]`` gives ``[]``."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise RefineRequestError(
            f"{what} must be a list of points [x, y] or polylines, got {type(value).__name__}"
        )
    if len(value) > MAX_POINTS:
        raise RefineRequestError(f"{what}: more than {MAX_POINTS} points")
    lines = []
    for i, item in enumerate(value):
        where = f"{what}[{i}]"
        if not isinstance(item, (list, tuple)) or not item:
            raise RefineRequestError(
                f"{where}: expected a point [x, y] or a polyline [[x, y], ...], got {item!r}"
            )
        vertices = [item] if _is_point(item) else item
        for j, v in enumerate(vertices):
            if not _is_point(v):
                raise RefineRequestError(f"{where}[{j}]: expected a point [x, y], got {v!r}")
        lines.append(np.array([_point(v, where, size) for v in vertices], dtype=np.int64).reshape(-1, 2))
    if sum(len(line) for line in lines) > MAX_POINTS:
        raise RefineRequestError(f"{what}: more than {MAX_POINTS} points")
    return lines


def _disc(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return r[:, None] ** 2 + r[None, :] ** 2 <= radius**2


def draw_strokes(
    size: tuple[int, int], lines: list[np.ndarray], radius: int = DEFAULT_STROKE_RADIUS
) -> np.ndarray:
    """Boolean ``(H, W)``: the polylines ``(N, 2)`` of ``(x, y)`` drawn ``2 * radius + 1`` pixels wide."""
    centre = np.zeros(size, dtype=bool)
    for line in lines:
        centre[line[:, 1], line[:, 0]] = True
        for (x0, y0), (x1, y1) in zip(line[:-1], line[1:]):
            n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
            centre[
                np.rint(np.linspace(y0, y1, n)).astype(int), np.rint(np.linspace(x0, x1, n)).astype(int)
            ] = True
    return ndimage.binary_dilation(centre, _disc(radius)) if radius > 0 and centre.any() else centre


def _read_single_band(path: str | os.PathLike, what: str, size: tuple[int, int]) -> np.ndarray:
    try:
        a, _ = read_plane(path)
    except (ValueError, FileNotFoundError) as e:
        raise RefineRequestError(f"{what}: {e}") from e
    if a.ndim != 2:
        raise RefineRequestError(f"{what}: expected a single-band image, got shape {a.shape}")
    if a.shape != tuple(size):
        raise RefineRequestError(
            f"{what} is {a.shape[1]} x {a.shape[0]} pixels, the image is {size[1]} x {size[0]}: they must match"
        )
    return a


def read_label_image(path: str | os.PathLike, size: tuple[int, int], what: str = "label") -> np.ndarray:
    """The current label at ``path`` as a boolean foreground ``(H, W)`` (any positive value is foreground)."""
    return _read_single_band(path, what, size) > 0


def read_strokes_image(path: str | os.PathLike, size: tuple[int, int], what: str = "strokes") -> np.ndarray:
    """A stroke map at ``path`` (values 0/1/2 only) as ``uint8`` ``(H, W)``."""
    a = _read_single_band(path, what, size)
    bad = np.setdiff1d(np.unique(a), [STROKE_NONE, STROKE_BACKGROUND, STROKE_FOREGROUND])
    if bad.size:
        raise RefineRequestError(
            f"{what}: values must be 0 (no stroke), 1 (background) or 2 (foreground), found {bad[:5].tolist()}"
        )
    return a.astype(np.uint8)


def _stroke_radius(value: Any) -> int:
    if value is None:
        return DEFAULT_STROKE_RADIUS
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_STROKE_RADIUS:
        raise RefineRequestError(
            f"stroke_radius must be an integer in [0, {MAX_STROKE_RADIUS}], got {value!r}"
        )
    return value


def refine_inputs(
    image: str | os.PathLike,
    params: Mapping[str, Any],
    label: str | os.PathLike | None = None,
    strokes: str | os.PathLike | None = None,
) -> tuple[np.ndarray | None, np.ndarray]:
    """The prior (boolean ``(H, W)``, ``None`` without a ``label`` file) and the stroke map (``uint8`` 0/1/2) of a
    request on ``image``: the ``strokes`` file's strokes plus those drawn from ``params``' ``foreground`` and
    ``background`` lists (``stroke_radius`` wide). A pixel marked both foreground and background is refused."""
    w, h = image_size(image)
    size = (h, w)
    radius = _stroke_radius(params.get("stroke_radius"))
    prior = read_label_image(label, size) if label else None
    stroke_map = read_strokes_image(strokes, size) if strokes else np.zeros(size, dtype=np.uint8)
    fg = draw_strokes(size, parse_point_list(params.get("foreground"), "foreground", size), radius)
    bg = draw_strokes(size, parse_point_list(params.get("background"), "background", size), radius)
    fg |= stroke_map == STROKE_FOREGROUND
    bg |= stroke_map == STROKE_BACKGROUND
    both = fg & bg
    if both.any():
        ys, xs = np.nonzero(both)
        raise RefineRequestError(
            f"{int(both.sum())} pixel(s) are marked both foreground and background, e.g. [x, y] = "
            f"[{int(xs[0])}, {int(ys[0])}]: move the strokes apart or lower stroke_radius"
        )
    stroke_map = np.zeros(size, dtype=np.uint8)
    stroke_map[bg] = STROKE_BACKGROUND
    stroke_map[fg] = STROKE_FOREGROUND
    return prior, stroke_map


def _write(path: Path, array: np.ndarray, grid: Path | None) -> None:
    """``array`` (``uint8`` ``(H, W)``) as a PNG, or as a GeoTIFF on the grid of the raster ``grid``."""
    if grid is None:
        atomic_write(path, lambda tmp: Image.fromarray(array, mode="L").save(tmp, format="PNG"))
        return
    from monai_rurnet.data.geotiff import create_like

    with create_like(grid, path, count=1, dtype="uint8") as dst:
        dst.write(array[None])


def write_guidance(
    folder: str | os.PathLike,
    image: str | os.PathLike,
    prior: np.ndarray | None,
    strokes: np.ndarray | None,
    geotiff: bool = False,
) -> tuple[Path | None, Path | None]:
    """Write the files the bundle CLI reads for ``image``: ``folder/prior/<stem>_seg.png`` (0/255) and
    ``folder/strokes/<stem>_strokes.png`` (0/1/2), or ``.tif`` on the raster's grid when ``geotiff`` and the image
    is a TIFF. Returns ``(prior_dir, strokes_dir)``, ``None`` for what is not given."""
    image = Path(image)
    grid = image if geotiff and image.suffix.lower() in TIFF_SUFFIXES else None
    suffix = ".tif" if grid is not None else ".png"
    out: list[Path | None] = []
    for name, array, kind in (("prior", prior, "seg"), ("strokes", strokes, "strokes")):
        if array is None:
            out.append(None)
            continue
        d = Path(folder) / name
        d.mkdir(parents=True, exist_ok=True)
        data = (
            (np.asarray(array, dtype=bool) * np.uint8(255)) if kind == "seg" else np.asarray(array, np.uint8)
        )
        _write(d / f"{image.stem}_{kind}{suffix}", data, grid)
        out.append(d)
    return out[0], out[1]
