"""Scale-out inference: --num_parts shares, a folder and one GeoTIFF split across 2 gloo processes under torchrun
give the single process's outputs, each input segmented exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

HERE = Path(__file__).resolve().parent
WORKER = HERE / "scale_out_worker.py"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parents[1]), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def _run(kind: str, src: Path, out: Path, nproc: int = 1, *args: str) -> subprocess.CompletedProcess:
    if nproc == 1:
        cmd = [sys.executable, str(WORKER), kind, str(src), str(out), *args]
    else:
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
            str(WORKER), kind, str(src), str(out), *args,
        ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _processed(out: Path) -> list[list[str]]:
    return [p.read_text().split() for p in sorted(out.glob(".processed-*.txt"))]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(0)
    for i in range(7):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(src / f"img{i}.png")
    return src


@pytest.fixture(scope="module")
def single(folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single")
    _run("folder", folder, out)
    return out


def _same_pngs(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.glob("*.png"))
    assert names == sorted(p.name for p in b.glob("*.png")) and len(names) == 14  # _seg and _prob
    for n in names:
        np.testing.assert_array_equal(np.asarray(Image.open(a / n)), np.asarray(Image.open(b / n)), err_msg=n)


def test_num_parts_shares_are_disjoint_cover_and_match(folder, single, tmp_path):
    out = tmp_path / "parts"
    for part in range(3):
        proc = _run("folder", folder, out, 1, "num_parts=3", f"part_id={part}")
        assert f"(share {part + 1} of 3)" in proc.stdout
    shares = _processed(out)
    flat = [p for s in shares for p in s]
    assert len(shares) == 3 and len(flat) == len(set(flat)) == 7
    _same_pngs(single, out)
    proc = _run("folder", folder, out, 1, "num_parts=3", "part_id=0")  # a rerun skips what is done
    assert "0 images segmented, 3 skipped" in proc.stdout


@pytest.mark.slow
def test_two_gloo_processes_segment_a_folder_once(folder, single, tmp_path):
    out = tmp_path / "ddp"
    proc = _run("folder", folder, out, 2)
    shares = _processed(out)
    flat = [p for s in shares for p in s]
    assert len(shares) == 2 and all(shares) and len(flat) == len(set(flat)) == 7
    assert (
        proc.stdout.count("Summary:") == 1
        and "7 images segmented, 0 skipped (outputs exist), 0 failed" in proc.stdout
    )
    _same_pngs(single, out)


def _raster(path: Path, h: int = 300, w: int = 260) -> Path:
    a = np.random.default_rng(1).integers(0, 250, (3, h, w), dtype=np.uint8)
    profile = dict(driver="GTiff", width=w, height=h, count=3, dtype="uint8", crs="EPSG:26986")
    with rasterio.open(path, "w", transform=from_origin(230000.0, 900000.0, 1.0, 1.0), **profile) as dst:
        dst.write(a)
    return path


@pytest.mark.slow
def test_two_gloo_processes_split_one_geotiff(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _raster(src / "big.tif")
    one, two = tmp_path / "one", tmp_path / "two"
    _run("raster", src, one)
    proc = _run("raster", src, two, 2)
    assert proc.stdout.count("Summary:") == 1 and "1 images segmented" in proc.stdout
    assert sorted(p.name for p in two.iterdir() if not p.name.startswith(".processed")) == [
        "big_prob.tif",
        "big_seg.tif",
    ]
    with rasterio.open(one / "big_prob.tif") as a, rasterio.open(two / "big_prob.tif") as b:
        np.testing.assert_allclose(a.read(1), b.read(1), atol=1e-4)
        assert a.crs == b.crs and a.transform == b.transform and a.nodata == b.nodata
    with rasterio.open(one / "big_seg.tif") as a, rasterio.open(two / "big_seg.tif") as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))
        assert a.crs == b.crs and a.transform == b.transform
    assert len(_processed(two)) == 2  # both ranks worked on the raster
