"""Scale-out inference with the massroads bundle: 1 process vs 2 torchrun processes (gloo), 1 thread each.

Runs the bundle's own inference command (``python -m monai.bundle run ... --flip_tta false``) on synthetic
road GeoTIFFs: a folder of ``--tiles`` tiles of ``--tile`` px (shared out between the ranks) and one raster of
``--size`` px (split among the ranks by row strips, ``--window`` px windows). Prints megapixels per second, the
speed-up over one process and the largest per-process peak RSS (``RUSAGE_CHILDREN``), and checks that the two
runs wrote the same masks.

Usage::

    python benchmarks/scale_out.py                   # 4 tiles of 512 px, one 1024 px raster
    python benchmarks/scale_out.py --tiles 8 --size 2048
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from _common import environment, table
from big_raster import write_synthetic_raster

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundles" / "massroads"


def run(src: Path, out: Path, nproc: int, window: int) -> tuple[float, float]:
    """Wall seconds and the largest child's peak RSS (MB) of one inference run."""
    args = [
        "-m", "monai.bundle", "run", "--config_file", str(BUNDLE / "configs" / "inference.json"),
        "--bundle_root", str(BUNDLE), "--dataset_dir", str(src), "--output_dir", str(out),
        "--flip_tta", "false", "--progress", "false", "--window", str(window),
    ]  # fmt: skip
    if nproc > 1:
        args = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # a fresh parent per run, so that RUSAGE_CHILDREN's peak is this run's (the largest of its processes)
    probe = (
        "import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(rc)"
    )
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", probe, sys.executable, *args], capture_output=True, text=True, env=env
    )
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return seconds, int(proc.stderr.strip().splitlines()[-1]) / 1024


def same_masks(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.glob("*_seg.tif"))
    if names != sorted(p.name for p in b.glob("*_seg.tif")):
        return False
    for n in names:
        with rasterio.open(a / n) as x, rasterio.open(b / n) as y:
            if not np.array_equal(x.read(), y.read()):
                return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=4)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--window", type=int, default=256)
    args = ap.parse_args()
    print(environment())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "folder").mkdir()
        (tmp / "raster").mkdir()
        for i in range(args.tiles):
            write_synthetic_raster(tmp / "folder" / f"tile{i}.tif", args.tile, tile=args.tile, variants=1)
        write_synthetic_raster(tmp / "raster" / "big.tif", args.size, tile=min(args.size, 1024))
        cases = (("folder", args.tiles * args.tile**2, 2048), ("raster", args.size**2, args.window))
        for case, pixels, window in cases:
            base = None
            for nproc in (1, 2):
                out = tmp / f"out_{case}_{nproc}"
                seconds, rss = run(tmp / case, out, nproc, window)
                base = base or seconds
                rows.append(
                    [case, nproc, f"{pixels / 1e6:.2f}", f"{seconds:.1f}", f"{pixels / 1e6 / seconds:.3f}",
                     f"{base / seconds:.2f}x", f"{rss:.0f}"]
                )  # fmt: skip
            rows[-1].append("yes" if same_masks(tmp / f"out_{case}_1", tmp / f"out_{case}_2") else "NO")
            rows[-2].append("")
    print(
        table(
            [
                "input",
                "processes",
                "MP",
                "wall s",
                "MP/s",
                "speed-up",
                "peak RSS of a process, MB",
                "same masks",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
