"""End-to-end segmentation of a large GeoTIFF with bounded memory: peak RSS and megapixels per second.

Writes a synthetic ``size x size`` 3-band uint8 GeoTIFF (tiled 256, deflate, EPSG:26986, 1 m pixels) made of
tiles of :func:`monai_rurnet.data.synthetic.synthetic_roads` into a temporary folder, then segments it with the
``massroads`` windowed inference path (:func:`monai_rurnet.runners.segment_raster`, the bundle's
settings: roi 256, overlap 0.25, gaussian, sw_batch_size 4, window 2048) and reports wall time, megapixels/s
and the process's peak RSS, and checks that the outputs carry the input's CRS and transform.

Usage::

    python benchmarks/big_raster.py --size 4000              # smoke run
    python benchmarks/big_raster.py --size 20000 --steps 1   # the full raster (400 MP)
    python benchmarks/big_raster.py --size 20000 --precision bfloat16   # torch backend in bfloat16
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from _common import environment, peak_rss_mb, reset_peak_rss, table
from rasterio.transform import from_origin
from rasterio.windows import Window

from monai_rurnet.data.synthetic import synthetic_roads
from monai_rurnet.inferers import PRECISIONS, FastInferer, reuse_freed_memory
from monai_rurnet.networks import build_network
from monai_rurnet.runners import segment_raster
from monai_rurnet.utils import load_state_dict_file

CRS = "EPSG:26986"  # NAD83 / Massachusetts Mainland, as the Massachusetts Roads tiles
TRANSFORM = from_origin(200000.0, 950000.0, 1.0, 1.0)


def write_synthetic_raster(path: Path, size: int, tile: int = 1024, variants: int = 4) -> float:
    """Tile ``variants`` synthetic road images over a ``size x size`` GeoTIFF; returns seconds taken."""
    t0 = time.perf_counter()
    tiles = [synthetic_roads((tile, tile), seed=i)[0] for i in range(variants)]
    profile = dict(
        driver="GTiff",
        height=size,
        width=size,
        count=3,
        dtype="uint8",
        crs=CRS,
        transform=TRANSFORM,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        BIGTIFF="IF_SAFER",
    )
    with rasterio.open(path, "w", **profile) as dst:
        k = 0
        for r in range(0, size, tile):
            for c in range(0, size, tile):
                h, w = min(tile, size - r), min(tile, size - c)
                dst.write(tiles[k % variants][:, :h, :w], window=Window(c, r, w, h))
                k += 1
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=20000, help="raster height = width in px")
    p.add_argument("--backend", default="torch", choices=["eager", "torch", "onnxruntime"])
    p.add_argument("--steps", type=int, default=3, help="recurrent steps of DRU(4)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--window", type=int, default=2048)
    p.add_argument("--roi", type=int, default=256)
    p.add_argument("--sw_batch_size", type=int, default=4)
    p.add_argument("--overlap", type=float, default=0.25)
    p.add_argument("--weights", default=None, help="DRU(4) state_dict (default: random init; timing only)")
    p.add_argument(
        "--allocator",
        choices=["reuse", "default"],
        default="reuse",
        help="reuse: the fast backends keep freed memory for reuse (their default); default: stock malloc",
    )
    p.add_argument("--keep", default=None, help="folder to keep the rasters in (default: a temp folder)")
    p.add_argument("--precision", default="float32", choices=list(PRECISIONS), help="torch backend only")
    args = p.parse_args()
    if args.precision != "float32" and args.backend != "torch":
        p.error("--precision bfloat16 needs --backend torch")
    torch.set_num_threads(args.threads)

    print("# Large-raster inference (benchmarks/big_raster.py)\n")
    print(environment())
    print(f"command: python {' '.join(sys.argv)}\n")
    tmp = tempfile.TemporaryDirectory(prefix="big_raster_") if args.keep is None else None
    folder = Path(args.keep) if args.keep else Path(tmp.name)  # type: ignore[union-attr]
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / f"synthetic_{args.size}.tif"
    secs = write_synthetic_raster(src, args.size)
    print(f"wrote {src} ({src.stat().st_size / 2**20:.0f} MB) in {secs:.1f} s", flush=True)

    net = build_network(
        "dru", spatial_dims=2, in_channels=3, out_channels=2, level=4, steps=args.steps
    ).eval()
    if args.weights:
        load_state_dict_file(args.weights, net)
    if args.allocator == "reuse":
        reuse_freed_memory()
    if args.backend in ("torch", "onnxruntime"):
        options = (
            {"precision": args.precision} if args.backend == "torch" else {"intra_op_threads": args.threads}
        )
        inferer = FastInferer(backend=args.backend, **options)
    else:
        inferer = None

    reset_peak_rss()
    t0 = time.perf_counter()
    outputs = segment_raster(
        src,
        folder / "out",
        net,
        inferer,
        roi_size=args.roi,
        sw_batch_size=args.sw_batch_size,
        overlap=args.overlap,
        window=args.window,
        device="cpu",
    )
    seconds = time.perf_counter() - t0
    peak = peak_rss_mb()

    with rasterio.open(src) as s:
        ref_crs, ref_transform, shape = s.crs, s.transform, (s.height, s.width)
    checks = []
    for out in outputs:
        with rasterio.open(out) as o:
            ok = o.crs == ref_crs and o.transform == ref_transform and (o.height, o.width) == shape
            checks.append(f"{out.name}: {o.dtypes[0]}, {o.height}x{o.width}, crs {o.crs}, same georef {ok}")
            if not ok:
                raise SystemExit(f"FAILED: {out} is not georeferenced like {src}")
    with rasterio.open(outputs[0]) as o:
        seg = o.read(1, window=Window(0, 0, min(2048, shape[1]), min(2048, shape[0])))
    mp = shape[0] * shape[1] / 1e6
    print("\n".join(checks))
    print(f"segmentation values in the first window: {sorted(np.unique(seg).tolist())}\n")
    print(
        table(
            [
                "raster",
                "MP",
                "backend",
                "precision",
                "steps",
                "threads",
                "window",
                "roi",
                "seconds",
                "MP/s",
                "peak RSS MB",
            ],
            [
                [
                    f"{shape[0]}x{shape[1]}",
                    mp,
                    args.backend,
                    args.precision,
                    args.steps,
                    args.threads,
                    args.window,
                    args.roi,
                    seconds,
                    mp / seconds,
                    peak,
                ]
            ],
        )
    )
    print(
        "\npeak RSS: process VmHWM from just before segment_raster to its end (includes Python, torch and the "
        f"weights). Weights: {args.weights or 'random init (timing only)'}; overlap {args.overlap}, gaussian, "
        f"sw_batch_size {args.sw_batch_size}; allocator: {args.allocator}."
    )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
