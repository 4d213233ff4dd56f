"""handseg measured through the bundle's own commands: fresh synthetic hands, and real hands (zero-shot,
fine-tuned from the shipped weights, trained from scratch).

    # hand IoU of the shipped weights on fresh generator images (seeds never used in training)
    python benchmarks/hands.py synthetic --n 64 --work /tmp/hands_syn
    # real-hands table: a folder of <subset>/images + <subset>/masks split in two halves (every other image
    # of each subset); zero-shot on the second half, fine-tuned (--init_weights) and from scratch on the first
    python benchmarks/hands.py real --data ../shared/data/Hands --work /tmp/hands_real --epochs 30
    # weights trained at another size: every bundle command gets --image_size [128,128]
    python benchmarks/hands.py --model runs/h128/model.pt --override "image_size=[128,128]" synthetic --work /tmp/h1

Every number comes from ``python -m monai.bundle run`` (inference.json, and the train configs with command-line
overrides only): the same commands a user runs. Scores: hand IoU pooled over all pixels of the set, the mean of
per-image hand IoUs, and the paper's mIoU (hand and background). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, table  # noqa: E402
from cv_drive import override_args, parse_overrides  # noqa: E402

from monai_rurnet.data import hand_dataset_datalist, synthetic_hand_image  # noqa: E402
from monai_rurnet.metrics.segmentation import paper_metrics_from_confusion  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundles" / "handseg"
TRAIN = f"['{BUNDLE}/configs/inference.json','{ROOT}/configs/train_base.json','{BUNDLE}/configs/train.json']"
FRESH_SEED = 1_000_000  # training uses seeds 0..n-1 and validation 100003.., far below this


def bundle(args: list[str], log: Path) -> float:
    """Run ``python -m monai.bundle run ARGS``; returns the wall time; raises with the log's tail on failure."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(
            [sys.executable, "-m", "monai.bundle", "run", *args], stdout=f, stderr=f
        ).returncode
    if rc != 0:
        raise RuntimeError(f"monai.bundle run {' '.join(args)} failed ({rc}):\n{log.read_text()[-3000:]}")
    return time.perf_counter() - t0


def infer(images: Path, out: Path, model: Path, log: Path, extra: list[str]) -> float:
    cfg = BUNDLE / "configs" / "inference.json"
    return bundle(
        ["--config_file", str(cfg), "--bundle_root", str(BUNDLE), "--dataset_dir", str(images), "--output_dir",
         str(out), "--model_file", str(model), "--progress", "False", "--overwrite", "True", *extra],
        log,
    )  # fmt: skip


def score(items: list[dict[str, str]], out: Path) -> dict[str, float]:
    """Pooled hand IoU, mean per-image hand IoU and paper mIoU of ``out/<stem>_seg.png`` against the labels."""
    cm = np.zeros((2, 2))
    per_image = []
    for d in items:
        label = np.asarray(Image.open(d["label"]).convert("L")) > 0
        pred = np.asarray(Image.open(out / f"{Path(d['image']).stem}_seg.png")) > 0
        if pred.shape != label.shape:
            raise ValueError(f"{d['image']}: prediction {pred.shape} vs label {label.shape}")
        tp, fp, fn = (pred & label).sum(), (pred & ~label).sum(), (~pred & label).sum()
        cm += [[label.size - tp - fp - fn, fp], [fn, tp]]
        if tp + fp + fn:
            per_image.append(tp / (tp + fp + fn))
    paper = paper_metrics_from_confusion(cm)
    return {
        "hand_IoU": paper["IoU_per_class"][1],
        "mean_image_IoU": float(np.mean(per_image)),
        "mIoU": paper["mIoU"],
    }


def synthetic(a: argparse.Namespace) -> str:
    work = Path(a.work)
    for sub in ("images", "masks"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    for i in range(a.n):
        img, mask = synthetic_hand_image((a.size, a.size), seed=FRESH_SEED + i)
        Image.fromarray(img).save(work / "images" / f"fresh_{i:04d}.png")
        Image.fromarray(mask * 255).save(work / "masks" / f"fresh_{i:04d}.png")
    secs = infer(
        work / "images",
        work / "pred",
        Path(a.model),
        work / "infer.log",
        override_args(parse_overrides(a.override)),
    )
    s = score(hand_dataset_datalist("folder", work), work / "pred")
    rows = [[f"{a.n} fresh images, seeds {FRESH_SEED}+, {a.size}x{a.size}", s["hand_IoU"], s["mean_image_IoU"],
             s["mIoU"], f"{secs:.0f}"]]  # fmt: skip
    return table(["set", "hand IoU (pooled)", "hand IoU (image mean)", "mIoU", "inference s"], rows)


def _link_half(data: Path, dest: Path, keep: int) -> None:
    """Symlink every other image (``keep`` = 0 or 1, by sorted stem within each subset) into ``dest``."""
    for sub in sorted(p.parent for p in data.glob("*/images")):
        for i, d in enumerate(hand_dataset_datalist("folder", sub)):
            if i % 2 != keep:
                continue
            for key, folder in (("image", "images"), ("label", "masks")):
                src = Path(d[key])
                link = dest / sub.name / folder / src.name
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.exists():
                    link.symlink_to(src.resolve())


def real(a: argparse.Namespace) -> str:
    work, data = Path(a.work), Path(a.data)
    fit, test = work / "fit", work / "test"
    _link_half(data, fit, 0)
    _link_half(data, test, 1)
    test_items = hand_dataset_datalist("folder", test)
    test_images = work / "test_images"  # the inference command reads one flat folder
    test_images.mkdir(parents=True, exist_ok=True)
    for d in test_items:
        link = test_images / Path(d["image"]).name
        if not link.exists():
            link.symlink_to(Path(d["image"]).resolve())
    n_fit = len(hand_dataset_datalist("folder", fit))
    extra = override_args(parse_overrides(a.override))
    shipped = Path(a.model)
    rows = []
    if "zero_shot" in a.which:
        s = score(test_items, _run_infer(test_images, work / "zero_shot", shipped, extra))
        rows.append(["zero-shot (shipped weights)", "-", s["hand_IoU"], s["mean_image_IoU"], s["mIoU"]])
    for key, name, init in (
        ("finetune", "fine-tuned from the shipped weights", shipped),
        ("scratch", "from scratch", None),
    ):
        if key not in a.which:
            continue
        run_dir = work / key
        args = ["--config_file", TRAIN, "--bundle_root", str(BUNDLE), "--dataset_dir", str(fit),
                "--ckpt_dir", str(run_dir / "ckpt"), "--output_dir", str(run_dir / "out"),
                "--max_epochs", str(a.epochs), "--val_interval", "1", "--show_progress", "False", *extra]  # fmt: skip
        if init is not None:
            args += ["--init_weights", str(init), "--learning_rate", str(a.finetune_lr)]
        timing = run_dir / "train_seconds.txt"
        if not timing.is_file():  # a finished run is reused (its time was recorded)
            run_dir.mkdir(parents=True, exist_ok=True)
            timing.write_text(f"{bundle(args, run_dir / 'train.log'):.1f}\n")
        secs = float(timing.read_text())
        s = score(test_items, _run_infer(test_images, run_dir / "pred", run_dir / "ckpt" / "model.pt", extra))
        rows.append(
            [f"{name}, {a.epochs} epochs", f"{secs / 60:.1f}", s["hand_IoU"], s["mean_image_IoU"], s["mIoU"]]
        )
    head = f"fit on {n_fit} real pairs (every 10th held out to pick the best epoch), scored on the other {len(test_items)}"
    return (
        head
        + "\n\n"
        + table(["model", "train min", "hand IoU (pooled)", "hand IoU (image mean)", "mIoU"], rows)
    )


def _run_infer(images: Path, out: Path, model: Path, extra: list[str]) -> Path:
    infer(images, out, model, out.with_suffix(".log"), extra)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model", default=str(BUNDLE / "models" / "model.pt"), help="weights to measure / start from"
    )
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("synthetic")
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--size", type=int, default=256)
    s.add_argument("--work", required=True)
    r = sub.add_parser("real")
    r.add_argument("--data", required=True, help="<subset>/images + <subset>/masks")
    r.add_argument("--work", required=True)
    r.add_argument("--epochs", type=int, default=30)
    r.add_argument("--finetune_lr", type=float, default=5e-4)
    r.add_argument("--which", nargs="+", default=["zero_shot", "finetune", "scratch"])
    p.add_argument("--out", help="also write the tables here")
    p.add_argument(
        "--override",
        action="append",
        default=[],
        help='KEY=VALUE passed as --KEY VALUE to every bundle command, e.g. image_size="[128,128]"',
    )
    a = p.parse_args()
    text = environment() + f"\nthreads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}\n\n"
    text += synthetic(a) if a.mode == "synthetic" else real(a)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
