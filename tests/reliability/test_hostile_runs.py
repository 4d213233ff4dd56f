"""Hostile inputs through the runners (issue 22's classes): each one is named, writes nothing for itself, and the
good inputs beside it are fully processed."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from monai.bundle import ConfigParser
from monai.inferers import SlidingWindowInferer
from PIL import Image

from monai_rurnet.data.geotiff import PROB_NODATA
from monai_rurnet.inferers import FastInferer, OnnxRuntimePredictor
from monai_rurnet.networks import export_step_onnx, load_step_onnx
from monai_rurnet.runners import FolderSegmentationRunner, GeoTiffSegmentationRunner, ImageFolderDataset
from monai_rurnet.utils import as_bool

ROOT = Path(__file__).resolve().parents[2]


def _rgb(h: int = 40, w: int = 52, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _folder_run(net, preprocessing, src: Path, out: Path, capsys=None, **kw):
    """Run the folder runner; returns (SystemExit code or None, stderr text)."""
    inferer = FastInferer(SlidingWindowInferer((32, 32), 4), backend="eager")
    runner = FolderSegmentationRunner(
        net, ImageFolderDataset(src, preprocessing), inferer, out, progress=False, **kw
    )
    code = None
    try:
        runner.run()
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err if capsys is not None else ""


def _good(src: Path, name: str = "good.png") -> Path:
    src.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_rgb()).save(src / name)
    return src / name


def _outputs(out: Path, stem: str, suffix: str = ".png") -> list[Path]:
    return sorted(out.glob(f"{stem}_*{suffix}"))


# --- 1. data loss ------------------------------------------------------------------------------------------


def test_user_files_in_the_output_folder_are_never_touched(net, preprocessing, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    _good(src)
    out.mkdir()
    user = [out / ".thesis.tmp.docx", out / ".good_seg.png.tmp", out / "notes.tmp.txt"]
    for f in user:
        f.write_text("user data")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # a temp file of another run that is still writing into the same folder
        other = out / f".x_seg.png.rurnet-tmp-{socket.gethostname()}-{alive.pid}-abc123.png"
        other.write_text("being written")
        code, _ = _folder_run(net, preprocessing, src, out, capsys)
        assert other.exists()
    finally:
        alive.kill()
    assert code is None
    assert all(f.read_text() == "user data" for f in user)
    assert len(_outputs(out, "good")) == 3


# --- 2. same stem, two files ------------------------------------------------------------------------------


@pytest.mark.parametrize("pair", [("a.png", "a.tif"), ("a.jpg", "a.png"), ("a.png", "a.PNG")])
def test_two_files_one_stem_are_refused_naming_both(net, preprocessing, tmp_path, capsys, pair):
    src, out = tmp_path / "in", tmp_path / "out"
    _good(src)
    for name in pair:
        Image.fromarray(_rgb(seed=3)).save(src / name, format="PNG" if name.lower().endswith("png") else None)
    code, err = _folder_run(net, preprocessing, src, out, capsys)
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("FAILED")]
    assert len(lines) == 2 and all(pair[0] in line and pair[1] in line for line in lines)
    assert _outputs(out, "a") == [] and len(_outputs(out, "good")) == 3


# --- 4. booleans from the command line ----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["true", "True", "TRUE", "yes", "Yes", "1", "on"])
def test_true_spellings(text):
    assert as_bool(text, "overwrite") is True


@pytest.mark.parametrize("text", ["false", "False", "FALSE", "no", "NO", "0", "off"])
def test_false_spellings(text):
    assert as_bool(text, "overwrite") is False


@pytest.mark.parametrize("text", ["maybe", "2", "", "flase"])
def test_other_spellings_refused_by_name(text):
    with pytest.raises(ValueError, match="overwrite must be true or false"):
        as_bool(text, "overwrite")


@pytest.mark.parametrize(
    "text, rerun", [("false", False), ("no", False), ("0", False), ("yes", True), ("1", True)]
)
def test_overwrite_spellings_through_the_runner(net, preprocessing, tmp_path, capsys, text, rerun):
    src, out = tmp_path / "in", tmp_path / "out"
    _good(src)
    _folder_run(net, preprocessing, src, out)
    seg = out / "good_seg.png"
    before = seg.stat().st_mtime_ns
    _folder_run(net, preprocessing, src, out, capsys, overwrite=text)
    assert (seg.stat().st_mtime_ns != before) == rerun


@pytest.mark.parametrize("option", ["fov_rescale", "flip_tta", "progress", "overwrite"])
@pytest.mark.parametrize("text", ["false", "no", "0", "FALSE"])
def test_bundle_boolean_options_read_false(tmp_path, option, text):
    parser = ConfigParser()
    parser.read_config(str(ROOT / "bundles" / "retina_drive" / "configs" / "inference.json"))
    parser.update(
        {"bundle_root": str(ROOT / "bundles" / "retina_drive"), "output_dir": str(tmp_path), option: text}
    )
    if option == "fov_rescale":
        assert parser.get_parsed_content("rescaler") is None
    elif option == "flip_tta":
        assert type(parser.get_parsed_content("inferer")).__name__ == "FastInferer"
    else:
        runner = parser.get_parsed_content("evaluator")
        assert getattr(runner, option) is False


# --- 5. resources -----------------------------------------------------------------------------------------


def test_decompression_bomb_refused_by_size(net, preprocessing, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    _good(src)
    Image.new("RGB", (9000, 9000)).save(src / "bomb.png", optimize=True)
    code, err = _folder_run(net, preprocessing, src, out, capsys)
    assert code == 1
    assert "bomb.png: image of 9000x9000 = 81.0 megapixels" in err and "--max_pixels" in err
    assert _outputs(out, "bomb") == [] and len(_outputs(out, "good")) == 3


def test_raised_pixel_limit_lets_an_image_through(net, preprocessing, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    _good(src)
    code, err = _folder_run(net, preprocessing, src, out, capsys, max_pixels=1000)
    assert code == 1 and "over the limit of 0.0 megapixels" in err
    code, _ = _folder_run(net, preprocessing, src, out, capsys, max_pixels=10_000)
    assert code is None and len(_outputs(out, "good")) == 3


# --- 6. silent wrong results --------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["zero_bytes", "truncated"])
def test_broken_existing_outputs_are_redone(net, preprocessing, tmp_path, capsys, damage):
    src, out = tmp_path / "in", tmp_path / "out"
    _good(src)
    _folder_run(net, preprocessing, src, out)
    prob = out / "good_prob.png"
    good_bytes = prob.read_bytes()
    prob.write_bytes(b"" if damage == "zero_bytes" else good_bytes[: len(good_bytes) // 2])
    code, _ = _folder_run(net, preprocessing, src, out, capsys)
    assert code is None and prob.read_bytes() == good_bytes


@pytest.mark.parametrize("kind", ["dangling", "loop"])
def test_broken_links_are_named(net, preprocessing, tmp_path, capsys, kind):
    src, out = tmp_path / "in", tmp_path / "out"
    _good(src)
    if kind == "dangling":
        (src / "lost.png").symlink_to(tmp_path / "gone.png")
    else:
        (src / "lost.png").symlink_to(src / "lost2.png")
        (src / "lost2.png").symlink_to(src / "lost.png")
    code, err = _folder_run(net, preprocessing, src, out, capsys)
    assert code == 1 and "lost.png" in err and ("dangling" in err or "loop" in err)
    assert len(_outputs(out, "good")) == 3


@pytest.mark.parametrize(
    "layout",
    [{"interleave": "band"}, {"compress": "lzw"}, {"tiled": True, "blockxsize": 16, "blockysize": 16}],
)
def test_16bit_rgb_tiff_is_read(net, preprocessing, tmp_path, capsys, layout):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    a = np.random.default_rng(0).integers(0, 65535, (3, 40, 52)).astype(np.uint16)
    with rasterio.open(
        src / "rgb16.tif", "w", driver="GTiff", width=52, height=40, count=3, dtype="uint16", **layout
    ) as d:
        d.write(a)
    code, err = _folder_run(net, preprocessing, src, out, capsys)
    assert code is None, err
    assert np.asarray(Image.open(out / "rgb16_seg.png")).shape == (40, 52)
    display = preprocessing({"image": str(src / "rgb16.tif")})["display"]
    np.testing.assert_allclose(np.asarray(display) * 255, a >> 8, atol=1e-3)


@pytest.mark.parametrize("content", [b"", b"\x08\x07garbage", "truncated"])
def test_unreadable_onnx_file_named(net, tmp_path, content):
    path = tmp_path / "model.onnx"
    if content == "truncated":
        export_step_onnx(net, path)
        assert OnnxRuntimePredictor(load_step_onnx(path)) is not None
        content = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"{path}: not a readable ONNX model"):
        load_step_onnx(path)


# --- 3. massroads does not trust its rasters -----------------------------------------------------------------


@pytest.fixture(scope="module")
def roads_net() -> torch.nn.Module:
    from monai_rurnet.networks import build_network

    torch.manual_seed(0)
    return build_network("dru", features=(4, 8, 16, 32, 64), steps=2).eval()


def _tif(path: Path, a: np.ndarray, nodata=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    c, h, w = a.shape
    with rasterio.open(
        path, "w", driver="GTiff", width=w, height=h, count=c, dtype=a.dtype, nodata=nodata
    ) as d:
        d.write(a)
    return path


def _roads_run(net, src: Path, out: Path, capsys, **kw):
    runner = GeoTiffSegmentationRunner(
        net,
        ImageFolderDataset(src, suffixes=(".tif", ".tiff", ".png")),
        FastInferer(backend="eager"),
        out,
        roi_size=32,
        window=64,
        progress=False,
        **kw,
    )
    code = None
    try:
        runner.run()
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def _rgb_bands(h=48, w=56, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 250, (3, h, w), dtype=np.uint8)


@pytest.mark.parametrize(
    "name, array, cause",
    [
        ("neg16.tif", -np.ones((3, 48, 56), np.int16), "negative pixel values"),
        ("negfloat.tif", -np.ones((3, 48, 56), np.float32), "negative pixel values"),
        ("huge_float.tif", np.full((3, 48, 56), 4000.0, np.float32), "float pixel values up to 4000"),
        ("one_px.tif", np.zeros((3, 1, 1), np.uint8), "1x1 px is too small"),
        ("line.tif", np.zeros((3, 1, 20000), np.uint8), "20000x1 px is too small"),
    ],
)
def test_bad_rasters_refused_by_name(roads_net, tmp_path, capsys, name, array, cause):
    src, out = tmp_path / "in", tmp_path / "out"
    _tif(src / "good.tif", _rgb_bands())
    _tif(src / name, array)
    code, err = _roads_run(roads_net, src, out, capsys)
    assert code == 1 and name in err and cause in err
    assert _outputs(out, Path(name).stem, ".tif") == []
    assert len(_outputs(out, "good", ".tif")) == 2


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_pixels_are_nodata(roads_net, tmp_path, capsys, bad):
    src, out = tmp_path / "in", tmp_path / "out"
    a = _rgb_bands().astype(np.float32) / 255.0
    a[:, 10:15, 20:25] = bad
    _tif(src / "f.tif", a)
    code, err = _roads_run(roads_net, src, out, capsys)
    assert code is None, err
    with rasterio.open(out / "f_prob.tif") as p, rasterio.open(out / "f_seg.tif") as s:
        prob, seg = p.read(1), s.read(1)
        assert p.nodata == PROB_NODATA
    assert np.all(prob[10:15, 20:25] == PROB_NODATA) and np.all(seg[10:15, 20:25] == 0)
    rest = np.ones(prob.shape, bool)
    rest[10:15, 20:25] = False
    assert np.isfinite(prob).all() and (prob[rest] >= 0).all() and (prob[rest] <= 1).all()


def test_nodata_value_pixels_are_not_segmented(roads_net, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    a = _rgb_bands()
    a[:, :8, :] = 7
    _tif(src / "nd.tif", a, nodata=7)
    code, err = _roads_run(roads_net, src, out, capsys)
    assert code is None, err
    with rasterio.open(out / "nd_prob.tif") as p, rasterio.open(out / "nd_seg.tif") as s:
        assert (p.read(1)[:8] == PROB_NODATA).all() and (s.read(1)[:8] == 0).all()
        assert (p.read(1)[8:] >= 0).all()


def test_float_raster_on_a_0_255_scale_matches_uint8(roads_net, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    a = _rgb_bands()
    _tif(src / "u8.tif", a)
    _tif(src / "f255.tif", a.astype(np.float32))
    code, err = _roads_run(roads_net, src, out, capsys)
    assert code is None, err
    with rasterio.open(out / "u8_prob.tif") as p, rasterio.open(out / "f255_prob.tif") as q:
        np.testing.assert_allclose(p.read(1), q.read(1), atol=1e-5)


def test_declared_huge_sparse_raster_refused_quickly(roads_net, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    _tif(src / "good.tif", _rgb_bands())
    with rasterio.open(
        src / "huge.tif", "w", driver="GTiff", width=100000, height=100000, count=3, dtype="uint8", tiled=True
    ):
        pass
    code, err = _roads_run(roads_net, src, out, capsys)
    assert code == 1 and "huge.tif: image of 100000x100000" in err and "--max_pixels" in err
    assert len(_outputs(out, "good", ".tif")) == 2


def test_raster_progress_per_window(roads_net, tmp_path, capsys):
    from monai_rurnet.runners import segment_raster

    _tif(tmp_path / "r.tif", _rgb_bands(96, 96))
    segment_raster(
        tmp_path / "r.tif", tmp_path / "out", roads_net, roi_size=32, window=32, progress=True, device="cpu"
    )
    err = capsys.readouterr().err
    assert "r.tif" in err and "window" in err and "9/9" in err


# --- the hand bundle's own inference command ------------------------------------------------------------------


def test_handseg_bundle_names_bad_inputs_and_segments_the_good_one(tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    _good(src)
    (src / "cut.png").write_bytes((src / "good.png").read_bytes()[:100])
    Image.fromarray(_rgb(seed=5)).save(src / "pair.png")
    Image.fromarray(_rgb(seed=6)).save(src / "pair.jpg")
    bundle = ROOT / "bundles" / "handseg"
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser.update(
        {
            "bundle_root": str(bundle),
            "dataset_dir": str(src),
            "output_dir": str(out),
            "progress": "no",
            "device": "cpu",
        }
    )
    with pytest.raises(SystemExit) as exit_:
        parser.get_parsed_content("evaluator").run()
    err = capsys.readouterr().err
    assert exit_.value.code == 1
    assert "cut.png" in err and err.count("pair.png, pair.jpg") + err.count("pair.jpg, pair.png") == 2
    assert sorted(p.name for p in out.iterdir()) == ["good_overlay.png", "good_prob.png", "good_seg.png"]
