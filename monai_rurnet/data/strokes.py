"""A simulated annotator: short strokes on the largest error components, and corrupted masks as priors.

Used by training with simulated interaction (:class:`monai_rurnet.engines.StrokeInteraction`) and by
``benchmarks/interactive.py``. Stroke maps use the encoding of :mod:`monai_rurnet.networks.guidance`: ``0`` no
stroke, ``1`` background stroke, ``2`` foreground stroke. Arrays are 2D or 3D numpy arrays of one image.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from scipy import ndimage

from monai_rurnet.networks.guidance import STROKE_BACKGROUND, STROKE_FOREGROUND, STROKE_NONE

__all__ = [
    "DEFAULT_STROKE_LENGTH",
    "error_components",
    "stroked_errors",
    "add_strokes",
    "apply_strokes",
    "corrupt_mask",
]

#: length in pixels of a simulated stroke (measured along the error it corrects).
DEFAULT_STROKE_LENGTH = 20


def apply_strokes(pred: np.ndarray, strokes: np.ndarray) -> np.ndarray:
    """Boolean ``pred`` with the strokes pasted in (foreground strokes on, background strokes off)."""
    return np.where(strokes == STROKE_FOREGROUND, True, np.where(strokes == STROKE_BACKGROUND, False, pred))


def error_components(
    pred: np.ndarray, label: np.ndarray, strokes: np.ndarray | None = None, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Connected components (full connectivity) of the errors of ``pred`` not yet under a stroke: the missed
    pixels and the false ones are labelled apart, so each component is one kind of error even where a missed
    vessel touches a false one (a result shifted by a pixel).

    Returns the label image and the component sizes (index ``k - 1`` for component ``k``).
    """
    truth = label.astype(bool)
    err = pred.astype(bool) != truth
    if strokes is not None:
        err &= strokes == STROKE_NONE
    if valid is not None:
        err &= valid.astype(bool)
    structure = np.ones((3,) * err.ndim, dtype=bool)
    missed, n_missed = ndimage.label(err & truth, structure)
    false, n_false = ndimage.label(err & ~truth, structure)
    comps, n = np.where(false > 0, false + n_missed, missed), n_missed + n_false
    sizes = np.bincount(comps.ravel(), minlength=n + 1)[1:] if n else np.zeros(0, dtype=np.int64)
    return comps, sizes


def stroked_errors(
    pred: np.ndarray, label: np.ndarray, strokes: np.ndarray, valid: np.ndarray | None = None
) -> np.ndarray:
    """The error components of ``pred`` (as :func:`error_components`, strokes included) that hold a stroke pixel:
    what the strokes ask the network to change (boolean, ``pred``'s shape)."""
    comps, _ = error_components(pred, label, None, valid)
    touched = np.unique(comps[(strokes != STROKE_NONE) & (comps > 0)])
    return np.isin(comps, touched) if touched.size else np.zeros(comps.shape, dtype=bool)


def _stroke_pixels(component: np.ndarray, length: int) -> np.ndarray:
    """A short stroke along ``component`` (boolean, cropped): a connected path of about ``length`` pixels.

    The path runs through the component's core (pixels at least half its largest depth inside it), from the
    middle of its most interior pixels to the farthest core pixel within ``length / 2`` steps and to the pixel
    farthest from that end: a line along the structure, as an annotator draws it.
    """
    dist = ndimage.distance_transform_edt(np.pad(component, 1))[(slice(1, -1),) * component.ndim]
    core = component & (dist >= max(1.0, 0.5 * float(dist.max())))
    # the centre: the middle of the connected run of most interior pixels around the deepest one (the thickest
    # part of the error, e.g. the widest missed vessel of a missed tree)
    runs, _ = ndimage.label(dist >= dist.max() - 0.5, np.ones((3,) * component.ndim, dtype=bool))
    deepest = np.argwhere(runs == runs.flat[int(np.argmax(dist))])
    middle = deepest[int(np.argmin(((deepest - deepest.mean(axis=0)) ** 2).sum(axis=1)))]
    centre = tuple(int(v) for v in middle)
    offsets = [o for o in np.ndindex(*(3,) * component.ndim) if o != (1,) * component.ndim]
    offsets = [tuple(int(v) - 1 for v in o) for o in offsets]
    parent = {centre: centre}
    depth = {centre: 0}
    queue = deque([centre])
    while queue:  # breadth-first search in the core, up to length / 2 steps from the centre
        p = queue.popleft()
        if depth[p] >= length // 2:
            continue
        for o in offsets:
            q = tuple(a + b for a, b in zip(p, o))
            if q not in parent and all(0 <= c < n for c, n in zip(q, core.shape)) and core[q]:
                parent[q], depth[q] = p, depth[p] + 1
                queue.append(q)
    reached = np.array(list(depth))
    first = tuple(reached[int(np.argmax([depth[tuple(r)] for r in reached]))])
    spread = [depth[tuple(r)] + float(np.hypot(*(np.asarray(r) - first))) for r in reached]
    second = tuple(reached[int(np.argmax(spread))])
    stroke = np.zeros_like(component)
    for end in (first, second):
        p = end
        while p != centre:
            stroke[p] = True
            p = parent[p]
    stroke[centre] = True
    return stroke


def add_strokes(
    pred: np.ndarray,
    label: np.ndarray,
    count: int,
    strokes: np.ndarray | None = None,
    length: int = DEFAULT_STROKE_LENGTH,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """One stroke on each of the ``count`` largest error components of ``pred`` not yet under a stroke.

    A missed foreground component gets a foreground stroke, a false one a background stroke; a stroke follows the
    component's core for about ``length`` pixels around its middle and never leaves the component, so
    it is always right. Returns a new stroke map (``uint8``), or ``strokes`` updated in place when given. An
    annotator correcting one error at a time calls it with ``count=1`` on each new result.
    """
    strokes = np.zeros(pred.shape, dtype=np.uint8) if strokes is None else strokes
    comps, sizes = error_components(pred, label, strokes, valid)
    boxes = ndimage.find_objects(comps)
    truth = label.astype(bool)
    for k in np.argsort(-sizes, kind="stable")[:count] + 1:
        box = boxes[k - 1]
        component = comps[box] == k
        missed = bool(truth[box][component].any())  # the whole component is one kind of error
        strokes[box][_stroke_pixels(component, length)] = STROKE_FOREGROUND if missed else STROKE_BACKGROUND
    return strokes


def corrupt_mask(
    label: np.ndarray, rng: np.random.Generator, drop: float = 0.3, blobs: int = 4, segment: int = 150
) -> np.ndarray:
    """A plausible wrong result from a ground truth: segments dropped, parts dilated or eroded (boolean).

    ``drop``: fraction of the foreground's pieces removed, after cutting it into pieces of about ``segment`` pixels;
    ``blobs``: number of random discs in which the mask is dilated or eroded.
    """
    mask = label.astype(bool).copy()
    if not mask.any():
        return mask
    # cut the structure into short pieces (discs on random foreground pixels), then drop some pieces
    shape = np.asarray(mask.shape)
    fg = np.flatnonzero(mask)
    cuts = np.zeros(mask.size, dtype=bool)
    cuts[rng.choice(fg, size=max(1, len(fg) // segment), replace=False)] = True
    cuts = ndimage.binary_dilation(cuts.reshape(mask.shape), iterations=2)
    pieces, n = ndimage.label(mask & ~cuts, np.ones((3,) * mask.ndim, dtype=bool))
    if n:
        dropped = np.flatnonzero(rng.random(n) < drop) + 1
        mask &= ~np.isin(pieces, dropped)
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    for _ in range(blobs):
        centre = rng.integers(0, shape)
        radius = int(rng.integers(8, max(9, int(shape.min()) // 3)))
        disc = sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius**2
        changed = ndimage.binary_dilation(mask) if rng.random() < 0.5 else ndimage.binary_erosion(mask)
        mask = np.where(disc, changed, mask)
    return mask
