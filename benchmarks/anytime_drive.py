"""Anytime inference on DRIVE: accuracy vs time for fixed steps and adaptive early exit.

For retina_drive weights trained *without* images 37-40 (``--weights``, a network like the bundle's ``network_def``
or the one ``--cell``/``--level`` name; the shipped bundle weights are trained on all 20
DRIVE training images, so they cannot be scored here), on the held-out DRIVE training images 37-40 (preprocessed by ``validate#preprocessing`` of
``bundles/retina_drive/configs/train.json``), runs the bundle's sliding-window inference (roi 96x96, overlap
0.25, gaussian) with ``steps = 1, 2, 3`` and with early exit at ``tol`` in {0.05, 0.02, 0.01} (up to 3 steps),
plus the mean-change rule of :class:`monai_rurnet.inferers.TorchFastPredictor` (tol 0.01 .. 0.001; early
exit is decided per window), and reports vessel F1 / AUC inside the FOV (pooled over the images, :class:`monai_rurnet.metrics.VesselMetrics`),
the mean number of steps used (per window batch, weighted by windows) and seconds per image.

Usage::

    python benchmarks/anytime_drive.py --weights /work/runs/dru4_robust/models/model.pt [--cell dru --level 4] [--backend torch|onnxruntime|eager] [--threads 2] [--roi 96]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from _common import environment, table
from monai.bundle import ConfigParser
from monai.inferers import SlidingWindowInferer

from monai_rurnet.data import drive_datalist
from monai_rurnet.inferers import PRECISIONS, EagerPredictor, OnnxRuntimePredictor, TorchFastPredictor
from monai_rurnet.metrics import VesselMetrics, apply_fov
from monai_rurnet.utils import load_state_dict_file

ROOT = Path(__file__).resolve().parents[1]


class _Counting:
    """Calls ``predictor(x, steps, tol)`` and records the steps used per window batch."""

    def __init__(self, predictor, steps: int, tol: float | None) -> None:
        self.predictor, self.steps, self.tol = predictor, steps, tol
        self.windows = 0
        self.step_windows = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.predictor is None:
            raise RuntimeError
        out = self.predictor(x, steps=self.steps, tol=self.tol)
        self.windows += x.shape[0]
        self.step_windows += sum(self.predictor.last_steps_per_sample)
        return out


def _eager(net: torch.nn.Module) -> EagerPredictor:
    """Reference path: the network as it is, through the anytime loop with its max-change rule per window batch."""
    return EagerPredictor(net, per_sample=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/work/shared/data/DRIVE")
    p.add_argument("--weights", required=True, help="state_dict of a model trained without the --ids images")
    p.add_argument(
        "--cell", choices=["dru", "sru"], default=None, help="recurrent unit (default: the bundle's)"
    )
    p.add_argument(
        "--level", type=int, default=None, help="level of the recurrent unit (default: the bundle's)"
    )
    p.add_argument("--ids", nargs="+", type=int, default=[37, 38, 39, 40])
    p.add_argument("--backend", default="torch", choices=["torch", "onnxruntime", "eager"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--roi", type=int, default=96)
    p.add_argument("--sw_batch_size", type=int, default=16)
    p.add_argument("--quick", action="store_true", help="smoke run: one image, steps 1 and tol 0.05 only")
    p.add_argument("--precision", default="float32", choices=list(PRECISIONS), help="torch backend only")
    args = p.parse_args()
    if args.precision != "float32" and args.backend != "torch":
        p.error("--precision bfloat16 needs --backend torch")
    torch.set_num_threads(args.threads)

    weights = Path(args.weights)
    if not weights.is_file():
        sys.exit(f"{weights}: weights file not found")
    parser = ConfigParser()
    parser.read_config(
        [
            str(ROOT / "bundles/retina_drive/configs/inference.json"),
            str(ROOT / "configs/train_base.json"),
            str(ROOT / "bundles/retina_drive/configs/train.json"),
        ]
    )
    parser["network_def#return_all_steps"] = (
        False  # train.json's training setting; inference uses the last step
    )
    if args.cell:
        parser["network_def#cell"] = args.cell
    if args.level is not None:
        parser["network_def#level"] = args.level
    net = parser.get_parsed_content("network_def")
    load_state_dict_file(weights, net)
    net.eval()

    preprocessing = parser.get_parsed_content("validate#preprocessing")
    ids = args.ids[:1] if args.quick else args.ids
    data = [preprocessing(d) for d in drive_datalist(args.data, "training", ids=ids)]

    if args.backend == "torch":
        predictor = TorchFastPredictor(net, precision=args.precision)
    elif args.backend == "onnxruntime":
        predictor = OnnxRuntimePredictor(net, intra_op_threads=args.threads)
    else:
        predictor = _eager(net)
    inferer = SlidingWindowInferer(
        (args.roi, args.roi), sw_batch_size=args.sw_batch_size, overlap=0.25, mode="gaussian"
    )
    configs: list[tuple[str, int, float | None, str]] = [
        ("steps=1", 1, None, "max"),
        ("steps=2", 2, None, "max"),
        ("steps=3", 3, None, "max"),
    ]
    configs += [(f"adaptive max-change tol={t}", 3, t, "max") for t in (0.05, 0.02, 0.01)]
    if args.backend != "eager":
        configs += [(f"adaptive mean-change tol={t}", 3, t, "mean") for t in (0.01, 0.005, 0.002, 0.001)]
    if args.quick:
        configs = [configs[0], configs[3], configs[-1]]

    print("# Anytime inference on DRIVE (benchmarks/anytime_drive.py)\n")
    print(environment())
    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"weights: {weights} (modified {time.strftime('%Y-%m-%d %H:%M', time.gmtime(weights.stat().st_mtime))} UTC)"
        f"; images: DRIVE training {ids}; backend {args.backend}, {args.threads} thread(s); "
        f"sliding window roi {args.roi}, overlap 0.25, gaussian, sw_batch_size {args.sw_batch_size}\n"
    )
    # warm-up (first-call allocations, oneDNN primitive creation)
    inferer(data[0]["image"].unsqueeze(0), _Counting(predictor, 1, None))

    # images outer, configurations inner (round-robin): a change of the machine's load hits all alike
    metrics = {c[0]: VesselMetrics() for c in configs}
    counters = {c[0]: _Counting(predictor, c[1], c[2]) for c in configs}
    seconds = dict.fromkeys(metrics, 0.0)
    for d in data:
        x = d["image"].as_tensor().unsqueeze(0) if hasattr(d["image"], "as_tensor") else d["image"][None]
        label = apply_fov(
            torch.as_tensor(d["label"]).unsqueeze(0), torch.as_tensor(d["mask"]).unsqueeze(0) > 0
        )
        for name, _, _, stat in configs:
            if args.backend != "eager":
                predictor.exit_stat = stat
            t0 = time.perf_counter()
            logits = inferer(x, counters[name])
            seconds[name] += time.perf_counter() - t0
            metrics[name](y_pred=torch.softmax(logits.float(), dim=1), y=label)
        print(f"image done ({len(data)} in all)", flush=True)
    rows = []
    for name, *_ in configs:
        res, counter = metrics[name].aggregate(), counters[name]
        rows.append(
            [
                name,
                res["f1"],
                res["auc"],
                res["sensitivity"],
                res["specificity"],
                counter.step_windows / max(1, counter.windows),
                seconds[name] / len(data),
            ]
        )
    print()
    print(table(["inference", "F1 (FOV)", "AUC", "Se", "Sp", "mean steps", "s / image"], rows))
    print(
        "\nF1/AUC/Se/Sp pooled over all FOV pixels of the images (threshold 0.5). Early exit after step t >= 2 "
        "when the max (the default rule) or mean absolute change of the probabilities between "
        "two steps is below tol, decided per window (backend eager: per window batch); mean steps: over windows."
    )


if __name__ == "__main__":
    main()
