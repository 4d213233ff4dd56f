"""Interactive refinement benchmark: a simulated annotator corrects the retina bundle's result stroke by stroke.

On held-out DRIVE training images, as they are and degraded the way another camera degrades them (rescaled,
darkened, blurred, JPEG; the transforms of ``benchmarks/robustness_drive.py``), the annotator adds one short stroke
at a time on the largest remaining error inside the FOV (:func:`monai_rurnet.data.strokes.add_strokes`): a
foreground stroke on a missed vessel, a background stroke on a false one. Three ways to use the strokes, each
with the annotator reacting to its own errors:

* **refine**: the bundle's inference with ``--prior_dir`` (an earlier result as ``<stem>_prob.png``: the first
  prediction, or with ``--prior latest`` the current result) and ``--strokes_dir`` (all strokes so far as
  ``<stem>_strokes.png``), exactly the CLI path;
* **paste**: the strokes pasted into the first prediction;
* **scratch**: the bundle's inference from the network's own ``s_0`` with the strokes only.

Prints vessel F1 inside the FOV after 0, 1, 3, 5 and 10 strokes (mean over the images) per condition and method:

    python benchmarks/interactive.py --model bundles/retina_drive/models/model.pt --out benchmarks/results/interactive.md

``--tasks retina,roads`` also runs the same three methods through the massroads bundle's GeoTIFF runner on crops of its withheld
training tiles (the bundle's ``val_tiles``) and reports road F1 on the non-void pixels (``--roads_model``,
``--roads_crop``).

``--frames DIR`` also writes, for the first image of the degraded condition, PNG frames of the first result, each
stroke and the refined result (for the docs).
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from cv_drive import inference_overrides, parse_overrides
from monai.bundle import ConfigParser
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning
from robustness_drive import (
    BUNDLE,
    Triple,
    _blur,
    _darker,
    _jpeg,
    _rescale,
    build_runner,
    predict_file,
    process_file,
)

from monai_rurnet.data.strokes import add_strokes, apply_strokes
from monai_rurnet.metrics import VesselMetrics, apply_fov
from monai_rurnet.networks.guidance import STROKE_BACKGROUND, STROKE_FOREGROUND

ROOT = Path(__file__).resolve().parents[1]
ROADS_BUNDLE = ROOT / "bundles" / "massroads"
COUNTS = (0, 1, 3, 5, 10)
METHODS = ("refine", "paste", "scratch")


def _degraded(t: Triple) -> Triple:
    """Another camera: x1.5 resolution, darker, blurred, JPEG q=20."""
    return _jpeg(_blur(_darker(_rescale(1.5)(t))))


CONDITIONS: dict[str, Callable[[Triple], Triple]] = {"DRIVE as is": lambda t: t, "degraded camera": _degraded}


def vessel_f1(pred: np.ndarray, label: np.ndarray, fov: np.ndarray) -> float:
    """Vessel (road) F1 of a binary prediction inside the FOV (the non-void pixels), the library's definition."""
    metric = VesselMetrics()
    y = apply_fov(torch.from_numpy(label.astype(np.float32))[None, None], torch.from_numpy(fov)[None, None])
    metric(torch.from_numpy(pred.astype(np.float32))[None, None], y)
    return float(metric.aggregate()["f1"])


class Session:
    """One image, one method: the annotator's strokes and the current result."""

    def __init__(
        self,
        runner,
        work: Path,
        stem: str,
        image: Path,
        label: np.ndarray,
        fov: np.ndarray,
        read=predict_file,
    ) -> None:
        self.runner, self.work, self.stem, self.image, self.read = runner, work, stem, image, read
        self.label, self.fov = label, fov
        self.strokes = np.zeros(label.shape, dtype=np.uint8)

    def predict(self, prior: np.ndarray | None) -> np.ndarray:
        """The bundle's probability map for this image with the current strokes (and ``prior`` when given)."""
        prior_dir, strokes_dir = self.work / "prior", self.work / "strokes"
        for d in (prior_dir, strokes_dir):
            d.mkdir(exist_ok=True)
            for f in d.glob(f"{self.stem}_*"):
                f.unlink()
        if prior is not None:
            Image.fromarray(np.round(prior * 255).astype(np.uint8)).save(prior_dir / f"{self.stem}_prob.png")
        Image.fromarray(self.strokes).save(strokes_dir / f"{self.stem}_strokes.png")
        self.runner.prior_dir, self.runner.strokes_dir = prior_dir, strokes_dir
        try:
            prob = self.read(self.runner, self.image)
        finally:
            self.runner.prior_dir = self.runner.strokes_dir = None
        return prob

    def stroke(self, pred: np.ndarray) -> None:
        add_strokes(pred, self.label, 1, self.strokes, valid=self.fov)


def run_image(s: Session, prior: str = "first") -> dict:
    """F1 after each stroke count for every method on the image of session ``s``, and the frames of the refine
    session (each method starts from no strokes)."""
    first = s.read(s.runner, s.image)
    scores = {m: {} for m in METHODS}
    frames = []
    for method in METHODS:
        s.strokes = np.zeros_like(s.strokes)
        prob = first
        for n in range(max(COUNTS) + 1):
            if n:
                s.stroke(prob >= 0.5)
                if method == "paste":
                    prob = apply_strokes(first >= 0.5, s.strokes).astype(np.float32)
                else:
                    start = prob if prior == "latest" else first
                    prob = s.predict(start if method == "refine" else None)
            if n in COUNTS:
                scores[method][n] = vessel_f1(prob >= 0.5, s.label, s.fov)
            if method == "refine":
                frames.append((s.strokes.copy(), prob >= 0.5))
    return {"scores": scores, "frames": frames}


def mean_rows(condition: str, per_image: list[dict]) -> list[str]:
    """One table row per method: F1 after each stroke count, mean over the images' scores."""
    return [
        f"| {condition} | {m} | "
        + " | ".join(f"{np.mean([s[m][n] for s in per_image]):.4f}" for n in COUNTS)
        + " |"
        for m in METHODS
    ]


def build_roads_runner(model: str, work: Path, overrides: Mapping[str, Any] | None = None):
    """The massroads bundle's GeoTIFF runner (its inference.json) on the images of ``work``, writing to ``work/out``;
    ``overrides``: config ids and values set after loading (e.g. a ``network_def`` for weights of another network)."""
    parser = ConfigParser()
    parser.read_config(str(ROADS_BUNDLE / "configs" / "inference.json"))
    parser.update(
        {
            "bundle_root": str(ROADS_BUNDLE),
            "device": "$torch.device('cpu')",
            "dataset_dir": str(work),
            "output_dir": str(work / "out"),
            "model_file": model,
            "progress": False,
            **(overrides or {}),
        }
    )
    return parser.get_parsed_content("evaluator")


def predict_raster(runner, path: Path) -> np.ndarray:
    """Road probability ``(H, W)`` of ``path`` as the massroads CLI writes it (``<stem>_prob.tif``; void -> 0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a PNG crop has no geotransform
        process_file(runner, path)
    with rasterio.open(runner.output_dir / f"{path.stem}_prob.tif") as ds:
        return np.clip(ds.read(1), 0.0, 1.0)


def roads_rows(model: str, data: Path, crop: int, prior: str) -> list[str]:
    """Table rows of road F1 on the central ``crop`` of each withheld training tile of the massroads bundle."""
    tiles = ConfigParser.load_config_file(str(ROADS_BUNDLE / "configs" / "train.json"))["val_tiles"]
    per_image = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        runner = build_roads_runner(model, work)
        for tile in tiles:
            img = Image.open(data / "train" / "sat" / f"{tile}.png").convert("RGB")
            lab = Image.open(data / "train" / "map" / f"{tile}.png").convert("L")
            left, top = (img.width - crop) // 2, (img.height - crop) // 2
            box = (left, top, left + crop, top + crop)
            img, lab = img.crop(box), lab.crop(box)
            src = work / f"{tile}.png"
            img.save(src)
            label = np.asarray(lab) > 127
            valid = ~(np.asarray(img) == 255).all(axis=-1)  # the runner's void pixels (white in every band)
            result = run_image(Session(runner, work, tile, src, label, valid, predict_raster), prior)
            per_image.append(result["scores"])
            print("roads", tile, {m: round(s[5], 4) for m, s in result["scores"].items()}, flush=True)
    return mean_rows("roads (road F1)", per_image)


def save_frames(frames: list, image: Path, label: np.ndarray, out: Path, count: int = 3) -> None:
    """PNG frames: the first result, then each of the first ``count`` strokes with its refined result.

    Colours: white = vessel found, red = vessel missed, blue = false vessel; strokes in green (foreground) and
    magenta (background), drawn 3 px wide to be visible.
    """
    from scipy import ndimage

    out.mkdir(parents=True, exist_ok=True)
    base = np.asarray(Image.open(image).convert("RGB")).astype(np.float32) * 0.35
    for k, (strokes, pred) in enumerate(frames[: count + 1]):
        rgb = base.copy()
        rgb[pred & label] = (255, 255, 255)
        rgb[~pred & label] = (255, 40, 40)
        rgb[pred & ~label] = (60, 120, 255)
        fg = ndimage.binary_dilation(strokes == STROKE_FOREGROUND)
        bg = ndimage.binary_dilation(strokes == STROKE_BACKGROUND)
        rgb[fg], rgb[bg] = (40, 255, 40), (255, 40, 255)
        name = "first_result" if k == 0 else f"stroke_{k}"
        Image.fromarray(rgb.astype(np.uint8)).save(out / f"refine_{k}_{name}.png", optimize=True)


def retina_rows(
    model: str,
    data: Path,
    ids: list[int],
    prior: str,
    frames: Path | None,
    overrides: dict[str, Any] | None = None,
) -> list[str]:
    """Table rows of vessel F1 on the DRIVE training ids ``ids``, as they are and degraded (see ``CONDITIONS``);
    ``overrides``: retina config ids and values for a model trained with other network arguments."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        runner = build_runner(model, True, work, overrides)
        for cond, fn in CONDITIONS.items():
            per_image = []
            for i in ids:
                img, lab, fov = fn(
                    (
                        Image.open(data / "images" / f"{i}_training.tif").convert("RGB"),
                        Image.open(data / "1st_manual" / f"{i}_manual1.gif").convert("L"),
                        Image.open(data / "mask" / f"{i}_training_mask.gif").convert("L"),
                    )
                )
                src = work / f"{i}.png"
                img.save(src)
                label, fov_mask = np.asarray(lab) > 127, np.asarray(fov) > 127
                result = run_image(Session(runner, work, str(i), src, label, fov_mask), prior)
                per_image.append(result["scores"])
                print(cond, i, {m: round(s[5], 4) for m, s in result["scores"].items()}, flush=True)
                if frames and cond != "DRIVE as is" and i == ids[0]:
                    save_frames(result["frames"], src, label, frames)
            rows += mean_rows(cond, per_image)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(BUNDLE / "models" / "model.pt"), help="retina_drive state_dict")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "DRIVE"))
    ap.add_argument("--ids", default="37,38,39,40", help="held-out DRIVE training ids")
    ap.add_argument("--out", default=None, help="write the Markdown table here")
    ap.add_argument("--frames", default=None, help="write the docs' PNG frames here")
    ap.add_argument("--prior", choices=("first", "latest"), default="first", help="refine from this result")
    ap.add_argument("--tasks", default="retina", help="comma-separated: retina (vessel F1), roads (road F1)")
    ap.add_argument(
        "--roads_model", default=str(ROADS_BUNDLE / "models" / "model.pt"), help="massroads state_dict"
    )
    ap.add_argument("--roads_data", default=str(ROOT.parent / "shared" / "data" / "MassRoads"))
    ap.add_argument("--roads_crop", type=int, default=750, help="central crop of each withheld tile (px)")
    ap.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="network_def override of the retina model, as in cv_drive.py, e.g. network_def#stroke_channels=true",
    )
    args = ap.parse_args()
    overrides = inference_overrides(parse_overrides(args.override))
    data = Path(args.data) / "training"
    ids = [int(i) for i in args.ids.split(",")]
    lines = [
        "| condition | method | " + " | ".join(f"{n} strokes" for n in COUNTS) + " |",
        "|---" * (len(COUNTS) + 2) + "|",
    ]
    tasks = args.tasks.split(",")
    if "retina" in tasks:
        frames = Path(args.frames) if args.frames else None
        lines += retina_rows(args.model, data, ids, args.prior, frames, overrides)
    if "roads" in tasks:
        lines += roads_rows(args.roads_model, Path(args.roads_data), args.roads_crop, args.prior)
    table = "\n".join(lines)
    title = (
        f"F1 after N strokes, tasks {args.tasks} (DRIVE ids {ids}, model {args.model}), prior {args.prior}"
    )
    print(f"\n{title}\n\n{table}")
    if args.out:
        Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
