"""GeoTIFF runner: georeferencing kept, windowed == whole-image sliding window, robustness contract."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from monai.inferers import SlidingWindowInferer

from monai_rurnet.data import write_geotiff
from monai_rurnet.inferers import FastInferer, FlipEnsembleInferer
from monai_rurnet.networks import build_network
from monai_rurnet.runners import GEO_SUFFIXES, GeoTiffSegmentationRunner, ImageFolderDataset, segment_raster

GT = (200000.0, 1.0, 0.0, 900000.0, 0.0, -1.0)
MEAN = np.array([0.485, 0.456, 0.406])[:, None, None]
STD = np.array([0.229, 0.224, 0.225])[:, None, None]


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_network(
        "dru", spatial_dims=2, in_channels=3, out_channels=2, features=(4, 4, 8, 8, 8), level=4, steps=2
    ).eval()


def _runner(net, src, out, inferer=None, **kw) -> GeoTiffSegmentationRunner:
    inferer = inferer if inferer is not None else FastInferer()
    dataset = ImageFolderDataset(src, suffixes=GEO_SUFFIXES)
    return GeoTiffSegmentationRunner(net, dataset, inferer, out, **kw)


def _raster(path, shape=(70, 90), seed=0, crs="EPSG:26986", transform=GT) -> np.ndarray:
    a = np.random.default_rng(seed).integers(0, 255, (3, *shape), dtype=np.uint8)
    a[:, :4, :6] = 255  # void corner
    write_geotiff(path, a, transform=transform, crs=crs)
    return a


@pytest.mark.parametrize("shape", [(70, 90), (20, 45)])
def test_windowed_equals_whole_image(tmp_path, shape):
    net = _net()
    a = _raster(tmp_path / "r.tif", shape)
    segment_raster(tmp_path / "r.tif", tmp_path / "small", net, roi_size=32, window=16, sw_batch_size=3)
    segment_raster(tmp_path / "r.tif", tmp_path / "big", net, roi_size=32, window=4096)
    with (
        rasterio.open(tmp_path / "small" / "r_prob.tif") as s,
        rasterio.open(tmp_path / "big" / "r_prob.tif") as b,
    ):
        p_small, p_big = s.read(1), b.read(1)
    assert p_small.shape == shape
    assert np.abs(p_small - p_big).max() <= 1e-4
    x = torch.as_tensor(((a / 255.0 - MEAN) / STD)[None]).float()
    with torch.no_grad():
        ref = torch.softmax(SlidingWindowInferer(32, 4, 0.25, mode="gaussian")(x, net), 1)[0, 1].numpy()
    ref[:4, :6] = 0.0  # void pixels get probability 0
    assert np.abs(p_small - ref).max() <= 1e-4


def test_georeferencing_and_dtypes(tmp_path):
    _raster(tmp_path / "g.tif", (50, 60))
    seg, prob = segment_raster(tmp_path / "g.tif", tmp_path / "out", _net(), roi_size=32, window=32)
    with rasterio.open(tmp_path / "g.tif") as src, rasterio.open(seg) as s, rasterio.open(prob) as p:
        for out, dtype in ((s, "uint8"), (p, "float32")):
            assert out.crs == src.crs and out.crs is not None
            assert out.transform.almost_equals(src.transform)
            assert (out.height, out.width, out.count, out.dtypes[0]) == (50, 60, 1, dtype)
        assert set(np.unique(s.read(1))) <= {0, 255}
        assert np.array_equal(s.read(1) == 255, p.read(1) >= 0.5)


def test_runner_bad_file_skip_and_png(tmp_path, capsys):
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    _raster(src / "a.tif", (40, 40))
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (33, 47, 3), dtype=np.uint8)).save(
        src / "b.png"
    )
    (src / "broken.tif").write_bytes(b"not a tiff at all")
    out = tmp_path / "out"
    weights = tmp_path / "w.pt"
    net = _net()
    torch.save(net.state_dict(), weights)
    kw = {"roi_size": 32, "window": 32, "progress": False}
    runner = _runner(net, src, out, weights=weights, **kw)
    with pytest.raises(SystemExit) as exc:
        runner.run()
    assert exc.value.code == 1
    captured = capsys.readouterr()
    assert (
        "broken.tif" in captured.err and "2 images segmented" in captured.out and "1 failed" in captured.out
    )
    for stem, shape in (("a", (40, 40)), ("b", (33, 47))):
        with rasterio.open(out / f"{stem}_seg.tif") as s:
            assert (s.height, s.width) == shape
        assert (out / f"{stem}_prob.tif").is_file()
    assert not (out / "broken_seg.tif").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left behind
    (src / "broken.tif").unlink()
    summary = _runner(net, src, out, weights=weights, **kw).run()
    assert summary["skipped"] == 2 and summary["done"] == 0 and summary["failed"] == 0


def test_runner_fast_path_and_flip_tta(tmp_path):
    """The runner runs any inferer: the fast path gives the eager probabilities; flip TTA averages the 4 mirrored
    patch batches."""
    a = _raster(tmp_path / "in" / "t.tif", (64, 64))
    net = _net()
    probs = {}
    inferers = {
        "eager": FastInferer(backend="eager"),
        "fast": FastInferer(),
        "tta": FlipEnsembleInferer(FastInferer()),
    }
    for name, inferer in inferers.items():
        _runner(net, tmp_path / "in", tmp_path / name, inferer, roi_size=32, window=64, progress=False).run()
        with rasterio.open(tmp_path / name / "t_prob.tif") as p:
            probs[name] = p.read(1)
    assert np.abs(probs["fast"] - probs["eager"]).max() <= 1e-4
    # reference TTA: per patch batch, the mean of the softmax over the 4 flips, blended as log-probabilities
    x = torch.as_tensor(((a / 255.0 - MEAN) / STD)[None]).float()

    def mirrored(t: torch.Tensor) -> torch.Tensor:
        ps = [torch.flip(torch.softmax(net(torch.flip(t, d)), 1), d) for d in ([], [2], [3], [2, 3])]
        return torch.stack(ps).mean(0).log()

    with torch.no_grad():
        ref = torch.softmax(SlidingWindowInferer(32, 4, 0.25, mode="gaussian")(x, mirrored), 1)[0, 1].numpy()
    ref[:4, :6] = 0.0
    assert np.abs(probs["tta"] - ref).max() <= 1e-4
    assert np.abs(probs["tta"] - probs["eager"]).max() > 1e-3


def test_runner_bfloat16(tmp_path):
    """A ``FastInferer(precision="bfloat16")`` runs the fast path in bfloat16: near the float32 probabilities, not equal."""
    _raster(tmp_path / "in" / "t.tif", (64, 64))
    net = _net()
    probs = {}
    for precision in ("float32", "bfloat16"):
        inferer = FastInferer(precision=precision)
        _runner(
            net, tmp_path / "in", tmp_path / precision, inferer, roi_size=32, window=64, progress=False
        ).run()
        with rasterio.open(tmp_path / precision / "t_prob.tif") as p:
            probs[precision] = p.read(1)
    err = np.abs(probs["bfloat16"] - probs["float32"]).max()
    assert 0 < err <= 0.1, err  # a random network; bfloat16 keeps 8 significant bits
    assert np.mean((probs["bfloat16"] >= 0.5) == (probs["float32"] >= 0.5)) >= 0.97
    with pytest.raises(ValueError, match="needs backend='torch'"):
        FastInferer(backend="eager", precision="bfloat16")
