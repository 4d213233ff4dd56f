"""MONAI Label ``/infer`` latency of the retina bundle against the bundle CLI's time per image (issue 21).

Serves ``bundles/retina_drive`` with ``python -m monai_rurnet.label.serve`` (label environment, see
``docs/monai_label.md``) on a studies folder of DRIVE test images (``--images``, default the bundle's
``sample_data``), times ``POST /infer/retina_drive?image=ID&output=image`` end to end from this client (after one
warm-up request), and ``GET /info/`` while an inference runs; then runs the bundle CLI (``python -m monai.bundle
run``) on the same images and reports its own per-image time (``Summary`` line: images / seconds, model loading
excluded) and its wall time per image (process start and model loading included). Server and CLI both run with
``--threads`` threads (``OMP_NUM_THREADS``). Not a test: nothing is asserted.

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


def serve_latency(studies: Path, ids: list[str], threads: int, work: Path) -> dict[str, list[float]]:
    """Per-image ``/infer`` seconds and ``/info/`` seconds during an inference, from one server."""
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
    try:
        wait_until_ready(base, timeout=300, proc=proc)
        _post(f"{base}/infer/retina_drive?image={ids[0]}&output=image")  # warm-up: loads the runner
        infer = [_post(f"{base}/infer/retina_drive?image={i}&output=image") for i in ids]
        info: list[float] = []
        for i in ids[:3]:
            t = threading.Thread(target=_post, args=(f"{base}/infer/retina_drive?image={i}&output=image",))
            t.start()
            time.sleep(0.3)
            info.append(_get(f"{base}/info/"))
            t.join()
        return {"infer": infer, "info": info}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def cli_time(images: Path, n: int, threads: int, work: Path) -> tuple[float, float]:
    """``(runner seconds per image, wall seconds per image)`` of the bundle CLI on ``n`` images."""
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(BUNDLE / "configs" / "inference.json"),
    ]
    cmd += ["--bundle_root", str(BUNDLE), "--dataset_dir", str(images), "--output_dir", str(work / "cli")]
    cmd += ["--overwrite", "true", "--progress", "false"]
    t0 = time.perf_counter()
    out = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)}, check=True
    ).stdout
    wall = time.perf_counter() - t0
    m = re.search(r"Summary: (\d+) images segmented.*?([\d.]+) s ->", out)
    if m is None:
        raise RuntimeError(f"no Summary line in the CLI output:\n{out[-2000:]}")
    return float(m.group(2)) / max(int(m.group(1)), 1), wall / n


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
        serve = serve_latency(studies, [f.stem for f in files], args.threads, work)
        runner_s, wall_s = cli_time(studies, len(files), args.threads, work)
    print(environment())
    print(f"threads: {args.threads}; images: {len(files)} from {args.images}\n")
    infer = statistics.median(serve["infer"])
    rows = [
        ["MONAI Label POST /infer (end to end, median)", infer, 1.0],
        ["bundle CLI, runner time per image", runner_s, runner_s / infer],
        ["bundle CLI, wall time per image (incl. start-up)", wall_s, wall_s / infer],
        ["GET /info/ during an inference (max)", max(serve["info"]), float("nan")],
    ]
    print(table(["what", "seconds", "x /infer"], rows))
    print("\nper-image /infer seconds:", json.dumps([round(t, 2) for t in serve["infer"]]))


if __name__ == "__main__":
    main()
