"""MONAI Label's stock ``monaibundle`` app on exported bundles vs the bundle CLI: agreement and latency (issue 21).

Copies the stock sample app of the label environment, exports the bundles into it
(``python -m monai_rurnet.bundle export``), serves a studies folder of the given images with
``python -m monailabel.main start_server ... --conf sam2 false --conf zoo_source local`` and, for every image,
``POST /infer/<bundle>?image=ID&output=image`` (timed end to end from this client); then runs the bundle CLI
(``python -m monai.bundle run`` on the repository's bundle) on the same images with the same thread count and
compares each label with the CLI's ``_seg``: Dice, differing pixels, identical or not. Not a test: nothing is
asserted.

Usage::

    python benchmarks/label_stock_agreement.py                     # the bundles' sample_data, 2 threads
    python benchmarks/label_stock_agreement.py --limit 5 \\
        --images retina_drive=/work/shared/data/DRIVE/test/images \\
        --images handseg=/work/shared/data/Hands/RR_OWN/images \\
        --images massroads=/work/shared/data/MassRoads/train/sat
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from _common import environment, table
from PIL import Image

from monai_rurnet.bundle.export import export_bundle
from monai_rurnet.label import (
    find_label_python,
    free_port,
    server_env,
    start_server,
    stock_sample_app,
    stop_server,
    wait_until_ready,
)

REPO = Path(__file__).resolve().parents[1]
SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


def _images(folder: Path, limit: int) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)[:limit]


def _infer(url: str) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=1800) as r:
        body = r.read()
    seconds = time.perf_counter() - t0
    with Image.open(io.BytesIO(body)) as im:
        return seconds, np.asarray(im)


def _cli_segs(bundle: Path, images: list[Path], threads: int, work: Path) -> dict[str, np.ndarray]:
    """``{image name: _seg > 0}`` of the bundle CLI on ``images``."""
    in_dir, out_dir = work / "in", work / "out"
    in_dir.mkdir(parents=True)
    for p in images:
        os.symlink(p.resolve(), in_dir / p.name)
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "inference.json"),
           "--bundle_root", str(bundle), "--dataset_dir", str(in_dir), "--output_dir", str(out_dir),
           "--device", "$torch.device('cpu')", "--progress", "false"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = {}
    for p in images:
        seg = next(iter(sorted(out_dir.glob(f"{p.stem}_seg.*"))))
        if seg.suffix.lower() in (".tif", ".tiff"):
            import rasterio

            with rasterio.open(seg) as src:
                out[p.name] = src.read(1) > 0
        else:
            out[p.name] = np.asarray(Image.open(seg)) > 0
    return out


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 1.0 if not (a.any() or b.any()) else 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", action="append", default=[], metavar="BUNDLE=FOLDER",
                   help="images of one bundle (default: each bundle's sample_data)")  # fmt: skip
    p.add_argument("--limit", type=int, default=5, help="images per bundle")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--python", help="the label environment's python (default: $MONAI_RURNET_LABEL_PYTHON)")
    args = p.parse_args()
    folders = dict(s.split("=", 1) for s in args.images) or {
        b: str(REPO / "bundles" / b / "sample_data") for b in ("retina_drive", "massroads", "handseg")
    }
    python = args.python or find_label_python()
    if python is None:
        raise SystemExit("no MONAI Label environment: run `bash .ci/label_env.sh` or pass --python")
    print(environment())
    print(f"label environment: {python}; {args.threads} threads (server and CLI)\n")
    work = Path(tempfile.mkdtemp(prefix="stock-agreement-"))
    try:
        app, studies = work / "app", work / "studies"
        shutil.copytree(stock_sample_app(python), app, ignore=shutil.ignore_patterns("__pycache__"))
        studies.mkdir()
        chosen: dict[str, list[Path]] = {}
        for name, folder in folders.items():
            export_bundle(REPO / "bundles" / name, app / "model" / name)
            chosen[name] = _images(Path(folder), args.limit)
            for img in chosen[name]:  # one studies folder: ids prefixed with the bundle
                shutil.copy(img, studies / f"{name}__{img.name}")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        cmd = [python, "-m", "monailabel.main", "start_server", "--app", str(app), "--studies", str(studies),
               "--host", "127.0.0.1", "--port", str(port), "--conf", "models", ",".join(folders),
               "--conf", "sam2", "false", "--conf", "zoo_source", "local"]  # fmt: skip
        env = server_env({"OMP_NUM_THREADS": str(args.threads), "TMPDIR": str(work)})
        proc = start_server(cmd, work / "server.log", env, cwd=work)
        rows = []
        try:
            wait_until_ready(base, timeout=600, proc=proc)
            for name, images in chosen.items():
                labels, seconds = {}, []
                for img in images:
                    stem = f"{name}__{img.stem}"
                    s, labels[img.name] = _infer(f"{base}/infer/{name}?image={stem}&output=image")
                    seconds.append(s)
                cli = _cli_segs(REPO / "bundles" / name, images, args.threads, work / f"cli_{name}")
                dices, diffs, same = [], [], 0
                for img in images:
                    lab, ref = labels[img.name], cli[img.name]
                    if lab.shape != ref.shape:
                        print(f"{name}/{img.name}: label {lab.shape} vs CLI {ref.shape}")
                        continue
                    dices.append(_dice(lab > 0, ref))
                    diffs.append(int(((lab > 0) != ref).sum()))
                    same += int(diffs[-1] == 0)
                shape = "x".join(str(s) for s in labels[images[0].name].shape)
                rows.append([name, f"{len(images)} ({shape}...)", f"{same}/{len(images)}",
                             f"{statistics.mean(dices):.5f}" if dices else "-", f"{min(dices):.5f}" if dices else "-",
                             str(max(diffs, default=0)), f"{statistics.median(seconds):.2f}"])  # fmt: skip
        finally:
            stop_server(proc)
        print(table(["bundle", "images", "pixel-identical", "mean Dice vs CLI", "min Dice", "max differing px",
                     "stock /infer median s"], rows))  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
