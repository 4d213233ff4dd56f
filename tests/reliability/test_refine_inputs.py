"""Bad guidance files of interactive refinement (``--prior_dir`` / ``--strokes_dir``): each fails by name.

A bad prior or stroke file fails its own input (``FAILED <image>: ... <file> ...``, no outputs for it, the others
segmented, exit status 1); a missing folder or a model that cannot be refined stops the run before any work;
guidance files of stems with no input are a warning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.inferers import SlidingWindowInferer
from monai.networks.nets import BasicUNet
from PIL import Image

from monai_rurnet.data import read_prior, read_strokes, write_geotiff
from monai_rurnet.inferers import FastInferer
from monai_rurnet.networks import build_network
from monai_rurnet.runners import (
    GEO_SUFFIXES,
    FolderSegmentationRunner,
    GeoTiffSegmentationRunner,
    ImageFolderDataset,
)

GT = (200000.0, 1.0, 0.0, 900000.0, 0.0, -1.0)
SHAPE = (40, 52)


@pytest.fixture
def folder(tmp_path) -> Path:
    """Two RGB images ``a``, ``b`` of 40x52 px."""
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for stem in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (*SHAPE, 3), dtype=np.uint8)).save(src / f"{stem}.png")
    return src


def _run(net, preprocessing, src: Path, out: Path, **kw) -> SystemExit | None:
    inferer = FastInferer(SlidingWindowInferer((32, 32), 4), backend="eager")
    runner = FolderSegmentationRunner(
        net, ImageFolderDataset(src, preprocessing), inferer, out, progress=False, **kw
    )
    try:
        runner.run()
    except SystemExit as e:
        return e
    return None


def _bad_file_fails_its_input(net, preprocessing, folder, tmp_path, capsys, kind: str, write, message: str):
    """``write(path)`` makes ``a``'s guidance file; ``a`` fails naming it, ``b`` is segmented."""
    guide = tmp_path / "guide"
    guide.mkdir()
    path = guide / f"a_{kind}.png"
    write(path)
    option = "strokes_dir" if kind == "strokes" else "prior_dir"
    err = _run(net, preprocessing, folder, tmp_path / "out", **{option: guide})
    assert err is not None and err.code == 1
    stderr = capsys.readouterr().err
    assert f"FAILED {folder / 'a.png'}" in stderr and str(path) in stderr and message in stderr, stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "b_overlay.png",
        "b_prob.png",
        "b_seg.png",
    ]


@pytest.mark.parametrize(
    "kind, array, message",
    [
        ("strokes", np.zeros((SHAPE[0] + 1, SHAPE[1]), np.uint8), "must have the image's size"),
        ("prob", np.zeros((SHAPE[1], SHAPE[0]), np.uint8), "must have the image's size"),
        ("strokes", np.full(SHAPE, 3, np.uint8), "stroke values [3] are not allowed"),
        ("strokes", np.full(SHAPE, 255, np.uint8), "stroke values [255] are not allowed"),
        ("strokes", np.zeros((*SHAPE, 3), np.uint8), "must have one band"),
    ],
)
def test_bad_guidance_png(net, preprocessing, folder, tmp_path, capsys, kind, array, message):
    _bad_file_fails_its_input(
        net, preprocessing, folder, tmp_path, capsys, kind, lambda p: Image.fromarray(array).save(p), message
    )


def test_unreadable_strokes(net, preprocessing, folder, tmp_path, capsys):
    _bad_file_fails_its_input(
        net, preprocessing, folder, tmp_path, capsys, "strokes", lambda p: p.write_bytes(b"not a png"),
        "cannot read the strokes file",
    )  # fmt: skip


def test_two_stroke_files_for_one_stem(net, preprocessing, folder, tmp_path, capsys):
    def write(path: Path) -> None:
        Image.fromarray(np.zeros(SHAPE, np.uint8)).save(path)
        write_geotiff(path.with_suffix(".tif"), np.zeros(SHAPE, np.uint8))

    _bad_file_fails_its_input(net, preprocessing, folder, tmp_path, capsys, "strokes", write, "keep one")


def test_float_prior_out_of_range(tmp_path):
    write_geotiff(tmp_path / "p_prob.tif", np.full(SHAPE, 1.5, np.float32))
    with pytest.raises(ValueError, match=r"p_prob.tif: prior values outside \[0, 1\] \(e.g. 1.5\)"):
        read_prior(tmp_path / "p_prob.tif", SHAPE)


def test_readers(tmp_path):
    """``read_prior``: 0/255 and x255 PNGs to [0, 1], float nodata to -1; ``read_strokes``: uint8 0/1/2."""
    p = np.array([[0, 128, 255]] * 20, np.uint8)
    Image.fromarray(p).save(tmp_path / "x_seg.png")
    np.testing.assert_allclose(read_prior(tmp_path / "x_seg.png", p.shape), p / 255.0, atol=1e-6)
    f = np.full((20, 3), 0.25, np.float32)
    f[0, 0] = -1.0
    write_geotiff(tmp_path / "x_prob.tif", f, nodata=-1.0)
    got = read_prior(tmp_path / "x_prob.tif", f.shape)
    assert got.dtype == np.float32 and got[0, 0] == -1.0 and (got.ravel()[1:] == 0.25).all()
    s = np.array([[0, 1, 2]] * 20, np.uint8)
    Image.fromarray(s).save(tmp_path / "x_strokes.png")
    out = read_strokes(tmp_path / "x_strokes.png", s.shape)
    assert out.dtype == np.uint8 and np.array_equal(out, s)
    with pytest.raises(FileNotFoundError, match="y_strokes.png: strokes file not found"):
        read_strokes(tmp_path / "y_strokes.png", s.shape)


def test_missing_folder_stops_before_any_work(net, preprocessing, folder, tmp_path):
    for option in ("prior_dir", "strokes_dir"):
        with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nope'}: {option} folder does not exist"):
            _run(net, preprocessing, folder, tmp_path / "out", **{option: tmp_path / "nope"})
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "model, message",
    [
        (
            lambda: build_network("dru", in_channels=3, out_channels=3, features=(4, 8, 16, 32, 64)),
            "binary model",
        ),
        (lambda: BasicUNet(2, 3, 2, features=(4, 4, 8, 8, 16, 4)), "RecurrentUNet"),
    ],
)
def test_model_that_cannot_be_refined(preprocessing, folder, tmp_path, model, message):
    torch.manual_seed(0)
    (tmp_path / "strokes").mkdir()
    with pytest.raises(ValueError, match=message):
        _run(model().eval(), preprocessing, folder, tmp_path / "out", strokes_dir=tmp_path / "strokes")
    assert not (tmp_path / "out").exists()


def test_guidance_without_input_warns(net, preprocessing, folder, tmp_path, capsys):
    guide = tmp_path / "guide"
    guide.mkdir()
    Image.fromarray(np.zeros(SHAPE, np.uint8)).save(guide / "zzz_strokes.png")
    Image.fromarray(np.zeros(SHAPE, np.uint8)).save(guide / "a_overlay.png")  # not a guidance file: no word
    assert _run(net, preprocessing, folder, tmp_path / "out", strokes_dir=guide, prior_dir=guide) is None
    stderr = capsys.readouterr().err
    assert "1 prior/strokes file(s) match no input image" in stderr and "zzz_strokes.png" in stderr
    assert "a_overlay" not in stderr
    assert len(list((tmp_path / "out").glob("*_seg.png"))) == 2


@pytest.mark.parametrize(
    "crs, transform, message",
    [
        ("EPSG:4326", GT, "CRS EPSG:4326 differs"),
        ("EPSG:26986", (200010.0, 1.0, 0.0, 900000.0, 0.0, -1.0), "geotransform"),
    ],
)
def test_geotiff_strokes_on_another_grid(tmp_path, capsys, crs, transform, message):
    src, guide = tmp_path / "in", tmp_path / "guide"
    src.mkdir()
    guide.mkdir()
    write_geotiff(src / "r.tif", np.full((3, 40, 40), 100, np.uint8), transform=GT, crs="EPSG:26986")
    write_geotiff(guide / "r_strokes.tif", np.zeros((40, 40), np.uint8), transform=transform, crs=crs)
    torch.manual_seed(0)
    net = build_network("dru", features=(4, 4, 8, 8, 8), steps=2).eval()
    runner = GeoTiffSegmentationRunner(
        net, ImageFolderDataset(src, suffixes=GEO_SUFFIXES), FastInferer(backend="eager"), tmp_path / "out",
        roi_size=32, window=16, progress=False, strokes_dir=guide,
    )  # fmt: skip
    with pytest.raises(SystemExit):
        runner.run()
    stderr = capsys.readouterr().err
    assert f"FAILED {src / 'r.tif'}" in stderr and "r_strokes.tif" in stderr and message in stderr, stderr
    assert [p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")] == []


def test_guidance_in_the_input_folder_is_not_an_input(net, preprocessing, folder, tmp_path, capsys):
    strokes = np.zeros(SHAPE, np.uint8)
    strokes[10, 5:30] = 2
    Image.fromarray(strokes).save(folder / "a_strokes.png")
    assert _run(net, preprocessing, folder, tmp_path / "out", strokes_dir=folder) is None
    assert sorted(p.name for p in (tmp_path / "out").glob("*_seg.png")) == ["a_seg.png", "b_seg.png"]
    assert "2 images segmented" in capsys.readouterr().out
    assert (np.asarray(Image.open(tmp_path / "out" / "a_seg.png"))[strokes == 2] == 255).all()
