"""GeoTIFF inference for the ``massroads`` bundle: bounded-memory, window-by-window, georeferencing preserved.

:func:`segment_raster` always works window by window (there is no separate in-memory path): the raster is cut
into non-overlapping output windows of ``window`` px (:func:`~monai_rurnet.data.geotiff.iter_windows`, aligned to
the 256 px output tiles when ``window`` is a multiple of 256) and each one is predicted from the sliding-window
patches of one *global* patch grid (the grid MONAI's ``SlidingWindowInferer`` uses on the whole image: stride
``roi * (1 - overlap)``, last patch flush with the edge) that overlap it, blended with the same Gaussian
importance map. Only the input region those patches cover (the window plus at most ``roi_size`` px around it)
is read (:func:`~monai_rurnet.data.geotiff.read_window`). A pixel's value therefore does not depend on
``window``: windowed output equals whole-image sliding-window inference (up to float rounding), and peak memory
is ``O((window + roi)^2)`` whatever the raster size. Patches on a window boundary are computed once per window
they touch (about ``roi / window`` extra work, ~12% at 2048/256).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from monai.data.utils import compute_importance_map
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window
from tqdm import tqdm

from monai_rurnet.data.geotiff import (
    PROB_NODATA,
    create_like,
    iter_windows,
    normalize_bands,
    raster_unit_scale,
    read_window,
    three_bands,
    valid_pixels,
)
from monai_rurnet.data.guidance_io import GuidanceRasters
from monai_rurnet.data.roads import void_mask
from monai_rurnet.data.strokes import apply_strokes
from monai_rurnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from monai_rurnet.data.writers import GeoTiffMaskWriter
from monai_rurnet.engines.distributed import all_ranks_ok, rank_and_world
from monai_rurnet.inferers.probability import foreground_probability
from monai_rurnet.networks.guidance import pack_guidance
from monai_rurnet.runners.base import SegmentationRunner
from monai_rurnet.utils import as_bool, temp_name

__all__ = [
    "DEFAULT_MAX_RASTER_PIXELS",
    "GEO_SUFFIXES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "GeoTiffSegmentationRunner",
    "segment_raster",
]

#: Default pixel limit of the GeoTIFF runner (1 gigapixel, ~450 tiles of 1500x1500; memory stays bounded, but
#: time grows with it): a raster that declares more is refused unless ``max_pixels`` is raised.
DEFAULT_MAX_RASTER_PIXELS = 1_000_000_000
GEO_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


def patch_starts(size: int, roi: int, stride: int) -> list[int]:
    """Patch start offsets along one axis (MONAI's sliding-window grid): every ``stride``, last flush with the end;
    an axis shorter than ``roi`` gets one patch centred on it (zero padding on both sides, as MONAI pads)."""
    if size <= roi:
        return [-((roi - size) // 2)]
    return list(range(0, size - roi, stride)) + [size - roi]


def segment_raster(
    src_path: str | Path,
    out_dir: str | Path,
    network: Callable[..., torch.Tensor],
    inferer: Callable[..., torch.Tensor] | None = None,
    roi_size: int | Sequence[int] = 256,
    sw_batch_size: int = 4,
    overlap: float = 0.25,
    mode: str = "gaussian",
    foreground: int = 1,
    window: int = 2048,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    void_value: float | None = 255,
    device: str | torch.device | None = None,
    writer: GeoTiffMaskWriter | None = None,
    progress: bool = False,
    rank: int = 0,
    world: int = 1,
    prior: str | Path | None = None,
    strokes: str | Path | None = None,
) -> list[Path]:
    """Segment one raster window by window into ``out_dir/<stem>_seg.tif`` (and ``<stem>_prob.tif``).

    Args:
        src_path: GeoTIFF/TIFF/PNG/JPEG readable by rasterio (1, 3 or 4 bands; uint8 expected).
        out_dir: output folder; outputs carry the input's CRS and geotransform when it has them.
        network: segmentation network returning logits ``(B, K, h, w)`` (not moved: pass a matching ``device``).
        inferer: called as ``inferer(patches, network)`` on each batch of patches, e.g.
            :class:`~monai_rurnet.inferers.FastInferer` (anytime ``steps``/``tol``, fast backends) or
            :class:`~monai_rurnet.inferers.FlipEnsembleInferer`; ``None`` calls the network.
        roi_size: sliding-window patch size (a multiple of 16).
        sw_batch_size: patches per forward pass.
        overlap: patch overlap fraction of the global sliding-window grid.
        mode: blending, ``"gaussian"`` or ``"constant"`` (MONAI importance maps).
        foreground: class index written (softmax), or the single channel (sigmoid) when ``K == 1``.
        window: output window size in px; peak memory grows with ``(window + roi_size)^2``.
        mean, std: per-band normalisation after scaling to [0, 1] (ImageNet, as in training).
        void_value: input pixels with every band equal to it (white, 255) are void: probability 0.
        device: where to run (default: the network's parameters' device, else CPU).
        writer: the outputs (default :class:`~monai_rurnet.data.writers.GeoTiffMaskWriter`: threshold 0.5, with
            the probability raster).
        progress: show a progress bar over the windows, with the estimated time left.
        rank, world: with ``world > 1`` every rank of the (initialised) process group calls this for the same raster
            and predicts its own band of window rows; rank 0 assembles the outputs. Windows do not depend on one
            another (every pixel is blended from one global patch grid), so the files equal one process's.
        prior, strokes: interactive refinement (:mod:`monai_rurnet.data.guidance_io`): a prior raster (e.g. an
            earlier ``_prob.tif``, nodata = no prior) and a stroke raster (0/1/2) on the raster's grid, read
            window by window with the image; the patches carry them as two extra channels (zero padding reads
            as "no prior", "no stroke") and stroke pixels get probability 1 (foreground) or 0 (background).

    Input checks (``ValueError`` naming the file, nothing written): rasters under 16 px a side, negative values,
    float values outside [0, 1] and [0, 255] (:func:`~monai_rurnet.data.geotiff.raster_unit_scale`). Nodata
    pixels (the raster's nodata value, and NaN/Inf in float rasters) are not segmented: ``PROB_NODATA`` (-1, the
    ``_prob`` raster's nodata tag) in ``_prob`` and 0 in ``_seg``.

    Returns the output paths. Outputs are written to temp files and renamed at the end (``_seg.tif`` last).
    """
    src_path, out_dir = Path(src_path), Path(out_dir)
    roi = (roi_size, roi_size) if isinstance(roi_size, int) else tuple(int(r) for r in roi_size)
    if any(r % 16 for r in roi):
        raise ValueError(f"roi_size {roi} must be a multiple of 16")
    if window <= 0:
        raise ValueError(f"window must be positive, got {window}")
    stride = tuple(max(int(r * (1 - overlap)), 1) for r in roi)
    if device is None:
        p = next(network.parameters(), None) if isinstance(network, torch.nn.Module) else None
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)
    writer = writer if writer is not None else GeoTiffMaskWriter()
    importance = compute_importance_map(roi, mode=mode, sigma_scale=0.125, device=device).float()
    importance = importance.clamp_min(max(float(importance[importance > 0].min()), 1e-3))  # as MONAI

    def predict(batch: torch.Tensor) -> torch.Tensor:
        return inferer(batch, network) if inferer is not None else network(batch)

    try:
        ds = rasterio.open(src_path)
    except rasterio.errors.RasterioIOError as e:
        raise OSError(f"{src_path}: cannot open the raster ({e})") from e
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with ds, GuidanceRasters(ds, prior, strokes) as guidance:
            scale = raster_unit_scale(ds)
            rows = patch_starts(ds.height, roi[0], stride[0])
            cols = patch_starts(ds.width, roi[1], stride[1])
            windows = list(iter_windows(ds.height, ds.width, window, align_last=False))

            def predict_window(w: Window) -> np.ndarray:
                return _predict_window(
                    ds, w, rows, cols, roi, predict, importance, mean, std, sw_batch_size, foreground,
                    void_value, device, scale, guidance,
                )  # fmt: skip

            if world > 1:
                _segment_strips(src_path, out_dir, windows, predict_window, writer, rank, world, progress)
            else:
                with writer.open(src_path, out_dir) as write:
                    for w in _bar(windows, src_path.name, progress):
                        write(predict_window(w), w)
    return writer.outputs(src_path, out_dir)


def _bar(windows: list[Window], name: str, progress: bool) -> Any:
    return tqdm(windows, desc=name, unit="window", disable=not progress or len(windows) < 2)


def _segment_strips(
    src_path: Path,
    out_dir: Path,
    windows: list[Window],
    predict_window: Callable[[Window], np.ndarray],
    writer: GeoTiffMaskWriter,
    rank: int,
    world: int,
    progress: bool,
) -> None:
    """One raster across the ranks of the process group: each rank predicts a contiguous band of window rows
    into its own temporary tiled GeoTIFF; after every rank is done, rank 0 copies the windows into the outputs
    (the same files one process writes) and removes the strips. A failure on any rank fails the raster on all."""
    import torch.distributed as dist

    row_starts = sorted({int(w.row_off) for w in windows})
    owner = {
        row_starts[i]: r
        for r, band in enumerate(np.array_split(np.arange(len(row_starts)), world))
        for i in band
    }
    strip = out_dir / temp_name(f"{src_path.stem}_strip{rank}.tif")
    error: BaseException | None = None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with create_like(src_path, strip, count=1, dtype="float32", nodata=PROB_NODATA) as dst:
            for w in _bar([w for w in windows if owner[int(w.row_off)] == rank], src_path.name, progress):
                dst.write(predict_window(w)[None], window=w)
    except Exception as e:  # reported on every rank below, so that none waits forever
        error = e
    strips: list[str | None] = [None] * world
    dist.all_gather_object(strips, str(strip))
    try:
        if not all_ranks_ok(error is None):
            raise error or RuntimeError(f"{src_path}: another rank failed on this raster (see its message)")
        if rank == 0:
            try:
                with ExitStack() as stack:
                    readers = [stack.enter_context(rasterio.open(p)) for p in strips]
                    write = stack.enter_context(writer.open(src_path, out_dir))
                    for w in windows:
                        write(readers[owner[int(w.row_off)]].read(1, window=w), w)
            except Exception as e:  # reported on every rank below
                error = e
        if not all_ranks_ok(error is None):
            raise error or RuntimeError(
                f"{src_path}: rank 0 could not assemble the outputs (see its message)"
            )
    finally:
        dist.barrier()
        if rank == 0:
            for p in strips:
                Path(p).unlink(missing_ok=True)


def _predict_window(
    ds: Any,
    w: Window,
    rows: list[int],
    cols: list[int],
    roi: tuple[int, int],
    predict: Callable[[torch.Tensor], torch.Tensor],
    importance: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    sw_batch_size: int,
    foreground: int,
    void_value: float | None,
    device: torch.device,
    scale: float,
    guidance: GuidanceRasters,
) -> np.ndarray:
    """Foreground probability ``(h, w)`` of output window ``w`` from the global patches overlapping it."""
    r0, c0 = int(w.row_off), int(w.col_off)
    r1, c1 = r0 + int(w.height), c0 + int(w.width)
    pr = [s for s in rows if s < r1 and s + roi[0] > r0]
    pc = [s for s in cols if s < c1 and s + roi[1] > c0]
    # input region covering those patches (zero padding outside the raster, after normalisation)
    ir0, ic0 = pr[0], pc[0]
    ir1, ic1 = pr[-1] + roi[0], pc[-1] + roi[1]
    rr0, cc0, rr1, cc1 = max(ir0, 0), max(ic0, 0), min(ir1, ds.height), min(ic1, ds.width)
    raw = three_bands(read_window(ds, Window(ic0, ir0, ic1 - ic0, ir1 - ir0), pad=None), ds.name)
    valid = valid_pixels(raw, ds.nodata)
    x = normalize_bands(raw, mean, std, ds.name, scale=scale, valid=valid)
    prior, strokes = guidance.read(Window(ic0, ir0, ic1 - ic0, ir1 - ir0))
    if prior is not None or strokes is not None:
        x = np.concatenate([x, pack_guidance(prior, strokes, x.shape[1:])])
    pads = ((0, 0), (rr0 - ir0, ir1 - rr1), (cc0 - ic0, ic1 - cc1))
    if any(p for pair in pads for p in pair):
        x = np.pad(x, pads)
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(device)

    acc: torch.Tensor | None = None
    wsum = torch.zeros((r1 - r0, c1 - c0), device=device)
    patches = [(r, c) for r in pr for c in pc]
    with torch.inference_mode():
        for i in range(0, len(patches), sw_batch_size):
            chunk = patches[i : i + sw_batch_size]
            batch = torch.stack(
                [xt[:, r - ir0 : r - ir0 + roi[0], c - ic0 : c - ic0 + roi[1]] for r, c in chunk]
            )
            logits = predict(batch).float()
            if acc is None:
                acc = torch.zeros((logits.shape[1], r1 - r0, c1 - c0), device=device)
            for (r, c), lg in zip(chunk, logits):
                # intersection of the patch with the output window, in window and patch coordinates
                a0, a1 = max(r, r0), min(r + roi[0], r1)
                b0, b1 = max(c, c0), min(c + roi[1], c1)
                imp = importance[a0 - r : a1 - r, b0 - c : b1 - c]
                acc[:, a0 - r0 : a1 - r0, b0 - c0 : b1 - c0] += lg[:, a0 - r : a1 - r, b0 - c : b1 - c] * imp
                wsum[a0 - r0 : a1 - r0, b0 - c0 : b1 - c0] += imp
    assert acc is not None
    logits_w = acc / wsum
    out = foreground_probability(logits_w, foreground, dim=0).cpu().numpy().astype(np.float32)
    inside = (slice(r0 - rr0, r1 - rr0), slice(c0 - cc0, c1 - cc0))
    if void_value is not None:
        out[void_mask(raw, value=void_value)[inside]] = 0.0
    if strokes is not None:
        out = apply_strokes(out, strokes[inside]).astype(np.float32)
    out[~valid[inside]] = PROB_NODATA
    return out


class GeoTiffSegmentationRunner(SegmentationRunner):
    """Segment every raster of ``dataset`` (``{"image": path}`` items) with :func:`segment_raster`.

    Same contract as :class:`~monai_rurnet.runners.FolderSegmentationRunner` (a bad file is reported by name and
    does not stop the others, a summary line, ``SystemExit(1)`` when any file failed, existing outputs skipped
    unless ``overwrite``, atomic outputs, interactive refinement from ``prior_dir``/``strokes_dir``: a stem's
    ``_prob.tif``/``_seg.tif``/``_strokes.tif`` or PNG forms). ``inferer`` runs each batch of patches (e.g.
    :class:`~monai_rurnet.inferers.FastInferer`, wrapped in :class:`~monai_rurnet.inferers.FlipEnsembleInferer`
    for test-time mirroring); the window and sliding-window options are those of :func:`segment_raster`.
    """

    def __init__(
        self,
        *args: Any,
        writer: GeoTiffMaskWriter | None = None,
        roi_size: int | Sequence[int] = 256,
        sw_batch_size: int = 4,
        overlap: float = 0.25,
        mode: str = "gaussian",
        window: int = 2048,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        void_value: float | None = 255,
        max_pixels: int | None = DEFAULT_MAX_RASTER_PIXELS,
        split_rasters: bool | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            *args,
            writer=writer if writer is not None else GeoTiffMaskWriter(),
            max_pixels=max_pixels,
            **kwargs,
        )
        self.options: dict[str, Any] = {
            "roi_size": roi_size,
            "sw_batch_size": sw_batch_size,
            "overlap": overlap,
            "mode": mode,
            "window": window,
            "mean": mean,
            "std": std,
            "void_value": void_value,
        }
        self.split_rasters = (
            None if split_rasters in (None, "auto") else as_bool(split_rasters, "split_rasters")
        )

    def ranks_share_inputs(self, n_inputs: int, world: int) -> bool:
        """Under torchrun, split each raster among the ranks (row strips) when there are fewer rasters than ranks
        (one huge raster), otherwise share the rasters out; ``split_rasters`` forces either."""
        return n_inputs < world if self.split_rasters is None else self.split_rasters

    def process(self, index: int) -> None:
        rank, world = rank_and_world() if self.together else (0, 1)
        path = Path(self.dataset.data[index]["image"])
        guidance = self.guidance_files()
        segment_raster(
            path,
            self.output_dir,
            self.network,
            self.inferer,
            foreground=self.foreground,
            device=self.device,
            writer=self.writer,
            progress=self.progress and (not self.together or rank == 0),
            rank=rank,
            world=world,
            prior=guidance.prior(path.stem),
            strokes=guidance.strokes(path.stem),
            **self.options,
        )
