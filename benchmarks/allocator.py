"""Effect of buffer reuse (:func:`monai_rurnet.inferers.reuse_freed_memory`) on a fresh inference process.

``speed.py`` times many models in one process, where glibc's dynamic mmap threshold has already been raised by
earlier models; a deployment runs one model per process. This script starts a fresh process per
(model, size, allocator) and times the model there, after warm-up; the two allocators alternate, so load drifts
hit both alike.

Usage::

    python benchmarks/allocator.py --threads 2 | tee benchmarks/results/allocator.txt
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from _common import environment, table

CHILD = """
import sys, torch
from monai_rurnet.inferers import TorchFastPredictor, reuse_freed_memory
from monai_rurnet.networks import build_network
model, size, threads, reuse, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "reuse", int(sys.argv[5])
torch.set_num_threads(threads)
torch.manual_seed(0)
if reuse:
    reuse_freed_memory()
if model == "DRU(4) T=3 fast":
    run = TorchFastPredictor(build_network("dru", level=4, steps=3))
else:
    net = build_network("monai_basic_unet").eval()
    def run(x):
        with torch.inference_mode():
            return net(x)
sys.path.insert(0, sys.argv[6])
from _common import median_time
x = torch.randn(1, 3, size, size)
print(median_time(lambda: run(x), repeats)[0])
"""

MODELS = ["DRU(4) T=3 fast", "BasicUNet eager"]
HERE = str(Path(__file__).resolve().parent)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", type=int, default=[576, 1024])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="timed calls per process (median reported)")
    p.add_argument("--rounds", type=int, default=2, help="fresh processes per configuration")
    args = p.parse_args()
    print("# Buffer reuse in a fresh process (benchmarks/allocator.py)\n")
    print(environment())
    print(f"command: python {' '.join(sys.argv)}\n")
    rows = []
    for size in args.sizes:
        for model in MODELS:
            med: dict[str, list[float]] = {"default": [], "reuse": []}
            for _ in range(args.rounds):
                for mode in med:
                    out = subprocess.run(
                        [
                            sys.executable,
                            "-c",
                            CHILD,
                            model,
                            str(size),
                            str(args.threads),
                            mode,
                            str(args.repeats),
                            HERE,
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout.split()
                    med[mode].append(float(out[-1]))
            d, r = min(med["default"]), min(med["reuse"])
            rows.append([args.threads, f"{size}x{size}", model, d * 1e3, r * 1e3, r / d])
            print(table(["threads", "size", "model", "default ms", "reuse ms", "reuse / default"], rows[-1:]))
    print("\n## All\n")
    print(table(["threads", "size", "model", "default ms", "reuse ms", "reuse / default"], rows))
    print(
        f"\nms: best over {args.rounds} fresh processes of the median of {args.repeats} calls after one "
        "warm-up call; batch 1, float32."
    )


if __name__ == "__main__":
    main()
