"""``python -m monai_rurnet.bundle options BUNDLE_DIR``: the inference options of a bundle, default and meaning.

Every top-level value of ``configs/inference.json`` that is not a component (a ``_target_`` dict) or a Python
expression is an option: ``python -m monai.bundle run ... --<name> VALUE`` overrides it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["OPTION_HELP", "inference_options", "main"]

#: what each inference option means (the bundles share the names).
OPTION_HELP = {
    "dataset_dir": "input folder (default: the bundle's sample images)",
    "output_dir": "output folder (default: ./outputs)",
    "model_file": "weights (state_dict) to load",
    "device": "torch device (default: CUDA when available, else CPU)",
    "overwrite": "redo inputs whose outputs exist (default: skip them, so an interrupted run resumes)",
    "progress": "show a progress bar",
    "steps": "recurrent steps (null: the network's own, 3); fewer is faster (anytime inference)",
    "tol": "early exit once the probabilities change less than tol between two steps (null: never)",
    "exit_stat": "how tol's change is measured: max or mean absolute change",
    "threshold": "probability threshold of the _seg mask",
    "backend": "eager (the network as it is), torch (fast path: channels-last, frozen trace) or onnxruntime",
    "precision": "float32, or bfloat16 on CPUs with AVX512-BF16/AMX and GPUs (backend torch)",
    "flip_tta": "average 4 mirrored copies (more accurate, 4x the time)",
    "roi_size": "sliding-window size (a multiple of 16)",
    "sw_batch_size": "sliding windows per forward pass",
    "sw_overlap": "sliding-window overlap fraction",
    "window": "raster window read and written at a time (px); memory grows with its square",
    "fov_rescale": "resample each image so its field of view matches DRIVE's, then back",
    "fov_diameter": "DRIVE's field-of-view diameter in px (the target of fov_rescale)",
    "image_size": "the network's input size: images are resized to it and the result back",
    "mean": "per-channel normalisation mean (images scaled to [0, 1] first)",
    "std": "per-channel normalisation standard deviation",
    "max_pixels": "inputs with more pixels are refused by name before decoding; raise it if memory allows",
    "num_parts": "split the inputs into this many disjoint shares (one per process; torchrun ranks split further)",
    "part_id": "which share this process takes, 0..num_parts-1",
    "prior_dir": "interactive refinement: folder of earlier results used as the start mask s_0, per stem "
    "<stem>_prob.* (preferred) or <stem>_seg.* (null: none)",
    "strokes_dir": "interactive refinement: folder of <stem>_strokes.* (uint8: 0 none, 1 background, 2 foreground; "
    "all strokes so far), enforced in the result (null: none)",
    "split_rasters": "under torchrun, split each raster among the ranks by row strips (null: when fewer rasters "
    "than ranks)",
}
_NOT_OPTIONS = ("imports", "bundle_root", "run", "initialize", "finalize")


def inference_options(bundle_dir: str | Path) -> list[tuple[str, Any, str]]:
    """``(name, default, meaning)`` of each option of ``bundle_dir/configs/inference.json``, in file order."""
    path = Path(bundle_dir) / "configs" / "inference.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no inference config (is {bundle_dir} a bundle folder?)")
    config = json.loads(path.read_text())
    out = []
    for name, value in config.items():
        component = isinstance(value, dict) and "_target_" in value
        expression = isinstance(value, str) and value.startswith(("$", "@", "%")) and name not in OPTION_HELP
        if name in _NOT_OPTIONS or component or expression or name.startswith("_"):
            continue
        out.append((name, value, OPTION_HELP.get(name, "")))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: print the options of each bundle."""
    parser = argparse.ArgumentParser(
        prog="python -m monai_rurnet.bundle options",
        description="List a bundle's inference options (override with --<name> VALUE on monai.bundle run).",
    )
    parser.add_argument("bundles", nargs="+", help="bundle directories")
    args = parser.parse_args(argv)
    for b in args.bundles:
        print(f"{b}: python -m monai.bundle run --config_file {Path(b) / 'configs' / 'inference.json'} ...")
        for name, default, meaning in inference_options(b):
            print(f"  --{name} {json.dumps(default)}" + (f"\n      {meaning}" if meaning else ""))
    return 0
