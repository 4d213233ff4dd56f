"""Interactive refinement from the command line (issue 26): ``--prior_dir`` / ``--strokes_dir`` of the retina and
massroads bundles' inference: strokes honoured and extended, inputs without guidance unchanged bit for bit, the
backends agree, the GeoTIFF runner's windows and shares give the one-window result."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from monai.bundle import run
from PIL import Image

from monai_rurnet.data import write_geotiff
from monai_rurnet.data.guidance_io import GuidanceFiles
from monai_rurnet.inferers import FastInferer
from monai_rurnet.networks import build_network
from monai_rurnet.runners import GEO_SUFFIXES, GeoTiffSegmentationRunner, ImageFolderDataset, segment_raster

ROOT = Path(__file__).resolve().parents[2]
RETINA = ROOT / "bundles" / "retina_drive"
GT = (200000.0, 1.0, 0.0, 900000.0, 0.0, -1.0)


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _retina(src: Path, out: Path, **overrides) -> None:
    """The retina bundle's inference command, in process, on the CPU (small crops: no FOV rescale, no flips)."""
    options = {"fov_rescale": False, "flip_tta": False, **overrides}
    run(
        config_file=str(RETINA / "configs" / "inference.json"),
        bundle_root=str(RETINA),
        dataset_dir=str(src),
        output_dir=str(out),
        device="$torch.device('cpu')",
        progress=False,
        **options,
    )


@pytest.fixture(scope="module")
def retina(tmp_path_factory) -> dict[str, Path]:
    """Two 160x176 crops of a shipped DRIVE sample and their unguided outputs."""
    root = tmp_path_factory.mktemp("retina")
    src = root / "in"
    src.mkdir()
    rgb = np.asarray(Image.open(RETINA / "sample_data" / "01_test.png").convert("RGB"))
    Image.fromarray(rgb[200:360, 140:316]).save(src / "a.png")
    Image.fromarray(rgb[300:460, 300:476]).save(src / "b.png")
    _retina(src, root / "first")
    return {"root": root, "src": src, "first": root / "first"}


def _strokes_for(first: Path, stem: str) -> np.ndarray:
    """A background stroke on detected vessel pixels and a foreground stroke on the most likely missed pixels."""
    seg, prob = _png(first / f"{stem}_seg.png"), _png(first / f"{stem}_prob.png").astype(float)
    strokes = np.zeros(seg.shape, np.uint8)
    ys, xs = np.nonzero(seg)
    strokes[ys[:20], xs[:20]] = 1
    missed = np.where(seg == 0, prob, -1.0)
    for i in np.argsort(missed, axis=None)[-12:]:
        strokes[np.unravel_index(i, seg.shape)] = 2
    return strokes


@pytest.fixture(scope="module")
def refined(retina) -> dict[str, Path]:
    """Strokes for ``a`` only; priors (the first run's outputs) for both."""
    root = retina["root"]
    strokes_dir = root / "strokes"
    strokes_dir.mkdir()
    Image.fromarray(_strokes_for(retina["first"], "a")).save(strokes_dir / "a_strokes.png")
    _retina(retina["src"], root / "refined", strokes_dir=str(strokes_dir))
    return {**retina, "strokes": strokes_dir, "refined": root / "refined"}


def test_strokes_honoured_and_extended(refined):
    first, out = refined["first"], refined["refined"]
    strokes = _png(refined["strokes"] / "a_strokes.png")
    seg, prob = _png(out / "a_seg.png"), _png(out / "a_prob.png")
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in first.iterdir())
    assert (seg[strokes == 2] == 255).all() and (prob[strokes == 2] == 255).all()
    assert (seg[strokes == 1] == 0).all() and (prob[strokes == 1] == 0).all()
    changed = (seg != _png(first / "a_seg.png")) & (strokes == 0)
    assert changed.sum() > 0  # the network carries the strokes beyond their own pixels


def test_input_without_guidance_is_bit_identical(refined, tmp_path):
    # b has no stroke file: its outputs are the unguided run's, byte for byte
    for name in ("b_seg.png", "b_prob.png", "b_overlay.png"):
        assert (refined["refined"] / name).read_bytes() == (refined["first"] / name).read_bytes()
    empty = tmp_path / "empty"
    empty.mkdir()
    _retina(refined["src"], tmp_path / "out", prior_dir=str(empty), strokes_dir=str(empty))
    for p in refined["first"].iterdir():
        assert (tmp_path / "out" / p.name).read_bytes() == p.read_bytes()


def test_prior_is_the_start_mask(refined, tmp_path):
    """From the first run's ``_prob.png`` (preferred over ``_seg.png``) the refined result stays close to it and
    is not the unguided one; with the strokes too, they are honoured."""
    out = tmp_path / "out"
    _retina(refined["src"], out, prior_dir=str(refined["first"]), strokes_dir=str(refined["strokes"]))
    first = _png(refined["first"] / "b_seg.png") > 0
    again = _png(out / "b_seg.png") > 0
    assert (first != again).mean() < 0.02
    assert not np.array_equal(_png(out / "b_prob.png"), _png(refined["first"] / "b_prob.png"))
    strokes = _png(refined["strokes"] / "a_strokes.png")
    assert (_png(out / "a_seg.png")[strokes == 2] == 255).all()
    assert GuidanceFiles(refined["first"], None).prior("b").name == "b_prob.png"


@pytest.mark.parametrize("backend", ["eager", "onnxruntime"])
def test_backends_agree_with_torch(refined, tmp_path, backend):
    out = tmp_path / backend
    _retina(refined["src"], out, strokes_dir=str(refined["strokes"]), backend=backend)
    for stem in ("a", "b"):
        p_fast = _png(refined["refined"] / f"{stem}_prob.png").astype(int)
        p_other = _png(out / f"{stem}_prob.png").astype(int)
        assert np.abs(p_fast - p_other).max() <= 2
        seg_fast, seg_other = _png(refined["refined"] / f"{stem}_seg.png"), _png(out / f"{stem}_seg.png")
        assert (seg_fast != seg_other).mean() < 1e-3


def test_flip_tta_and_fov_rescale(tmp_path):
    """The default command (flips, FOV rescale) on a half-size image: the rescaler resizes the strokes with the
    image (nearest), and they are honoured at the input's own size."""
    src = tmp_path / "in"
    src.mkdir()
    full = Image.open(RETINA / "sample_data" / "01_test.png").convert("RGB")
    full.resize((full.width // 2, full.height // 2), Image.BILINEAR).save(src / "half.png")
    _retina(src, tmp_path / "first", fov_rescale=True, flip_tta=True)
    strokes_dir = tmp_path / "strokes"
    strokes_dir.mkdir()
    strokes = _strokes_for(tmp_path / "first", "half")
    Image.fromarray(strokes).save(strokes_dir / "half_strokes.png")
    _retina(src, tmp_path / "out", fov_rescale=True, flip_tta=True, strokes_dir=str(strokes_dir))
    seg = _png(tmp_path / "out" / "half_seg.png")
    assert seg.shape == strokes.shape
    assert (seg[strokes == 2] == 255).all() and (seg[strokes == 1] == 0).all()
    changed = (seg != _png(tmp_path / "first" / "half_seg.png")) & (strokes == 0)
    assert changed.sum() > 0


def test_new_strokes_redo_existing_outputs(refined, tmp_path, capsys):
    """Outputs newer than the guidance are skipped (resume); strokes added afterwards redo the image."""
    out = tmp_path / "out"
    strokes_dir = tmp_path / "strokes"
    strokes_dir.mkdir()
    _retina(refined["src"], out, strokes_dir=str(strokes_dir))
    _retina(refined["src"], out, strokes_dir=str(strokes_dir))
    assert "0 images segmented, 2 skipped" in capsys.readouterr().out
    strokes = _strokes_for(out, "a")
    Image.fromarray(strokes).save(strokes_dir / "a_strokes.png")
    os.utime(strokes_dir / "a_strokes.png", ns=((out / "a_seg.png").stat().st_mtime_ns + 10**9,) * 2)
    _retina(refined["src"], out, strokes_dir=str(strokes_dir))
    assert "1 images segmented, 1 skipped" in capsys.readouterr().out
    assert (_png(out / "a_seg.png")[strokes == 2] == 255).all()


# --- massroads: the GeoTIFF runner ----------------------------------------------------------------------------


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_network(
        "dru", spatial_dims=2, in_channels=3, out_channels=2, features=(4, 4, 8, 8, 8), level=4, steps=2
    ).eval()


def _raster(path: Path, shape=(70, 90), seed=0) -> None:
    a = np.random.default_rng(seed).integers(0, 255, (3, *shape), dtype=np.uint8)
    write_geotiff(path, a, transform=GT, crs="EPSG:26986")


def _read(path: Path) -> tuple[np.ndarray, object, object]:
    with rasterio.open(path) as ds:
        return ds.read(1), ds.crs, ds.transform


def _guidance(tmp_path: Path, shape=(70, 90)) -> tuple[Path, Path, np.ndarray]:
    """A first run's outputs as priors (some nodata pixels) and a stroke raster on the same grid."""
    src = tmp_path / "in"
    src.mkdir()
    _raster(src / "r.tif", shape)
    first = tmp_path / "first"
    segment_raster(src / "r.tif", first, _net(), roi_size=32, window=4096)
    with rasterio.open(first / "r_prob.tif", "r+") as ds:  # a prior with holes: nodata = "no prior here"
        p = ds.read(1)
        p[:10, :10] = ds.nodata
        ds.write(p[None])
    strokes = np.zeros(shape, np.uint8)
    strokes[20, 10:60] = 2
    strokes[40:44, 30:34] = 1
    strokes_dir = tmp_path / "strokes"
    strokes_dir.mkdir()
    write_geotiff(strokes_dir / "r_strokes.tif", strokes, transform=GT, crs="EPSG:26986")
    return first, strokes_dir, strokes


@pytest.mark.parametrize("flip", [False, True])
def test_geotiff_windows_equal_one_window(tmp_path, flip):
    from monai_rurnet.inferers import FlipEnsembleInferer

    first, strokes_dir, strokes = _guidance(tmp_path)
    outs = {}
    for window in (16, 4096):
        inferer = FastInferer(backend="eager")
        inferer = FlipEnsembleInferer(inferer) if flip else inferer
        runner = GeoTiffSegmentationRunner(
            _net(), ImageFolderDataset(tmp_path / "in", suffixes=GEO_SUFFIXES), inferer, tmp_path / f"w{window}",
            roi_size=32, window=window, sw_batch_size=3, progress=False, prior_dir=first, strokes_dir=strokes_dir,
        )  # fmt: skip
        assert runner.run()["done"] == 1
        outs[window] = _read(tmp_path / f"w{window}" / "r_prob.tif")
        seg, crs, transform = _read(tmp_path / f"w{window}" / "r_seg.tif")
        assert crs == "EPSG:26986" and transform.almost_equals(rasterio.Affine.from_gdal(*GT))
        assert (seg[strokes == 2] == 255).all() and (seg[strokes == 1] == 0).all()
    np.testing.assert_allclose(outs[16][0], outs[4096][0], atol=1e-4)
    assert not np.allclose(outs[4096][0], _read(first / "r_prob.tif")[0], atol=1e-3)


def test_geotiff_png_strokes_and_shares(tmp_path):
    """PNG strokes on a GeoTIFF's grid, and two ``num_parts`` shares, give the one-process outputs."""
    first, strokes_dir, strokes = _guidance(tmp_path)
    png_dir = tmp_path / "png_strokes"
    png_dir.mkdir()
    Image.fromarray(strokes).save(png_dir / "r_strokes.png")
    _raster(tmp_path / "in" / "s.tif", (40, 50), seed=1)  # no guidance: unchanged

    def runner(out: Path, strokes_dir: Path, **kw) -> GeoTiffSegmentationRunner:
        data = ImageFolderDataset(tmp_path / "in", suffixes=GEO_SUFFIXES)
        return GeoTiffSegmentationRunner(
            _net(), data, FastInferer(backend="eager"), out, roi_size=32, window=32, progress=False,
            prior_dir=first, strokes_dir=strokes_dir, **kw,
        )  # fmt: skip

    runner(tmp_path / "tif", strokes_dir).run()
    runner(tmp_path / "png", png_dir).run()
    for part in (0, 1):
        runner(tmp_path / "parts", strokes_dir, num_parts=2, part_id=part).run()
    segment_raster(tmp_path / "in" / "s.tif", tmp_path / "plain", _net(), roi_size=32, window=32)
    for name in ("r_prob.tif", "r_seg.tif", "s_prob.tif", "s_seg.tif"):
        ref = _read(tmp_path / "tif" / name)[0]
        np.testing.assert_array_equal(_read(tmp_path / "png" / name)[0], ref)
        np.testing.assert_array_equal(_read(tmp_path / "parts" / name)[0], ref)
    for name in ("s_prob.tif", "s_seg.tif"):
        np.testing.assert_array_equal(_read(tmp_path / "plain" / name)[0], _read(tmp_path / "tif" / name)[0])


@pytest.mark.slow
def test_two_gloo_processes_split_one_guided_geotiff(tmp_path):
    """One raster split in row strips across 2 torchrun ranks, with a prior and strokes: the one-process files."""
    first, strokes_dir, _ = _guidance(tmp_path, (150, 90))
    worker = Path(__file__).resolve().parent / "scale_out_worker.py"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    guidance = [f"prior_dir={first}", f"strokes_dir={strokes_dir}"]
    for out, launcher in (
        ("one", [sys.executable]),
        ("two", [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]),
    ):
        cmd = [*launcher, str(worker), "raster", str(tmp_path / "in"), str(tmp_path / out), *guidance]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    np.testing.assert_allclose(
        _read(tmp_path / "one" / "r_prob.tif")[0], _read(tmp_path / "two" / "r_prob.tif")[0], atol=1e-4
    )
    np.testing.assert_array_equal(
        _read(tmp_path / "one" / "r_seg.tif")[0], _read(tmp_path / "two" / "r_seg.tif")[0]
    )
