"""5-fold cross-validation of retina_drive training recipes on the 20 DRIVE training images (issue 23).

Folds: the training ids 21..40 in order, fold ``k`` = ``ids[k::5]`` (fold 0 = 21, 26, 31, 36; fold 1 = 22, 27, 32,
37; ...; fold 4 = 25, 30, 35, 40): 4 validation images per fold, no two consecutive ids, every id in exactly one
fold. For each recipe and fold the bundle's own training command runs as a subprocess (what a user would type, with
``--train_ids`` = the other 16 ids and ``--val_ids`` = the fold's 4), its best model (``model.pt``, selected by the
bundle's validation on the same 4 images, as in the bundle docs) is run through the bundle's inference pipeline
(``robustness_drive.build_runner``: ``inference.json``, mirroring and FOV rescaling on, as users get it) and scored
inside the FOV:

- vessel F1 and AUC on the 4 images as they are;
- robustness: the mean vessel F1 over the 7 synthetic camera shifts of ``robustness_drive.CONDITIONS`` (rescaled,
  darker, colour-shifted, blurred, JPEG, all at once; "DRIVE as is" excluded, it is the F1 column).

Recipes: ``dru4`` (the bundle's ``train.json`` with ``network_def#cell dru``, ``network_def#level 4``), ``sru0``
(same, ``network_def#cell sru``, ``network_def#level 0``), ``basicunet`` (same trainer, data, augmentation and loss; ``network_def`` replaced by
MONAI ``BasicUNet(features=(8, 16, 32, 64, 128, 8))``, which drops ``train.json``'s ``return_all_steps``), ``unetg``
(``network_def`` replaced by U-Net-G, the recurrent networks' backbone without recurrence).
``--override key=value`` is passed to every training command as ``--key value``; ``{fold}`` in a value becomes the
fold number (``init_weights=runs/init/fold{fold}.pt``: a warm start per fold); overrides of ``network_def...``
also reach the inference pipeline. Runs live in ``--work``/``<recipe>[+overrides]/fold<k>/`` (the trainer's
``ckpt_dir``, ``train.log``, ``command.txt``, ``result.json``); rerunning the same command skips folds with a
``result.json``, and resumes unfinished trainings from their ``checkpoint.pt``.

The report (printed, and written to ``--out``): per run, vessel F1 / AUC / robustness mean ± sample std (min..max)
over the folds done, training wall time per fold (summed over restarts), parameters, and the inference cost of one
DRIVE image through the bundle's runner (seconds, median of ``--repeats`` round-robin calls over the runs, in this
process, ``--threads`` threads).

    python benchmarks/cv_drive.py --recipe dru4 sru0 basicunet --data /path/to/DRIVE --out cv.md
    python benchmarks/cv_drive.py --recipe dru4 --override cldice_weight=0.3 --out cv_cldice.md
    python benchmarks/cv_drive.py --report-all --out cv_all.md   # table of every run under --work, no training

DRU(4) started from each fold's trained U-Net-G (``monai_rurnet.networks.warm_start``), as massroads v0.5.0 was:

    python benchmarks/cv_drive.py --recipe unetg --work runs/cv
    for k in 0 1 2 3 4; do python -m monai_rurnet.networks.warm_start runs/cv/unetg/fold$k/model.pt \\
        runs/cv/init/fold$k.pt --cell dru --level 4 --z_bias 3; done
    python benchmarks/cv_drive.py --recipe dru4 --work runs/cv --override 'init_weights=runs/cv/init/fold{fold}.pt'
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import torch
from _common import environment, table
from robustness_drive import (
    BUNDLE,
    CONDITIONS,
    ROOT,
    build_runner,
    inference_overrides,
    predict_file,
    score_conditions,
)

from monai_rurnet.utils import atomic_json_dump

__all__ = [
    "DRIVE_IDS",
    "N_FOLDS",
    "RECIPES",
    "fold_ids",
    "parse_overrides",
    "override_args",
    "run_name",
    "recipe_overrides",
    "inference_overrides",
    "fold_dir",
    "train_command",
    "train_fold",
    "evaluate_fold",
    "run_fold",
    "summarise",
    "inference_cost",
    "report",
    "main",
]

DRIVE_IDS: tuple[int, ...] = tuple(range(21, 41))
N_FOLDS = 5
CLEAN = "DRIVE as is"
TRAIN_CONFIGS = (
    "bundles/retina_drive/configs/inference.json",
    "configs/train_base.json",
    "bundles/retina_drive/configs/train.json",
)
#: Training options this script sets itself.
RESERVED = ("train_ids", "val_ids", "ckpt_dir", "dataset_dir", "bundle_root", "config_file")
#: Written in an override's value, stands for the fold number (e.g. one warm-start file per fold).
FOLD_FIELD = "{fold}"
#: Config overrides (as command-line text) of each recipe on top of the bundle's train.json.
RECIPES: dict[str, dict[str, str]] = {
    "dru4": {"network_def#cell": "dru", "network_def#level": "4"},
    "sru0": {"network_def#cell": "sru", "network_def#level": "0"},
    "basicunet": {
        "network_def": '{"_target_": "monai_rurnet.networks.build_network", "name": "monai_basic_unet"}'
    },
    "unetg": {"network_def": '{"_target_": "monai_rurnet.networks.build_network", "name": "unet_g"}'},
}


def fold_ids(fold: int) -> tuple[list[int], list[int]]:
    """``(train ids, validation ids)`` of fold ``0 <= fold < 5``: validation ``DRIVE_IDS[fold::5]``."""
    if not 0 <= fold < N_FOLDS:
        raise ValueError(f"fold must be in 0..{N_FOLDS - 1}, got {fold}.")
    val = list(DRIVE_IDS[fold::N_FOLDS])
    return [i for i in DRIVE_IDS if i not in val], val


def parse_overrides(pairs: Sequence[str]) -> dict[str, str]:
    """``["key=value", ...]`` -> ``{key: value}`` (values stay command-line text)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--override {pair!r}: expected key=value, e.g. cldice_weight=0.3.")
        key = key.strip().lstrip("-")
        if key in RESERVED:
            raise ValueError(
                f"--override {pair!r}: {key} is set by this script (per fold / --data / --work)."
            )
        out[key] = value
    return out


def run_name(recipe: str, overrides: Mapping[str, str]) -> str:
    """Folder name of a recipe with overrides, e.g. ``dru4+cldice_weight=0.3`` (long or odd ones get a hash)."""
    if not overrides:
        return recipe
    text = "+".join(f"{k}={v}" for k, v in sorted(overrides.items()))
    slug = re.sub(r"[^A-Za-z0-9._=,+-]+", "_", text)
    if slug != text or len(slug) > 80:
        slug = f"{slug[:60]}-{zlib.crc32(text.encode()):08x}"
    return f"{recipe}+{slug}"


def recipe_overrides(recipe: str, overrides: Mapping[str, str]) -> dict[str, str]:
    """The recipe's own overrides updated by the user's."""
    if recipe not in RECIPES:
        raise KeyError(f"Unknown recipe {recipe!r}; available: {', '.join(RECIPES)}.")
    return {**RECIPES[recipe], **overrides}


def fold_dir(work: Path, recipe: str, overrides: Mapping[str, str], fold: int) -> Path:
    """The trainer's ``ckpt_dir`` (and the fold's results) of ``recipe`` with ``overrides`` on fold ``fold``."""
    return work / run_name(recipe, overrides) / f"fold{fold}"


def train_command(
    recipe: str,
    fold: int,
    ckpt_dir: Path,
    data: Path,
    overrides: Mapping[str, str],
    python: str = sys.executable,
) -> list[str]:
    """The bundle's training command (run from the repository root) of ``recipe`` on fold ``fold``."""
    train, val = fold_ids(fold)
    cmd = [python, "-m", "monai.bundle", "run", "--config_file", json.dumps(list(TRAIN_CONFIGS))]
    cmd += ["--bundle_root", "bundles/retina_drive", "--dataset_dir", str(data), "--ckpt_dir", str(ckpt_dir)]
    cmd += ["--train_ids", str(train), "--val_ids", str(val), "--show_progress", "false"]
    per_fold = {k: v.replace(FOLD_FIELD, str(fold)) for k, v in recipe_overrides(recipe, overrides).items()}
    return cmd + override_args(per_fold)


def override_args(overrides: Mapping[str, str]) -> list[str]:
    """``{key: value}`` -> ``["--key", value, ...]``: overrides as arguments of a ``monai.bundle run`` command."""
    return [arg for key, value in overrides.items() for arg in (f"--{key}", value)]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable ({e}); delete it to redo that step.") from e


def train_fold(cmd: Sequence[str], out: Path, threads: int) -> float:
    """Run the training command (resuming from ``checkpoint.pt`` when there is one) unless ``trained.json`` says it
    finished; returns its wall time summed over all runs (also those interrupted: ``train_time.json``)."""
    done, spent = out / "trained.json", out / "train_time.json"
    if done.is_file():
        return float(_read_json(done)["train_s"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "command.txt").write_text(f"cd {ROOT}\nOMP_NUM_THREADS={threads} {shlex.join(cmd)}\n")
    before = float(_read_json(spent)["train_s"]) if spent.is_file() else 0.0
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    try:
        with open(out / "train.log", "a") as log:
            rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    finally:
        total = before + time.perf_counter() - t0
        atomic_json_dump({"train_s": total}, spent)
    if rc != 0:
        raise RuntimeError(f"training of {out} failed (exit status {rc}); see {out / 'train.log'}.")
    if not (out / "model.pt").is_file():
        raise RuntimeError(
            f"{out}: training wrote no model.pt (no validation ran: val_interval > max_epochs?)."
        )
    atomic_json_dump({"train_s": total}, done)
    return total


def evaluate_fold(
    model: Path, overrides: Mapping[str, str], data: Path, val: Sequence[int], device: str = "cpu"
) -> dict[str, Any]:
    """Vessel F1 / AUC on the fold's images as they are, robustness, and every condition's metrics (inference on
    ``device``)."""
    with tempfile.TemporaryDirectory() as tmp:
        runner = build_runner(str(model), True, Path(tmp), inference_overrides(overrides), device)
        t0 = time.perf_counter()
        scores = {
            c: r["m"] for c, r in score_conditions({"m": runner}, data / "training", val, Path(tmp)).items()
        }
        eval_s = time.perf_counter() - t0
        params = sum(p.numel() for p in runner.network.parameters())
    shifted = [scores[c]["f1"] for c in CONDITIONS if c != CLEAN]
    return {
        "f1": scores[CLEAN]["f1"],
        "auc": scores[CLEAN]["auc"],
        "robustness": statistics.fmean(shifted),
        "params": params,
        "eval_s": eval_s,
        "conditions": scores,
    }


def run_fold(
    recipe: str,
    fold: int,
    work: Path,
    data: Path,
    overrides: Mapping[str, str],
    threads: int = 1,
    train: Callable[[Sequence[str], Path, int], float] | None = None,
    evaluate: Callable[..., dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Train (or resume) and score one fold; a fold with a ``result.json`` is returned as it is (skipped).

    ``train``, ``evaluate``: replace :func:`train_fold` and :func:`evaluate_fold` (tests)."""
    out = fold_dir(work, recipe, overrides, fold)
    run_dir, result_file = out.parent, out / "result.json"
    if result_file.is_file():
        return _read_json(result_file)
    full = recipe_overrides(recipe, overrides)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_json_dump(
        {"recipe": recipe, "overrides": dict(overrides), "full_overrides": full}, run_dir / "run.json"
    )
    cmd = train_command(recipe, fold, out, data, overrides)
    train_s = (train or train_fold)(cmd, out, threads)
    train_ids, val = fold_ids(fold)
    result = {
        "recipe": recipe,
        "overrides": dict(overrides),
        "fold": fold,
        "train_ids": train_ids,
        "val_ids": val,
        "train_s": train_s,
        "command": shlex.join(cmd),
        **(evaluate or evaluate_fold)(out / "model.pt", full, data, val),
    }
    atomic_json_dump(result, result_file)
    return result


def _train_parallel(
    jobs: Sequence[tuple[str, int]],
    work: Path,
    data: Path,
    overrides: Mapping[str, str],
    threads: int,
    n: int,
) -> set[tuple[str, int]]:
    """Train (or resume) ``jobs`` ``(recipe, fold)``, ``n`` at a time; returns those that failed."""

    def one(job: tuple[str, int]) -> tuple[str, int] | None:
        out = fold_dir(work, job[0], overrides, job[1])
        try:
            train_fold(train_command(job[0], job[1], out, data, overrides), out, threads)
        except (RuntimeError, ValueError) as e:
            print(e, file=sys.stderr, flush=True)
            return job
        return None

    with ThreadPoolExecutor(n) as pool:
        return {j for j in pool.map(one, jobs) if j is not None}


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else float("nan"),
        "min": min(values),
        "max": max(values),
    }


def summarise(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean, sample std, min and max over folds of ``f1``, ``auc``, ``robustness`` and ``train_s``."""
    if not results:
        raise ValueError("no fold results to summarise.")
    out: dict[str, Any] = {
        k: _stats([float(r[k]) for r in results]) for k in ("f1", "auc", "robustness", "train_s")
    }
    out["folds"] = sorted(int(r["fold"]) for r in results)
    out["params"] = results[0]["params"]
    return out


def _pm(s: Mapping[str, float], spread: bool = True) -> str:
    std = "–" if s["std"] != s["std"] else f"{s['std']:.4f}"
    text = f"{s['mean']:.4f} ± {std}"
    return f"{text} ({s['min']:.4f}..{s['max']:.4f})" if spread else text


def inference_cost(
    models: Mapping[str, tuple[Path, Mapping[str, str]]], image: Path, repeats: int
) -> dict[str, float]:
    """Median seconds per call of the bundle runner on ``image`` for each ``name: (model.pt, overrides)``, the
    models called round-robin (one call each per round) after one warm-up round."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / image.name
        shutil.copy(image, src)
        runners = {
            name: build_runner(str(model), True, Path(tmp), inference_overrides(over))
            for name, (model, over) in models.items()
        }
        times: dict[str, list[float]] = {name: [] for name in runners}
        for r in range(repeats + 1):
            for name, runner in runners.items():
                t0 = time.perf_counter()
                predict_file(runner, src)
                if r:
                    times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def report(run_dirs: Sequence[Path], data: Path, repeats: int, threads: int) -> str:
    """The Markdown table of the runs in ``run_dirs`` (those with at least one ``fold*/result.json``)."""
    rows, models = [], {}
    for run_dir in run_dirs:
        results = [_read_json(f) for f in sorted(run_dir.glob("fold*/result.json"))]
        if not results:
            continue
        spec = _read_json(run_dir / "run.json")
        models[run_dir.name] = (run_dir / f"fold{results[0]['fold']}" / "model.pt", spec["full_overrides"])
        rows.append((run_dir.name, spec, summarise(results)))
    if not rows:
        return "No finished folds."
    cost = (
        inference_cost(models, data / "training" / "images" / "21_training.tif", repeats) if repeats else {}
    )
    headers = [
        "recipe",
        "overrides",
        "folds",
        "vessel F1",
        "AUC",
        "robustness",
        "train / fold",
        "params",
        "s / image",
    ]
    lines = []
    for name, spec, s in rows:
        over = " ".join(f"`{k}={v}`" for k, v in spec["overrides"].items()) or "–"
        secs = f"{cost[name]:.2f}" if name in cost else "–"
        cells = [spec["recipe"], over, ",".join(map(str, s["folds"])), _pm(s["f1"]), _pm(s["auc"], False)]
        cells += [_pm(s["robustness"]), f"{s['train_s']['mean'] / 60:.1f} min", f"{s['params']:,}", secs]
        lines.append(cells)
    return (
        f"{environment()}\n\nDRIVE training images, 5-fold cross-validation (fold k = ids 21..40 [k::5]); vessel F1 /"
        " AUC inside the FOV through the bundle's inference pipeline (mirroring, FOV rescaling), mean ± sample std"
        " (min..max) over the folds; robustness = mean F1 over the 7 synthetic camera shifts of"
        f" robustness_drive.py; s / image: one 565x584 DRIVE image through the bundle runner, {threads} thread(s),"
        f" median of {repeats} round-robin calls in this run.\n\n{table(headers, lines)}\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--recipe", nargs="+", default=[], choices=sorted(RECIPES), help="recipes to cross-validate"
    )
    ap.add_argument("--folds", nargs="+", type=int, default=list(range(N_FOLDS)), help="folds to run (0..4)")
    ap.add_argument(
        "--override",
        action="append",
        default=[],
        help="key=value passed as --key value to training ({fold} in the value: the fold number)",
    )
    ap.add_argument("--epochs", type=int, default=None, help="max_epochs (and val_interval when smaller)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "DRIVE"), help="DRIVE folder")
    ap.add_argument(
        "--work", default="/work/runs/cv", help="folder of the runs (one per recipe and overrides)"
    )
    ap.add_argument(
        "--threads", type=int, default=1, help="OMP threads of each training and of the evaluation"
    )
    ap.add_argument("--jobs", type=int, default=1, help="trainings at a time (e.g. several on one GPU)")
    ap.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="device of the fold scoring (default: cuda when available; the s / image timing is always cpu)",
    )
    ap.add_argument("--repeats", type=int, default=5, help="timed inference calls per run (0: skip timing)")
    ap.add_argument("--report-all", action="store_true", help="report every run under --work, train nothing")
    ap.add_argument("--out", default=None, help="write the Markdown report here")
    args = ap.parse_args(argv)
    if not args.recipe and not args.report_all:
        ap.error("give --recipe (one or more) or --report-all.")
    data, work = Path(args.data).resolve(), Path(args.work).resolve()
    if not (data / "training" / "images").is_dir():
        ap.error(
            f"{data}: not a DRIVE folder (expected training/images, training/1st_manual, training/mask)."
        )
    torch.set_num_threads(args.threads)
    # a SIGTERM unwinds like Ctrl-C: subprocess.run kills the training, its time so far is kept
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    overrides = parse_overrides(args.override)
    if args.epochs is not None:
        val_interval = int(
            overrides.get("val_interval", _read_json(BUNDLE / "configs" / "train.json")["val_interval"])
        )
        overrides = {"max_epochs": str(args.epochs), **overrides}
        if args.epochs < val_interval:
            overrides["val_interval"] = str(args.epochs)
    jobs = [(recipe, fold) for recipe in args.recipe for fold in args.folds]
    for _, fold in jobs:
        fold_ids(fold)  # bad folds fail before any work
    pending = [j for j in jobs if not (fold_dir(work, j[0], overrides, j[1]) / "result.json").is_file()]
    print(f"{len(jobs) - len(pending)} of {len(jobs)} folds done; to run: {pending}", flush=True)
    failed = (
        _train_parallel(pending, work, data, overrides, args.threads, args.jobs) if args.jobs > 1 else set()
    )
    for recipe, fold in pending:
        if (recipe, fold) in failed:
            continue
        try:
            r = run_fold(
                recipe,
                fold,
                work,
                data,
                overrides,
                args.threads,
                evaluate=partial(evaluate_fold, device=args.device),
            )
        except (RuntimeError, ValueError) as e:
            print(e, file=sys.stderr, flush=True)
            failed.add((recipe, fold))
            continue
        print(
            f"{run_name(recipe, overrides)} fold {fold}: F1 {r['f1']:.4f} AUC {r['auc']:.4f} "
            f"robustness {r['robustness']:.4f} train {r['train_s']:.0f} s",
            flush=True,
        )
    if args.report_all:
        run_dirs = sorted(p.parent for p in work.glob("*/run.json"))
    else:
        run_dirs = [work / run_name(recipe, overrides) for recipe in args.recipe]
    text = report(run_dirs, data, args.repeats, args.threads)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
