from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from monai.transforms import EnsureChannelFirstd, LoadImage, LoadImaged

from monai_rurnet.data.geotiff import (
    MASSROADS_CRS,
    RasterioReader,
    create_like,
    iter_windows,
    massroads_geotransform,
    read_window,
    write_georeferenced_tile,
    write_geotiff,
)

SAMPLE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "MassRoads" / "geotiff_sample"
SAMPLE = SAMPLE if SAMPLE.is_dir() else Path("/work/shared/data/MassRoads/geotiff_sample")
GT = massroads_geotransform("10228690_15")


@pytest.fixture
def raster(tmp_path):
    a = (np.arange(3 * 40 * 50) % 251).astype(np.uint8).reshape(3, 40, 50)
    p = write_geotiff(tmp_path / "a.tif", a, transform=GT, crs=MASSROADS_CRS, nodata=0)
    return Path(p), a


def test_massroads_geotransform_rule():
    assert GT[0] == pytest.approx(101486.43617401272, abs=1e-5)
    assert GT[3] == pytest.approx(869771.0247780085, abs=1e-5)
    assert GT[1:3] == (1.0, 0.0) and GT[4:] == (0.0, -1.0)
    assert massroads_geotransform("x/10228690_15.png", size=1000)[1] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="tile name"):
        massroads_geotransform("foo")


def test_reader_meta(raster):
    path, a = raster
    img = LoadImage(reader=RasterioReader(), image_only=True)(path)
    assert tuple(img.shape) == (3, 40, 50)
    np.testing.assert_array_equal(img.numpy(), a)
    assert img.meta["original_channel_dim"] == 0
    assert "26986" in img.meta["crs"]
    assert img.meta["nodata"] == 0
    np.testing.assert_allclose(img.meta["transform"], GT)
    # affine maps (row, col) -> (x, y)
    x, y, _ = img.meta["affine"].numpy() @ np.array([2.0, 3.0, 1.0])
    assert (x, y) == pytest.approx((GT[0] + 3.0, GT[3] - 2.0))
    d = EnsureChannelFirstd("image")(LoadImaged("image", reader=RasterioReader)({"image": str(path)}))
    assert tuple(d["image"].shape) == (3, 40, 50)


def test_windows_and_create_like(raster, tmp_path):
    path, a = raster
    wins = list(iter_windows(40, 50, 16, overlap=4))
    cover = np.zeros((40, 50), int)
    for w in wins:
        assert w.width == 16 and w.height == 16
        cover[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] += 1
    assert cover.min() >= 1
    assert list(iter_windows(10, 10, 32))[0].width == 10
    from rasterio.windows import Window

    part = read_window(path, Window(40, 30, 16, 16))
    assert part.shape == (3, 16, 16)
    np.testing.assert_array_equal(part[:, :10, :10], a[:, 30:, 40:])
    assert (part[:, 10:, :] == 0).all()
    out = tmp_path / "pred.tif"
    with create_like(path, out, count=1, dtype="uint8", nodata=255) as dst:
        for w in iter_windows(dst.height, dst.width, 16, 0):
            dst.write(read_window(path, w)[:1], window=w)
    with rasterio.open(out) as ds:
        assert ds.count == 1 and ds.nodata == 255 and ds.crs.to_epsg() == 26986
        np.testing.assert_array_equal(ds.read(1), a[0])


def test_write_georeferenced_tile(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((30, 30, 3), 7, np.uint8)).save(tmp_path / "10228690_15.png")
    out = write_georeferenced_tile(tmp_path / "10228690_15.png", tmp_path / "t.tif")
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 26986
        assert ds.transform.c == pytest.approx(GT[0]) and ds.transform.a == pytest.approx(50.0)


def test_real_geotiff_sample():
    p = SAMPLE / "10228690_15_airs_250px.tiff"
    if not p.is_file():
        pytest.skip(f"{p} not present")
    from PIL import Image

    with Image.open(p) as im:  # the sample has a malformed SampleFormat tag that libtiff/GDAL reject
        tie = im.tag_v2[33922]
    assert (tie[3], tie[4]) == pytest.approx((GT[0], GT[3]), abs=1e-5)
    with pytest.raises(OSError, match="rasterio cannot open"):
        RasterioReader().read(p)


def test_windows_partition_without_edge_alignment():
    windows = list(iter_windows(70, 50, 32, align_last=False))
    covered = np.zeros((70, 50), int)
    for w in windows:
        covered[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] += 1
    assert (covered == 1).all() and len(windows) == 3 * 2
