"""Score any tool's segmentation outputs against labels, with the paper's and the field's metrics.

Run ``python -m monai_rurnet.evaluate --pred P --label L [--mask M] [--metrics paper,vessel,pr,relaxed]
[--dataset drive|chase|stare|massroads]``; it prints one JSON object (pooled metrics, ``n_images`` and
``per_image``) and exits with 0 only when something was scored. The definitions are those of
:mod:`monai_rurnet.metrics`: confusion counts and probability histograms pooled over the whole set; paper metrics
are means over background and foreground; with a mask every metric is computed inside it.

Values: predictions are uint8 (/255), uint16 (/65535) or float in [0, 1]; labels are foreground where > 0 and
must hold at most two values unless ``label_threshold`` is given; masks are inside where non-zero. Pairing of
file names: :mod:`monai_rurnet.data.pairing`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from monai_rurnet.data.pairing import DATASET_NAMING, Case, PairingError, pair_files
from monai_rurnet.data.readers import read_plane
from monai_rurnet.metrics import (
    IGNORE_VALUE,
    PaperSegMetrics,
    PRBreakEven,
    RelaxedPrecisionRecall,
    VesselMetrics,
    binarize_label,
    pr_curve_from_histograms,
    roc_curve_from_histograms,
)
from monai_rurnet.metrics.utils import to_python
from monai_rurnet.utils import atomic_json_dump, atomic_write

__all__ = ["METRIC_GROUPS", "DEFAULT_GROUPS", "EvaluationError", "evaluate_folders", "main"]

#: The output keys of each metric group, in order.
METRIC_GROUPS: dict[str, tuple[str, ...]] = {
    "paper": ("mIoU", "mRec", "mPrec", "mF1"),
    "vessel": ("vessel_F1", "vessel_AUC", "Se", "Sp", "Acc"),
    "pr": ("PR_breakeven", "PR_breakeven_road"),
    "relaxed": ("relaxed_precision", "relaxed_recall"),
}
#: Groups scored when ``--metrics`` is not given, per ``--dataset``.
DEFAULT_GROUPS: dict[str | None, tuple[str, ...]] = {
    None: ("paper", "vessel", "pr", "relaxed"),
    "drive": ("paper", "vessel"),
    "chase": ("paper", "vessel"),
    "stare": ("paper", "vessel"),
    "massroads": ("paper", "pr", "relaxed"),
}

log = logging.getLogger(__name__)


class EvaluationError(ValueError):
    """Input that cannot be scored; the message names the file(s) and the cause."""


def _plane(arr: np.ndarray, name: str, what: str) -> np.ndarray:
    """``(H, W)`` from a file's array: alpha dropped, identical colour channels collapsed."""
    if arr.ndim == 3:
        if arr.shape[-1] in (2, 4):
            arr = arr[..., :-1]
        if not all(np.array_equal(arr[..., 0], arr[..., c]) for c in range(1, arr.shape[-1])):
            raise EvaluationError(
                f"{name}: the {what} has {arr.shape[-1]} channels that differ; save it as one grey channel."
            )
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise EvaluationError(f"{name}: the {what} must be a 2D image, got shape {arr.shape}.")
    return arr


def prediction_to_probability(arr: np.ndarray, name: str) -> np.ndarray:
    """Foreground probability ``float32`` in [0, 1] from a prediction's stored values (see module docstring)."""
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if arr.dtype.kind != "f":
        raise EvaluationError(
            f"{name}: prediction of type {arr.dtype} is not supported; use uint8 (0..255), uint16 (0..65535) "
            "or float in [0, 1]."
        )
    if not np.isfinite(arr).all():
        n = int((~np.isfinite(arr)).sum())
        raise EvaluationError(f"{name}: the prediction holds {n} NaN or infinite value(s).")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise EvaluationError(
            f"{name}: float prediction values span [{lo:g}, {hi:g}]; probabilities must lie in [0, 1]."
        )
    return np.clip(arr, 0, 1).astype(np.float32)


def load_case(case: Case, label_threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read one case; returns ``(probability (H, W) float32, label (H, W) uint8)`` where the label is 0/1
    and ``IGNORE_VALUE`` outside the mask or on the prediction's nodata pixels."""
    raw, pred_valid = read_plane(case.pred)
    if pred_valid is not None:
        raw = np.where(pred_valid[..., None] if raw.ndim == 3 else pred_valid, raw, 0).astype(raw.dtype)
    prob = prediction_to_probability(_plane(raw, str(case.pred), "prediction"), str(case.pred))
    label = _plane(read_plane(case.label)[0], str(case.label), "label")
    if label.shape != prob.shape:
        raise EvaluationError(
            f"size mismatch: prediction {case.pred} is {prob.shape[1]}x{prob.shape[0]} (WxH) but label "
            f"{case.label} is {label.shape[1]}x{label.shape[0]}."
        )
    try:
        y = binarize_label(label, str(case.label), label_threshold).astype(np.uint8)
    except ValueError as e:
        raise EvaluationError(str(e)) from None
    valid = np.ones_like(y, dtype=bool) if pred_valid is None else pred_valid
    if case.mask is not None:
        mask = _plane(read_plane(case.mask)[0], str(case.mask), "mask")
        if mask.shape != prob.shape:
            raise EvaluationError(
                f"size mismatch: prediction {case.pred} is {prob.shape[1]}x{prob.shape[0]} (WxH) but mask "
                f"{case.mask} is {mask.shape[1]}x{mask.shape[0]}."
            )
        if not mask.any():
            raise EvaluationError(
                f"{case.mask}: the mask is empty (no non-zero pixel), nothing to score in it."
            )
        valid &= mask != 0
    if not valid.any():
        raise EvaluationError(f"{case.pred}: no valid pixel to score (all nodata or outside the mask).")
    y[~valid] = IGNORE_VALUE
    return prob, y


class _Scorer:
    """The metric objects of the chosen groups, fed one image at a time."""

    def __init__(self, groups: Sequence[str], threshold: float, curves: bool) -> None:
        self.metrics: dict[str, Any] = {}
        if "paper" in groups:
            self.metrics["paper"] = PaperSegMetrics(threshold=threshold)
        if "vessel" in groups:
            self.metrics["vessel"] = VesselMetrics(threshold=threshold)
        if "pr" in groups or curves:
            self.metrics["pr"] = PRBreakEven()
        if "relaxed" in groups:
            self.metrics["relaxed"] = RelaxedPrecisionRecall(rho=3, threshold=threshold)
        self.groups = tuple(groups)

    def __call__(self, prob: torch.Tensor, y: torch.Tensor) -> None:
        for m in self.metrics.values():
            m(y_pred=prob, y=y)

    def add(self, other: _Scorer) -> None:
        """Pool ``other``'s per-image counts into this scorer (same groups), without computing them again."""
        for name, m in self.metrics.items():
            m.extend(other.metrics[name].get_buffer())

    def result(self) -> dict[str, float]:
        r = {name: m.aggregate() for name, m in self.metrics.items()}
        out: dict[str, float] = {}
        if "paper" in self.groups:
            out.update({k: r["paper"][k] for k in METRIC_GROUPS["paper"]})
        if "vessel" in self.groups:
            v = r["vessel"]
            out.update(
                vessel_F1=v["f1"],
                vessel_AUC=v["auc"],
                Se=v["sensitivity"],
                Sp=v["specificity"],
                Acc=v["accuracy"],
            )
        if "pr" in self.groups:
            out.update(PR_breakeven=r["pr"]["breakeven"], PR_breakeven_road=r["pr"]["breakeven_road"])
        if "relaxed" in self.groups:
            out.update({k: r["relaxed"][k] for k in METRIC_GROUPS["relaxed"]})
        return out


def parse_groups(metrics: str | Sequence[str] | None, dataset: str | None = None) -> tuple[str, ...]:
    """The metric groups from ``"paper,vessel"``-style text or a list; ``None`` gives the dataset's default."""
    if metrics is None:
        return DEFAULT_GROUPS[dataset]
    names = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    unknown = [m for m in names if m not in METRIC_GROUPS]
    if unknown or not names:
        raise EvaluationError(
            f"unknown metric group(s) {unknown or names}; choose from {', '.join(METRIC_GROUPS)}."
        )
    return tuple(dict.fromkeys(names))


def evaluate_folders(
    pred_dir: str | Path,
    label_dir: str | Path,
    mask_dir: str | Path | None = None,
    metrics: str | Sequence[str] | None = None,
    dataset: str | None = None,
    threshold: float = 0.5,
    label_threshold: float | None = None,
    allow_missing: bool = False,
    curves: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Score the predictions of ``pred_dir`` against ``label_dir`` (inside ``mask_dir``'s masks when given).

    Returns ``{<metric>: value, ..., "n_images": N, "per_image": [...]}`` with the keys of the chosen groups
    (:data:`METRIC_GROUPS`); with ``curves`` also ``"curves"`` (PR and, for ``vessel``, ROC points for a plot).
    Raises :class:`EvaluationError` (or ``FileNotFoundError``) naming the files on any bad input; unpaired files
    are an error unless ``allow_missing`` (then they are skipped with a warning that lists them).
    """
    if not 0.0 <= threshold <= 1.0:
        raise EvaluationError(f"threshold must lie in [0, 1], got {threshold}.")
    groups = parse_groups(metrics, dataset)
    try:
        pairing = pair_files(pred_dir, label_dir, mask_dir, dataset)
    except PairingError as e:
        raise EvaluationError(str(e)) from None
    if pairing.superseded:
        log.warning(
            f"{len(pairing.superseded)} prediction file(s) not scored because their case has a _prob file, which "
            f"is used instead (e.g. {pairing.superseded[0]})."
        )
    problems = pairing.problems()
    if problems and not allow_missing:
        raise EvaluationError(
            "unpaired files (pass --allow_missing to skip them): "
            + "; ".join(problems)
            + (f" [naming rule: {dataset}]" if dataset else " [same stem after _prob/_seg]")
        )
    for line in problems:
        log.warning(f"skipped {line}")
    if not pairing.cases:
        raise EvaluationError(
            f"no prediction in {pred_dir} pairs with a label in {label_dir}"
            + (f" and a mask in {mask_dir}" if mask_dir else "")
            + ": nothing to score."
        )
    total = _Scorer(groups, threshold, curves)
    per_image = []
    for case in tqdm(
        pairing.cases, desc="scoring", unit="image", disable=None if progress is None else not progress
    ):
        prob, y = load_case(case, label_threshold)
        prob_t = torch.from_numpy(prob)[None, None]
        y_t = torch.from_numpy(y)[None, None]
        one = _Scorer(groups, threshold, curves)
        one(prob_t, y_t)
        total.add(one)
        row = {"name": case.name, "pred": str(case.pred), "label": str(case.label)}
        if case.mask is not None:
            row["mask"] = str(case.mask)
        per_image.append({**row, **one.result()})
    out: dict[str, Any] = {**total.result(), "n_images": len(pairing.cases), "per_image": per_image}
    if curves:
        h = total.metrics["pr"].histograms()
        out["curves"] = {"pr": pr_curve_from_histograms(h[0], h[1])}
        out["curves"]["pr"].update(pr_breakeven=total.metrics["pr"].aggregate())
        if "vessel" in total.metrics:
            hv = total.metrics["vessel"].histograms()
            out["curves"]["roc"] = {**roc_curve_from_histograms(hv[0], hv[1]), "auc": out.get("vessel_AUC")}
    return out


def write_csv(result: dict[str, Any], path: str | Path) -> None:
    """One row per image (name, files and metrics), written atomically."""
    rows = result["per_image"]
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(to_python(rows))
    atomic_write(path, lambda tmp: Path(tmp).write_text(buf.getvalue()))


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise EvaluationError(
            "--plot needs matplotlib, which is not installed: pip install 'monai-rurnet[plot]' "
            "(or pip install matplotlib)."
        ) from None


def write_plot(curves: dict[str, Any], path: str | Path) -> None:
    """PNG with the precision/recall curve (break-even marked) and, when present, the ROC curve."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    pr = curves["pr"]
    panels = 2 if "roc" in curves else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 5), squeeze=False)
    ax = axes[0, 0]
    be = pr["pr_breakeven"]
    for suffix, label, key in (
        ("", "class mean", "breakeven"),
        ("_road", "foreground class", "breakeven_road"),
    ):
        ax.plot(pr["recall" + suffix], pr["precision" + suffix], label=f"{label} (break-even {be[key]:.4f})")
        if np.isfinite(be[key]):
            ax.plot([be[key]], [be[key]], "o", color=ax.lines[-1].get_color())
    ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=0.8)
    ax.set(xlabel="recall", ylabel="precision", title="Precision / recall", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower left")
    if "roc" in curves:
        roc = curves["roc"]
        ax = axes[0, 1]
        ax.plot(roc["fpr"], roc["tpr"], label=f"AUC {roc['auc']:.4f}")
        ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=0.8)
        ax.set(
            xlabel="false positive rate",
            ylabel="true positive rate",
            title="ROC",
            xlim=(0, 1),
            ylim=(0, 1.01),
        )
        ax.legend(loc="lower right")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m monai_rurnet.evaluate",
        description="Score segmentation outputs (ours or any tool's) against labels; prints one JSON object.",
    )
    p.add_argument("--pred", required=True, help="folder of predictions: probability or 0/255 mask images")
    p.add_argument("--label", required=True, help="folder of labels (foreground where > 0)")
    p.add_argument("--mask", help="folder of masks (e.g. FOV); every metric is computed inside the mask")
    p.add_argument(
        "--metrics",
        help=f"comma-separated groups of {', '.join(METRIC_GROUPS)} "
        "(default: all; with --dataset, that field's usual ones)",
    )
    p.add_argument(
        "--dataset",
        choices=sorted(set(DATASET_NAMING) - {"default"}),
        help="pair files by this dataset's naming (default: same stem)",
    )
    p.add_argument("--threshold", type=float, default=0.5, help="foreground threshold on the probability")
    p.add_argument("--label_threshold", type=float, help="foreground = label > T, for grey or lossy labels")
    p.add_argument("--allow_missing", action="store_true", help="skip unpaired files with a warning")
    p.add_argument("--out", help="also write the JSON to this file")
    p.add_argument("--csv", help="write one row per image to this CSV file")
    p.add_argument("--plot", help="write a PNG with the PR curve (and the ROC curve for vessel)")
    p.add_argument("--debug", action="store_true", help="show the traceback on errors")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry; returns the exit status (0 only when something was scored)."""
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    log.addHandler(handler)
    try:
        if args.plot:
            _require_matplotlib()
        result = evaluate_folders(
            args.pred,
            args.label,
            args.mask,
            metrics=args.metrics,
            dataset=args.dataset,
            threshold=args.threshold,
            label_threshold=args.label_threshold,
            allow_missing=args.allow_missing,
            curves=bool(args.plot),
        )
        curves = result.pop("curves", None)
        result = to_python(result)
        if args.out:
            atomic_json_dump(result, args.out)
        if args.csv:
            write_csv(result, args.csv)
        if curves is not None:
            write_plot(curves, args.plot)
    except (EvaluationError, FileNotFoundError, ValueError) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        log.removeHandler(handler)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
