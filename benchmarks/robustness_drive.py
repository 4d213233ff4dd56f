"""Cross-camera robustness benchmark built only from DRIVE training data.

Held-out DRIVE training images are turned into "other cameras" (rescaled x1.5 and x1.8, darker, colour-shifted,
blurred, JPEG-compressed, and all at once), segmented through the retina_drive bundle's inference pipeline
(``inference.json``: same preprocessing, inferer and FOV rescaling as users get), and scored with the vessel
metrics inside the (equally transformed) FOV mask. One column per model / FOV-rescaling setting.

    python benchmarks/robustness_drive.py --model old=/path/a.pt --model new=bundles/retina_drive/models/model.pt

Prints a Markdown table (vessel F1 / AUC per condition) and writes it to ``--out`` when given. Weights of another
network than the bundle's need its ``network_def`` values, e.g. ``--override network_def#cell=dru
--override network_def#level=4`` (they apply to every ``--model``).
"""

from __future__ import annotations

import argparse
import io
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fire.parser import DefaultParseValue
from monai.bundle import ConfigParser
from PIL import Image, ImageFilter

from monai_rurnet.metrics import VesselMetrics, apply_fov
from monai_rurnet.runners import FolderSegmentationRunner, ImageFolderDataset
from monai_rurnet.transforms import FOVRescaler

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundles" / "retina_drive"
Triple = tuple[Image.Image, Image.Image, Image.Image]


def _rescale(f: float) -> Callable[[Triple], Triple]:
    def apply(t: Triple) -> Triple:
        img, lab, fov = t
        size = (round(img.width * f), round(img.height * f))
        return (
            img.resize(size, Image.BILINEAR),
            lab.resize(size, Image.NEAREST),
            fov.resize(size, Image.NEAREST),
        )

    return apply


def _pixels(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Triple], Triple]:
    def apply(t: Triple) -> Triple:
        img = np.asarray(t[0], np.float32)
        return Image.fromarray(np.clip(fn(img), 0, 255).astype(np.uint8)), t[1], t[2]

    return apply


def _blur(t: Triple) -> Triple:
    return t[0].filter(ImageFilter.GaussianBlur(2.0)), t[1], t[2]


def _jpeg(t: Triple) -> Triple:
    buf = io.BytesIO()
    t[0].save(buf, format="JPEG", quality=20)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), t[1], t[2]


_darker = _pixels(lambda x: 255.0 * (x / 255.0) ** 1.4 * 0.6)
_colour = _pixels(lambda x: x * np.array([0.8, 1.1, 1.3]) + np.array([0.0, 10.0, 25.0]))


def _all(t: Triple) -> Triple:
    return _jpeg(_blur(_colour(_darker(_rescale(1.8)(t)))))


CONDITIONS: dict[str, Callable[[Triple], Triple]] = {
    "DRIVE as is": lambda t: t,
    "rescaled x1.5": _rescale(1.5),
    "rescaled x1.8": _rescale(1.8),
    "darker (gamma 1.4, x0.6)": _darker,
    "colour-shifted": _colour,
    "blurred (sigma 2)": _blur,
    "JPEG q=20": _jpeg,
    "x1.8 + all of the above": _all,
}


def inference_overrides(overrides: Mapping[str, str]) -> dict[str, Any]:
    """The overrides that change the network (``network_def...``), parsed as the bundle's command line would."""
    return {k: DefaultParseValue(v) for k, v in overrides.items() if k.split("#")[0] == "network_def"}


def build_runner(
    model: str,
    rescale: bool,
    work: Path,
    overrides: Mapping[str, Any] | None = None,
    device: str = "cpu",
) -> FolderSegmentationRunner:
    """The retina bundle's runner (its inference.json) on the images of ``work``, writing to ``work/out``, on
    ``device`` (``"cpu"``, ``"cuda"``).

    ``overrides``: config ids and values set after loading, as ``--id value`` would on the command line (e.g.
    ``{"network_def#cell": "sru", "network_def#level": 0}`` for a model trained with another network).
    """
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.json"))
    parser["bundle_root"] = str(BUNDLE)
    parser["device"] = f"$torch.device({device!r})"
    parser.update(dict(overrides or {}))
    return FolderSegmentationRunner(
        parser.get_parsed_content("network"),
        ImageFolderDataset(work, parser.get_parsed_content("preprocessing")),
        parser.get_parsed_content("inferer"),
        output_dir=work / "out",
        weights=model,
        progress=False,
        rescaler=FOVRescaler() if rescale else None,
    )


def process_file(runner: Any, path: Path) -> None:
    """Segment the file ``path`` of the runner's (re-listed) folder into its ``output_dir``."""
    runner.dataset.refresh()
    runner.process(next(i for i, d in enumerate(runner.dataset.data) if Path(d["image"]).name == path.name))


def predict_file(runner: FolderSegmentationRunner, path: Path) -> np.ndarray:
    """Vessel probability ``(H, W)`` of the image file ``path`` (in the runner's folder) as the bundle CLI writes it
    (``<stem>_prob.png``), with the runner's current ``prior_dir`` / ``strokes_dir``."""
    process_file(runner, path)
    with Image.open(runner.output_dir / f"{path.stem}_prob.png") as im:
        return np.asarray(im, dtype=np.float32) / 255.0


def drive_triple(data: Path, i: int) -> Triple:
    """Image, first-observer label and FOV mask of DRIVE training image ``i`` (``data``: the ``training`` folder)."""
    return (
        Image.open(data / "images" / f"{i}_training.tif").convert("RGB"),
        Image.open(data / "1st_manual" / f"{i}_manual1.gif").convert("L"),
        Image.open(data / "mask" / f"{i}_training_mask.gif").convert("L"),
    )


def score_conditions(
    runners: Mapping[str, FolderSegmentationRunner],
    data: Path,
    ids: Sequence[int],
    work: Path,
    verbose: bool = True,
) -> dict[str, dict[str, dict]]:
    """Vessel metrics inside the FOV, pooled over DRIVE training images ``ids``, of every runner (all built on the
    folder ``work``) under every camera condition: ``{condition: {runner name: VesselMetrics.aggregate()}}``."""
    results: dict[str, dict[str, dict]] = {}
    for cond, fn in CONDITIONS.items():
        metrics = {col: VesselMetrics() for col in runners}
        for i in ids:
            img, lab, fov = fn(drive_triple(data, i))
            src = work / f"{i}.png"
            img.save(src)
            y = apply_fov(
                torch.from_numpy((np.asarray(lab) > 127).astype(np.float32))[None, None],
                torch.from_numpy(np.asarray(fov) > 127)[None, None],
            )
            for col, runner in runners.items():
                prob = predict_file(runner, src)
                metrics[col](torch.from_numpy(prob)[None, None], y)
        results[cond] = {col: m.aggregate() for col, m in metrics.items()}
        if verbose:
            print(cond, {col: round(r["f1"], 4) for col, r in results[cond].items()}, flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="name=path of a retina_drive state_dict")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "DRIVE"))
    ap.add_argument("--ids", default="37,38,39,40", help="held-out DRIVE training ids")
    ap.add_argument("--no-rescale-column", action="store_true", help="skip the columns without FOV rescaling")
    ap.add_argument("--out", default=None)
    ap.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="network_def override for weights of another network than the bundle's, e.g. network_def#cell=dru",
    )
    args = ap.parse_args()
    for pair in args.override:
        if "=" not in pair or pair.partition("=")[0].split("#")[0] != "network_def":
            ap.error(f"--override {pair!r}: expected network_def...=value, e.g. network_def#level=4")
    overrides = inference_overrides(dict(pair.split("=", 1) for pair in args.override))
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = Path(args.data) / "training"
    ids = [int(i) for i in args.ids.split(",")]
    columns = []
    for spec in args.model:
        name, path = spec.split("=", 1)
        for rescale in [True] if args.no_rescale_column else [False, True]:
            columns.append((f"{name}{' +FOV rescale' if rescale else ''}", path, rescale))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        runners = {col: build_runner(path, rescale, work, overrides) for col, path, rescale in columns}
        results = score_conditions(runners, data, ids, work)
    header = "| condition | " + " | ".join(f"{c} F1 / AUC" for c, _, _ in columns) + " |"
    lines = [header, "|---" * (len(columns) + 1) + "|"]
    for cond, per_col in results.items():
        cells = " | ".join(f"{per_col[c]['f1']:.4f} / {per_col[c]['auc']:.4f}" for c, _, _ in columns)
        lines.append(f"| {cond} | {cells} |")
    table = "\n".join(lines)
    print(f"\nVessel F1 / AUC inside the FOV, DRIVE training ids {ids} (held out from training)\n\n{table}")
    if args.out:
        Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
