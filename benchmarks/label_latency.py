"""MONAI Label ``/infer`` latency of the retina bundle against the bundle CLI's time per image (issue 21).

Serves ``bundles/retina_drive`` with ``python -m monai_rurnet.label.serve`` (label environment, see
``docs/monai_label.md``) on a studies folder of DRIVE test images (``--images``, default the bundle's
``sample_data``), times ``POST /infer/retina_drive?image=ID&output=image`` end to end from this client (after one
warm-up request) and, round-robin with it, the bundle CLI (``python -m monai.bundle run``) on each image alone:
its own time (``Summary`` line, model loading excluded) and its wall time (process start and model loading
included); then ``GET /info/`` while inferences run. Server and CLI both run with ``--threads`` threads
(``OMP_NUM_THREADS``); the server runs in the label environment (its torch version is printed). Not a test:
nothing is asserted.

Usage::

    python benchmarks/label_latency.py                                   # sample_data, 2 threads
    python benchmarks/label_latency.py --images /work/shared/data/DRIVE/test/images --limit 5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from _common import environment, table

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "retina_drive"
SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


def _post(url: str) -> float:
    t0 = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=600) as r:
        r.read()
    return time.perf_counter() - t0


def _get(url: str) -> float:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as r:
        r.read()
    return time.perf_counter() - t0


def cli_time(image: Path, threads: int, work: Path) -> tuple[float, float]:
    """``(runner seconds, wall seconds)`` of the bundle CLI on the one image ``image``."""
    in_dir, out_dir = work / "cli_in", work / "cli_out"
    shutil.rmtree(in_dir, ignore_errors=True)
    in_dir.mkdir()
    shutil.copy(image, in_dir / image.name)
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(BUNDLE / "configs" / "inference.json"),
    ]
    cmd += ["--bundle_root", str(BUNDLE), "--dataset_dir", str(in_dir), "--output_dir", str(out_dir)]
    cmd += ["--overwrite", "true", "--progress", "false"]
    t0 = time.perf_counter()
    out = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)}, check=True
    ).stdout
    wall = time.perf_counter() - t0
    m = re.search(r"Summary: 1 images segmented.*?([\d.]+) s ->", out)
    if m is None:
        raise RuntimeError(f"no Summary line in the CLI output:\n{out[-2000:]}")
    return float(m.group(1)), wall


def measure(studies: Path, files: list[Path], threads: int, work: Path) -> dict[str, list[float]]:
    """Round-robin over the images: one ``/infer`` then the CLI on the same image, so that the load of a shared
    machine hits both alike; then ``GET /info/`` while inferences run."""
    from monai_rurnet.label import free_port, wait_until_ready

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "monai_rurnet.label.serve",
        "--bundle",
        str(BUNDLE),
        "--studies",
        str(studies),
    ]
    cmd += ["--port", str(port), "--workdir", str(work / "app")]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with open(work / "server.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    out: dict[str, list[float]] = {"infer": [], "runner": [], "wall": [], "info": []}
    try:
        wait_until_ready(base, timeout=300, proc=proc)
        url = f"{base}/infer/retina_drive?image={{}}&output=image"
        _post(url.format(files[0].stem))  # warm-up: loads the runner
        for f in files:
            out["infer"].append(_post(url.format(f.stem)))
            runner, wall = cli_time(f, threads, work)
            out["runner"].append(runner)
            out["wall"].append(wall)
        for f in files[:3]:
            t = threading.Thread(target=_post, args=(url.format(f.stem),))
            t.start()
            time.sleep(0.3)
            out["info"].append(_get(f"{base}/info/"))
            t.join()
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default=str(BUNDLE / "sample_data"), help="folder of retina images")
    p.add_argument("--limit", type=int, default=5, help="at most this many images")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    files = sorted(f for f in Path(args.images).iterdir() if f.suffix.lower() in SUFFIXES)[: args.limit]
    if not files:
        raise SystemExit(f"{args.images}: no images")
    with tempfile.TemporaryDirectory(prefix="label-latency-") as tmp:
        work = Path(tmp)
        studies = work / "studies"
        studies.mkdir()
        for f in files:
            shutil.copy(f, studies / f.name)
        m = measure(studies, files, args.threads, work)
    from monai_rurnet.label import find_label_python

    label_torch = subprocess.run(
        [find_label_python(check=False) or "python", "-c", "import torch; print(torch.__version__)"],
        capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    print(environment())
    print(f"threads: {args.threads}; images: {len(files)} from {args.images}; server torch {label_torch}\n")
    med = {k: statistics.median(v) for k, v in m.items()}
    rows = [
        ["MONAI Label POST /infer (end to end, median)", med["infer"], 1.0],
        ["bundle CLI, runner time per image (median)", med["runner"], med["runner"] / med["infer"]],
        ["bundle CLI, wall time per image (incl. start-up)", med["wall"], med["wall"] / med["infer"]],
        ["GET /info/ during an inference (max)", max(m["info"]), float("nan")],
    ]
    print(table(["what", "seconds", "x /infer"], rows))
    for k in ("infer", "runner", "wall", "info"):
        print(f"{k} seconds:", json.dumps([round(t, 3) for t in m[k]]))


if __name__ == "__main__":
    main()
