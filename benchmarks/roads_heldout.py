"""Road-class accuracy of massroads weights on its held-out training tiles, through the bundle's inference (issue 23).

Each model runs through the massroads bundle's GeoTIFF runner (its ``inference.json``: mirroring, sliding windows,
void handling) on the full 1500x1500 tiles of ``train.json``'s ``val_tiles``, as ``python -m monai.bundle run`` would,
with ``--sw_overlap`` / ``--sw_mode`` as given. Scored on the non-void pixels (void: white in every band), counts
pooled over the tiles, road class only (the figures of the roads literature and of issue 23):

- road P/R break-even (100 thresholds, :func:`monai_rurnet.metrics.breakeven_from_histograms`);
- relaxed (rho = 3 px, Mnih 2013) precision / recall at threshold 0.5 and their break-even over thresholds
  0.05, 0.10, ..., 0.95 (linear interpolation where P - R changes sign);
- road IoU at 0.5; seconds per tile (this process, ``--threads`` threads).

    python benchmarks/roads_heldout.py --model bundles/massroads/models/model.pt --overlap 0.25 0.5
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from interactive import ROADS_BUNDLE, build_roads_runner, predict_raster
from monai.bundle import ConfigParser
from PIL import Image
from robustness_drive import ROOT
from scipy import ndimage

from monai_rurnet.metrics import breakeven_from_histograms

RELAXED_THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)
RHO = 3


def relaxed_counts(prob: np.ndarray, road: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``(len(RELAXED_THRESHOLDS), 4)``: matched predicted, predicted, matched true and true road pixels."""
    near_true = ndimage.distance_transform_edt(~road) <= RHO
    rows = []
    for t in RELAXED_THRESHOLDS:
        pred = (prob >= t) & valid
        near_pred = ndimage.distance_transform_edt(~pred) <= RHO if pred.any() else np.zeros_like(pred)
        rows.append([(pred & near_true).sum(), pred.sum(), (road & near_pred).sum(), road.sum()])
    return np.asarray(rows, dtype=np.float64)


def relaxed_breakeven(counts: np.ndarray) -> float:
    """Relaxed precision = recall, interpolated between the thresholds where their difference changes sign."""
    p = counts[:, 0] / np.maximum(counts[:, 1], 1)
    r = counts[:, 2] / np.maximum(counts[:, 3], 1)
    d = p - r
    for k in range(len(d) - 1):
        if d[k] * d[k + 1] <= 0 and d[k] != d[k + 1]:
            s = d[k] / (d[k] - d[k + 1])
            return float(p[k] + s * (p[k + 1] - p[k]))
    k = int(np.argmin(np.abs(d)))
    return float((p[k] + r[k]) / 2)


def score(model: str, data: Path, tiles: list[str], overlap: float, mode: str) -> dict[str, float]:
    """Road metrics of ``model`` on ``tiles`` with sliding-window ``overlap`` and blending ``mode``."""
    hist = np.zeros((2, 100))
    relaxed = np.zeros((len(RELAXED_THRESHOLDS), 4))
    inter = union = 0
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        runner = build_roads_runner(model, work)
        runner.options.update(overlap=overlap, mode=mode)
        for tile in tiles:
            img = Image.open(data / "sat" / f"{tile}.png").convert("RGB")
            src = work / f"{tile}.png"
            img.save(src)
            road = np.asarray(Image.open(data / "map" / f"{tile}.png").convert("L")) > 127
            valid = ~(np.asarray(img) == 255).all(axis=-1)
            road &= valid
            t0 = time.perf_counter()
            prob = predict_raster(runner, src)
            seconds.append(time.perf_counter() - t0)
            bins = np.clip((prob * 100).astype(int), 0, 99)
            for c in (0, 1):
                hist[c] += np.bincount(bins[valid & (road == bool(c))], minlength=100)
            pred = (prob >= 0.5) & valid
            inter += (pred & road).sum()
            union += (pred | road).sum()
            relaxed += relaxed_counts(prob, road, valid)
    at_half = relaxed[int(np.flatnonzero(RELAXED_THRESHOLDS == 0.5)[0])]
    rp, rr = at_half[0] / max(at_half[1], 1), at_half[2] / max(at_half[3], 1)
    return {
        "road_breakeven": breakeven_from_histograms(hist[0], hist[1])["breakeven_road"],
        "relaxed_breakeven": relaxed_breakeven(relaxed),
        "relaxed_precision": rp,
        "relaxed_recall": rr,
        "road_iou": inter / max(union, 1),
        "s_per_tile": float(np.median(seconds)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", default=[str(ROADS_BUNDLE / "models" / "model.pt")])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "MassRoads"))
    ap.add_argument(
        "--overlap", nargs="+", type=float, default=[0.25], help="sliding-window overlaps to score"
    )
    ap.add_argument("--mode", default="gaussian", choices=("gaussian", "constant"), help="window blending")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tiles = ConfigParser.load_config_file(str(ROADS_BUNDLE / "configs" / "train.json"))["val_tiles"]
    lines = [
        "| model | overlap | road P/R break-even | relaxed break-even | relaxed P / R at 0.5 | road IoU | s / tile |",
        "|---|---|---|---|---|---|---|",
    ]
    for model in args.model:
        for overlap in args.overlap:
            m = score(model, Path(args.data) / "train", tiles, overlap, args.mode)
            lines.append(
                f"| {model} | {overlap} | {m['road_breakeven']:.4f} | {m['relaxed_breakeven']:.4f} | "
                f"{m['relaxed_precision']:.4f} / {m['relaxed_recall']:.4f} | {m['road_iou']:.4f} | "
                f"{m['s_per_tile']:.1f} |"
            )
            print(lines[-1], flush=True)
    print(f"\nheld-out tiles {tiles}, mode {args.mode}, {args.threads} thread(s)\n\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
