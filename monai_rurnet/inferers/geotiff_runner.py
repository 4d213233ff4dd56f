"""GeoTIFF inference for the ``massroads`` bundle: bounded-memory, window-by-window, georeferencing preserved.

:func:`segment_raster` always works window by window (there is no separate in-memory path): the raster is cut
into non-overlapping output windows of ``window`` px (aligned to the 256 px output tiles when ``window`` is a
multiple of 256) and each one is predicted from the sliding-window patches of one *global* patch grid (the
grid MONAI's ``SlidingWindowInferer`` uses on the whole image: stride ``roi * (1 - overlap)``, last patch
flush with the edge) that overlap it, blended with the same Gaussian importance map. Only the input region
those patches cover (the window plus at most ``roi_size`` px around it) is read. A pixel's value therefore
does not depend on ``window``: windowed output equals whole-image sliding-window inference (up to float
rounding), and peak memory is ``O((window + roi)^2)`` whatever the raster size. Patches on a window boundary
are computed once per window they touch (about ``roi / window`` extra work, ~12% at 2048/256).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from monai.data.utils import compute_importance_map
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from monai_rurnet.data.geotiff import create_like
from monai_rurnet.inferers.anytime import RecurrentPredictor
from monai_rurnet.inferers.ensemble import FlipEnsembleInferer
from monai_rurnet.inferers.fast import compute_dtype, optimize_for_inference
from monai_rurnet.inferers.runner import FolderSegmentationRunner

__all__ = ["GEO_SUFFIXES", "GeoTiffOutputs", "GeoTiffSegmentationRunner", "segment_raster", "patch_starts"]

GEO_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
logger = logging.getLogger(__name__)


def patch_starts(size: int, roi: int, stride: int) -> list[int]:
    """Patch start offsets along one axis (MONAI's sliding-window grid): every ``stride``, last flush with the end;
    an axis shorter than ``roi`` gets one patch centred on it (zero padding on both sides, as MONAI pads)."""
    if size <= roi:
        return [-((roi - size) // 2)]
    return list(range(0, size - roi, stride)) + [size - roi]


class GeoTiffOutputs:
    """Names of the outputs of one input: ``<stem>_seg.tif`` (uint8 0/255) and ``<stem>_prob.tif`` (float32)."""

    def outputs(self, src: Path, out_dir: Path) -> list[Path]:
        return [Path(out_dir) / f"{Path(src).stem}_seg.tif", Path(out_dir) / f"{Path(src).stem}_prob.tif"]


def _to_unit(a: np.ndarray, path: Any) -> np.ndarray:
    """Band array ``(C, h, w)`` -> float32 in [0, 1] (integers divided by their dtype's maximum)."""
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.float32) / float(np.iinfo(a.dtype).max)
    if np.issubdtype(a.dtype, np.floating):
        return a.astype(np.float32)
    raise ValueError(f"{path}: unsupported pixel type {a.dtype}")


def _three_bands(a: np.ndarray, path: Any) -> np.ndarray:
    if a.shape[0] == 3:
        return a
    if a.shape[0] == 1:
        return np.repeat(a, 3, axis=0)
    if a.shape[0] > 3:  # RGBA / extra bands: keep RGB
        return a[:3]
    raise ValueError(f"{path}: expected 1, 3 or 4 bands, got {a.shape[0]}")


def _output_windows(height: int, width: int, window: int) -> list[Window]:
    """Non-overlapping partition of the raster into ``window`` x ``window`` blocks (edge blocks smaller)."""
    return [
        Window(c, r, min(window, width - c), min(window, height - r))
        for r in range(0, height, window)
        for c in range(0, width, window)
    ]


def segment_raster(
    src_path: str | Path,
    out_dir: str | Path,
    network: torch.nn.Module,
    roi_size: int | Sequence[int] = 256,
    sw_batch_size: int = 4,
    overlap: float = 0.25,
    mode: str = "gaussian",
    threshold: float = 0.5,
    foreground: int = 1,
    window: int = 2048,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    void_value: float | None = 255,
    steps: int | None = None,
    tol: float | None = None,
    device: str | torch.device | None = None,
    write_prob: bool = True,
    flip_tta: bool = False,
) -> list[Path]:
    """Segment one raster window by window into ``out_dir/<stem>_seg.tif`` (and ``<stem>_prob.tif``).

    Args:
        src_path: GeoTIFF/TIFF/PNG/JPEG readable by rasterio (1, 3 or 4 bands; uint8 expected).
        out_dir: output folder; outputs carry the input's CRS and geotransform when it has them.
        network: segmentation network returning logits ``(B, K, h, w)``; put in eval mode, not moved (pass a
            ``device`` matching its parameters).
        roi_size: sliding-window patch size (a multiple of 16).
        sw_batch_size: patches per forward pass.
        overlap: patch overlap fraction of the global sliding-window grid.
        mode: blending, ``"gaussian"`` or ``"constant"`` (MONAI importance maps).
        threshold: on the foreground probability for ``_seg.tif`` (0 or 255).
        foreground: class index written (softmax), or the single channel (sigmoid) when ``K == 1``.
        window: output window size in px; peak memory grows with ``(window + roi_size)^2``.
        (No margin is needed: each window's context comes from the overlapping patches of the global grid,
        up to ``roi_size`` px around it.)
        mean, std: per-channel normalisation after scaling to [0, 1] (ImageNet, as in training).
        void_value: input pixels with every band equal to it (white, 255) are void: probability 0.
        steps, tol: anytime inference of a recurrent network (see :class:`RecurrentPredictor`).
        device: where to run the network (default: the network's device).
        write_prob: also write the float32 probability raster.
        flip_tta: average each patch batch's class probabilities over its 4 mirrored copies
            (:class:`~monai_rurnet.inferers.FlipEnsembleInferer`; 4x the time).

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
        p = next(network.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)
    network.eval()
    predictor: Callable[[torch.Tensor], torch.Tensor] = RecurrentPredictor(network, steps, tol)
    if flip_tta:
        predictor = partial(FlipEnsembleInferer(), network=predictor)
    importance = compute_importance_map(roi, mode=mode, sigma_scale=0.125, device=device).float()
    importance = importance.clamp_min(max(float(importance[importance > 0].min()), 1e-3))  # as MONAI
    mean_a = np.asarray(mean, np.float32)[:, None, None]
    std_a = np.asarray(std, np.float32)[:, None, None]
    seg_path, prob_path = GeoTiffOutputs().outputs(src_path, out_dir)

    try:
        ds = rasterio.open(src_path)
    except rasterio.errors.RasterioIOError as e:
        raise OSError(f"{src_path}: cannot open the raster ({e})") from e
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with ds:
            height, width = ds.height, ds.width
            rows = patch_starts(height, roi[0], stride[0])
            cols = patch_starts(width, roi[1], stride[1])
            with ExitStack() as stack:  # on exit: prob renamed first, seg (the "done" marker) last
                dst_seg = stack.enter_context(create_like(src_path, seg_path, count=1, dtype="uint8"))
                dst_prob = (
                    stack.enter_context(create_like(src_path, prob_path, count=1, dtype="float32"))
                    if write_prob
                    else None
                )
                for w in _output_windows(height, width, window):
                    prob = _predict_window(
                        ds, w, rows, cols, roi, predictor, importance, mean_a, std_a,
                        sw_batch_size, foreground, void_value, device,
                    )  # fmt: skip
                    dst_seg.write(((prob >= threshold).astype(np.uint8) * 255)[None], window=w)
                    if dst_prob is not None:
                        dst_prob.write(prob[None], window=w)
    return [seg_path, prob_path] if write_prob else [seg_path]


def _predict_window(
    ds: Any,
    w: Window,
    rows: list[int],
    cols: list[int],
    roi: tuple[int, int],
    predictor: Callable[[torch.Tensor], torch.Tensor],
    importance: torch.Tensor,
    mean: np.ndarray,
    std: np.ndarray,
    sw_batch_size: int,
    foreground: int,
    void_value: float | None,
    device: torch.device,
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
    raw = _three_bands(ds.read(window=Window(cc0, rr0, cc1 - cc0, rr1 - rr0)), ds.name)
    x = (_to_unit(raw, ds.name) - mean) / std
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
            logits = predictor(batch).float()
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
    if logits_w.shape[0] == 1:
        prob = torch.sigmoid(logits_w[0])
    else:
        prob = torch.softmax(logits_w, dim=0)[foreground]
    out = prob.cpu().numpy().astype(np.float32)
    if void_value is not None:
        void = np.all(raw == void_value, axis=0)
        out[void[r0 - rr0 : r1 - rr0, c0 - cc0 : c1 - cc0]] = 0.0
    return out


class GeoTiffSegmentationRunner(FolderSegmentationRunner):
    """Segment every GeoTIFF/TIFF/PNG/JPEG in ``dataset_dir`` with :func:`segment_raster`.

    Same contract as :class:`FolderSegmentationRunner`: a bad file is reported by name and does not stop the
    others, a summary line is printed, ``SystemExit(1)`` when any file failed, files whose outputs exist are
    skipped unless ``overwrite``, outputs are written atomically. With ``fast`` (default) the network runs
    through :func:`~monai_rurnet.inferers.optimize_for_inference` (same outputs, 1.4-1.7x faster on a CPU),
    in ``precision`` (``"float32"``, or ``"bfloat16"`` on CPUs with AVX512-BF16/AMX; needs ``fast``);
    ``flip_tta`` averages mirrored copies of every patch batch (4x the time).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        dataset_dir: str | Path,
        output_dir: str | Path,
        weights: str | Path | None = None,
        device: str | torch.device = "cpu",
        roi_size: int | Sequence[int] = 256,
        sw_batch_size: int = 4,
        overlap: float = 0.25,
        mode: str = "gaussian",
        threshold: float = 0.5,
        window: int = 2048,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        void_value: float | None = 255,
        steps: int | None = None,
        tol: float | None = None,
        suffixes: Sequence[str] = GEO_SUFFIXES,
        overwrite: bool = False,
        foreground: int = 1,
        progress: bool = True,
        exit_on_failure: bool = True,
        fast: bool = True,
        flip_tta: bool = False,
        precision: str = "float32",
    ) -> None:
        if not fast and compute_dtype(precision) is not None:
            raise ValueError(f"precision={precision!r} runs on the fast path: set fast=True.")
        super().__init__(
            network=network,
            preprocessing=lambda d: d,
            inferer=lambda x, net: net(x),
            dataset_dir=dataset_dir,
            output_dir=output_dir,
            weights=weights,
            device=device,
            writer=GeoTiffOutputs(),
            suffixes=suffixes,
            overwrite=overwrite,
            foreground=foreground,
            progress=progress,
            exit_on_failure=exit_on_failure,
        )
        self.kwargs: dict[str, Any] = {
            "roi_size": roi_size,
            "sw_batch_size": sw_batch_size,
            "overlap": overlap,
            "mode": mode,
            "threshold": threshold,
            "window": window,
            "mean": mean,
            "std": std,
            "void_value": void_value,
            "steps": steps,
            "tol": tol,
            "flip_tta": flip_tta,
        }
        # the weights are loaded by now (FolderSegmentationRunner.__init__): build the fast predictor once
        self.predictor: Any = (
            optimize_for_inference(self.network, steps, tol, precision=precision) if fast else self.network
        )

    def process(self, path: Path) -> None:
        segment_raster(
            path,
            self.output_dir,
            self.predictor,
            foreground=self.foreground,
            device=self.device,
            **self.kwargs,
        )
