"""massroads bundle: GeoTIFF inference through inference.json and a 1-epoch training run on synthetic tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from monai.bundle import run
from PIL import Image

from monai_rurnet.data import synthetic_roads, write_geotiff
from monai_rurnet.networks import build_network

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "massroads"
BASE = ROOT / "configs"
GT = (196306.436174, 1.0, 0.0, 863323.024778, 0.0, -1.0)


@pytest.fixture
def weights(tmp_path) -> Path:
    torch.manual_seed(0)
    net = build_network("dru", spatial_dims=2, in_channels=3, out_channels=2, level=4, steps=3)
    path = tmp_path / "model.pt"
    torch.save(net.state_dict(), path)
    return path


def _infer(inp: Path, out: Path, weights: Path) -> None:
    run(
        config_file=str(BUNDLE / "configs" / "inference.json"),
        bundle_root=str(BUNDLE),
        dataset_dir=str(inp),
        output_dir=str(out),
        model_file=str(weights),
        roi_size=[64, 64],
        window=64,
        progress=False,
    )


def test_inference_geotiff_keeps_georeferencing(tmp_path, weights, capsys):
    inp = tmp_path / "in"
    img, _ = synthetic_roads((70, 100), seed=1, void_corner=True)
    write_geotiff(inp / "tile.tif", img, transform=GT, crs="EPSG:26986")
    Image.fromarray(img[:, :40, :50].transpose(1, 2, 0)).save(inp / "plain.png")
    (inp / "corrupt.tif").write_bytes(b"\x00" * 100)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        _infer(inp, out, weights)
    assert exc.value.code == 1
    assert "corrupt.tif" in capsys.readouterr().err
    with rasterio.open(inp / "tile.tif") as src:
        for name, dtype in (("tile_seg.tif", "uint8"), ("tile_prob.tif", "float32")):
            with rasterio.open(out / name) as o:
                assert (o.height, o.width, o.dtypes[0]) == (70, 100, dtype)
                assert o.crs == src.crs and o.transform.almost_equals(src.transform)
    with rasterio.open(out / "plain_seg.tif") as o:
        assert (o.height, o.width) == (40, 50)
        assert set(np.unique(o.read(1))) <= {0, 255}


def _write_tiles(root: Path, names: list[str], size: int = 96) -> None:
    for i, name in enumerate(names):
        img, lab = synthetic_roads((size, size), seed=i, void_corner=True)
        for sub, arr in (("sat", img.transpose(1, 2, 0)), ("map", lab * 255)):
            (root / "train" / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(root / "train" / sub / f"{name}.png")


@pytest.mark.parametrize(
    "cldice_weight", [0.0, 0.3]
)  # the recipe, and with the clDice term (void pixels out)
def test_train_one_epoch(tmp_path, cldice_weight):
    names = ["10000001_15", "10000002_15", "10000003_15"]
    _write_tiles(tmp_path / "data", names)
    ckpt = tmp_path / "models"
    run(
        config_file=[
            str(BUNDLE / "configs" / "inference.json"),
            str(BASE / "train_base.json"),
            str(BUNDLE / "configs" / "train.json"),
        ],
        bundle_root=str(BUNDLE),
        dataset_dir=str(tmp_path / "data"),
        val_tiles=names[-1:],
        ckpt_dir=str(ckpt),
        output_dir=str(tmp_path / "tb"),
        max_epochs=1,
        val_interval=1,
        num_samples=2,
        patch_size=[64, 64],
        roi_size=[64, 64],
        **{"network_def#steps": 2, "network_def#features": [4, 4, 8, 8, 8]},
        show_progress=False,
        cldice_weight=cldice_weight,
    )
    assert (ckpt / "model.pt").is_file()
