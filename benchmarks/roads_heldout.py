"""Road-class accuracy of massroads weights on its held-out training tiles, through the bundle's inference (issue 23).

Each model runs through the massroads bundle's GeoTIFF runner (its ``inference.json``: mirroring, sliding windows,
void handling) on the full 1500x1500 tiles of ``train.json``'s ``val_tiles``, as ``python -m monai.bundle run`` would,
with ``--sw_overlap`` / ``--sw_mode`` as given. Scored on the non-void pixels (void: white in every band), counts
pooled over the tiles, road class only (the figures of the roads literature and of issue 23):

- road P/R break-even (100 thresholds, the library's :class:`~monai_rurnet.metrics.PRBreakEven`);
- relaxed (rho = 3 px, Mnih 2013) precision / recall at threshold 0.5 and their break-even over thresholds
  0.05, 0.10, ..., 0.95 (:class:`~monai_rurnet.metrics.RelaxedPrecisionRecall` at each, crossing by the library's
  :func:`~monai_rurnet.metrics.breakeven_point`, as for the P/R break-even);
- road IoU at 0.5 (:class:`~monai_rurnet.metrics.PaperSegMetrics`); seconds per tile (this process, ``--threads``
  threads).

``--published 75`` also scores the tiles as the official test tiles exist today: resized to 1024x1024 (Lanczos),
saved as JPEG at that quality, resized back to 1500x1500 (bicubic) before inference, against the full-size labels
and the original void pixels. ``--official`` also scores the official validation tile(s) in ``DATA/valid`` (here
10228690_15), whose image exists only in that published form (1024x1024), resized back to its 1500x1500 map (bicubic).

    python benchmarks/roads_heldout.py --model bundles/massroads/models/model.pt --overlap 0.25 0.5 --published 75
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from cv_drive import inference_overrides, parse_overrides
from interactive import ROADS_BUNDLE, build_roads_runner, predict_raster
from monai.bundle import ConfigParser
from PIL import Image
from robustness_drive import ROOT

from monai_rurnet.data import massroads_datalist, void_mask
from monai_rurnet.metrics import (
    PaperSegMetrics,
    PRBreakEven,
    RelaxedPrecisionRecall,
    apply_fov,
    breakeven_point,
)

RELAXED_THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)
RHO = 3


def as_published(img: Image.Image, quality: int, size: int = 1024) -> Image.Image:
    """``img`` resized to ``size`` (Lanczos), JPEG-compressed at ``quality`` and resized back (bicubic)."""
    buf = io.BytesIO()
    img.resize((size, size), Image.LANCZOS).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB").resize(img.size, Image.BICUBIC)


def tile_pairs(data: str, split: str, ids: list[str] | None = None) -> list[tuple[Path, Path]]:
    """(image, road map) paths of the ``split`` tiles (``ids`` only, if given) under the dataset folder ``data``."""
    return [(Path(d["image"]), Path(d["label"])) for d in massroads_datalist(data, split, ids=ids)]


def score(
    model: str,
    pairs: list[tuple[Path, Path]],
    overlap: float,
    mode: str,
    quality: int | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Road metrics of ``model`` on the (image, road map) ``pairs`` (as published at JPEG ``quality`` if given) with
    sliding-window ``overlap`` and blending ``mode``. An image smaller than its map (an official tile as published)
    is resized to the map (bicubic) before inference, as the official test tiles are scored. ``overrides``: the
    bundle's ``network_def`` values for weights of another network."""
    breakeven, paper = PRBreakEven(num_thresholds=100), PaperSegMetrics()
    relaxed = [RelaxedPrecisionRecall(rho=RHO, threshold=float(t)) for t in RELAXED_THRESHOLDS]
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        runner = build_roads_runner(model, work, overrides)
        runner.options.update(overlap=overlap, mode=mode)
        for image, label in pairs:
            road_map = Image.open(label).convert("L")
            img = Image.open(image).convert("RGB")
            if img.size != road_map.size:
                img = img.resize(road_map.size, Image.BICUBIC)
            # the runner's void pixels (of the original tile)
            valid = ~void_mask(np.asarray(img), channel_dim=-1)
            src = work / f"{image.stem}.png"
            (img if quality is None else as_published(img, quality)).save(src)
            road = np.asarray(road_map) > 127
            t0 = time.perf_counter()
            prob = predict_raster(runner, src)
            seconds.append(time.perf_counter() - t0)
            y_pred = torch.from_numpy(prob)[None, None]
            y = apply_fov(
                torch.from_numpy(road.astype(np.float32))[None, None], torch.from_numpy(valid)[None, None]
            )
            for metric in (breakeven, paper, *relaxed):
                metric(y_pred, y)
    curve = [m.aggregate() for m in relaxed]
    p = np.array([c["relaxed_precision"] for c in curve])
    r = np.array([c["relaxed_recall"] for c in curve])
    at_half = int(np.flatnonzero(RELAXED_THRESHOLDS == 0.5)[0])
    return {
        "road_breakeven": breakeven.aggregate()["breakeven_road"],
        "relaxed_breakeven": breakeven_point(p, r, RELAXED_THRESHOLDS)[0],
        "relaxed_precision": float(p[at_half]),
        "relaxed_recall": float(r[at_half]),
        "road_iou": paper.aggregate()["IoU_per_class"][1],
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
    ap.add_argument(
        "--published",
        nargs="*",
        type=int,
        default=[],
        help="also score the tiles as 1024x1024 JPEGs of these qualities",
    )
    ap.add_argument(
        "--official",
        action="store_true",
        help="also score the official validation tile(s) of DATA/valid as published (1024x1024, upsampled back)",
    )
    ap.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="network_def override for weights of another network than the bundle's (every --model), as in "
        'cv_drive.py, e.g. network_def=\'{"_target_": "monai_rurnet.networks.build_network", '
        '"name": "monai_basic_unet"}\'',
    )
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    try:
        parsed = parse_overrides(args.override)
    except ValueError as err:
        ap.error(str(err))
    overrides = inference_overrides(parsed)
    if other := sorted(set(parsed) - set(overrides)):
        ap.error(f"--override {other}: network_def... keys only (the network the weights were trained with)")
    torch.set_num_threads(args.threads)
    tiles = ConfigParser.load_config_file(str(ROADS_BUNDLE / "configs" / "train.json"))["val_tiles"]
    sets = {"as is": tile_pairs(args.data, "train", tiles)}
    if args.official:
        sets["official valid, as published"] = tile_pairs(args.data, "valid")
    lines = [
        "| model | tiles | overlap | road P/R break-even | relaxed break-even | relaxed P / R at 0.5 | road IoU "
        "| s / tile |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model in args.model:
        runs = [(form, pairs, None) for form, pairs in sets.items()]
        runs += [(f"1024² JPEG q{q}", sets["as is"], q) for q in args.published]
        for form, pairs, quality in runs:
            for overlap in args.overlap:
                m = score(model, pairs, overlap, args.mode, quality, overrides)
                lines.append(
                    f"| {model} | {form} | {overlap} | {m['road_breakeven']:.4f} | {m['relaxed_breakeven']:.4f} | "
                    f"{m['relaxed_precision']:.4f} / {m['relaxed_recall']:.4f} | {m['road_iou']:.4f} | "
                    f"{m['s_per_tile']:.1f} |"
                )
                print(lines[-1], flush=True)
    print(f"\nheld-out tiles {tiles}, mode {args.mode}, {args.threads} thread(s)\n\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
