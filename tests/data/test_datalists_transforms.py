from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from monai_rurnet.data import (
    MarkVoidd,
    TwoClassCoveraged,
    chase_datalist,
    drive_datalist,
    fov_diameter,
    fov_mask_from_image,
    hand_folder_datalist,
    hands_infer_transforms,
    hands_train_transforms,
    make_synthetic_hands,
    massroads_datalist,
    roads_eval_transforms,
    roads_train_transforms,
    stare_datalist,
    synthetic_roads,
    synthetic_vessel_image,
    void_mask,
)
from monai_rurnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD

DRIVE = Path("/work/shared/data/DRIVE")
ROADS = Path("/work/shared/data/MassRoads")


def _save(arr_chw_or_hw, path, mode=None):
    a = np.asarray(arr_chw_or_hw)
    if a.ndim == 3:
        a = a.transpose(1, 2, 0)
    Image.fromarray(a).save(path)


@pytest.fixture(scope="module")
def fake_drive(tmp_path_factory):
    root = tmp_path_factory.mktemp("DRIVE")
    for split, ids in (("training", (21, 22)), ("test", (1,))):
        for sub in ("images", "1st_manual", "mask"):
            (root / split / sub).mkdir(parents=True)
        for i in ids:
            img, lab, fov = synthetic_vessel_image((120, 110), seed=i)
            _save(img, root / split / "images" / f"{i:02d}_{split}.tif")
            _save(fov.astype(np.uint8) * 255, root / split / "mask" / f"{i:02d}_{split}_mask.gif")
            if split == "training":
                _save(lab * 255, root / split / "1st_manual" / f"{i:02d}_manual1.gif")
    return root


def test_synthetic_deterministic():
    a = synthetic_vessel_image(seed=3)
    b = synthetic_vessel_image(seed=3)
    c = synthetic_vessel_image(seed=4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[1], c[1])
    img, lab, fov = a
    assert img.shape == (3, 584, 565) and img.dtype == np.uint8 and lab.shape == (584, 565)
    assert set(np.unique(lab)) == {0, 1} and not lab[~fov].any() and (img[:, ~fov] == 0).all()
    assert 0.03 < lab[fov].mean() < 0.25
    r1, l1 = synthetic_roads(seed=1, void_corner=True)
    r2, l2 = synthetic_roads(seed=1, void_corner=True)
    np.testing.assert_array_equal(r1, r2)
    assert r1.shape == (3, 512, 512) and set(np.unique(l1)) == {0, 1}
    v = void_mask(r1)
    assert v.any() and not l1[v].any()


def test_fov_from_synthetic():
    img, _, fov = synthetic_vessel_image(seed=0)
    est = fov_mask_from_image(img)
    assert (est & ~fov).sum() == 0
    assert abs(fov_diameter(est) - fov_diameter(fov)) < 5
    est_hwc = fov_mask_from_image(img.transpose(1, 2, 0), channel_dim=-1)
    np.testing.assert_array_equal(est, est_hwc)


def test_drive_datalist_fake(fake_drive):
    dl = drive_datalist(fake_drive)
    assert len(dl) == 2 and set(dl[0]) == {"image", "label", "mask"}
    assert len(drive_datalist(fake_drive, ids=[22])) == 1
    test = drive_datalist(fake_drive, "test")
    assert set(test[0]) == {"image", "mask"}
    with pytest.raises(FileNotFoundError, match="images"):
        drive_datalist(fake_drive / "nope")
    with pytest.raises(FileNotFoundError, match="ids"):
        drive_datalist(fake_drive, ids=[30])


def test_drive_datalist_real():
    if not DRIVE.is_dir():
        pytest.skip(f"{DRIVE} not present")
    dl = drive_datalist(DRIVE)
    assert len(dl) == 20 and all(Path(d["label"]).is_file() for d in dl)
    assert len(drive_datalist(DRIVE, "test")) == 20
    fov = fov_mask_from_image(np.asarray(Image.open(dl[0]["image"])), channel_dim=-1)
    ref = np.asarray(Image.open(dl[0]["mask"])) > 0
    assert (fov != ref).mean() < 0.01


def test_roads(tmp_path):
    for split, n in (("train", 2), ("valid", 1)):
        (tmp_path / split / "sat").mkdir(parents=True)
        (tmp_path / split / "map").mkdir(parents=True)
        for i in range(n):
            img, lab = synthetic_roads((96, 96), seed=i, void_corner=True)
            _save(img, tmp_path / split / "sat" / f"1000100{i}_15.png")
            lab_big = np.asarray(Image.fromarray(lab * 255).resize((144, 144), Image.NEAREST))
            _save(lab_big if split == "valid" else lab * 255, tmp_path / split / "map" / f"1000100{i}_15.tif")
    dl = massroads_datalist(tmp_path)
    assert len(dl) == 2 and dl[0]["label"].endswith(".tif")
    assert len(massroads_datalist(tmp_path, ids=["10001001_15"])) == 1
    out = roads_train_transforms(patch_size=64, num_samples=2)(dl[0])
    assert len(out) == 2 and tuple(out[0]["void"].shape) == (1, 64, 64)
    assert set(torch.unique(out[0]["label"]).tolist()) <= {0.0, 1.0}
    plain, jpeg = (
        roads_train_transforms(patch_size=64, num_samples=2),
        roads_train_transforms(
            patch_size=64, num_samples=2, jpeg_prob=1.0, jpeg_quality=(20, 20), jpeg_zoom=(0.5, 0.5)
        ),
    )
    plain.set_random_state(3)
    jpeg.set_random_state(3)
    a, b = plain(dl[0]), jpeg(dl[0])
    for x, y in zip(a, b):  # same crops and labels, image compressed at half scale, then standardised alike
        assert torch.equal(x["label"], y["label"]) and x["image"].shape == y["image"].shape
        assert 0.01 < float((x["image"] - y["image"]).abs().mean()) < 1.0
    ev = roads_eval_transforms()(massroads_datalist(tmp_path, "valid")[0])
    assert tuple(ev["label"].shape) == (1, 96, 96) and ev["void"].sum() > 0
    assert (ev["label"][ev["void"] > 0] > 0).float().mean() < 0.05  # nearest round trip at the edge
    d = MarkVoidd()({"image": torch.full((3, 4, 4), 255.0)})
    assert d["void"].shape == (1, 4, 4) and d["void"].all()


def test_roads_free_rotation_and_colour(tmp_path):
    """Turned crops keep image and label aligned and take no padding; colour jitter changes only the image."""
    for sub in ("sat", "map"):
        (tmp_path / "train" / sub).mkdir(parents=True)
    yy, xx = np.mgrid[:160, :160]
    road = (np.abs(yy - 80) < 6) | (np.abs(yy - xx) < 5)  # a horizontal and a diagonal road
    img = np.full((160, 160, 3), 100, np.uint8)
    img[road] = (220, 40, 40)
    Image.fromarray(img).save(tmp_path / "train" / "sat" / "10001000_15.png")
    Image.fromarray(road.astype(np.uint8) * 255).save(tmp_path / "train" / "map" / "10001000_15.tif")
    item = massroads_datalist(tmp_path)[0]
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    turned = roads_train_transforms(patch_size=64, num_samples=4, rotate_deg=180, rotate_prob=1.0)
    turned.set_random_state(1)
    for out in turned(item):
        rgb = out["image"] * std + mean
        assert tuple(out["label"].shape) == (1, 64, 64)
        assert set(torch.unique(out["label"]).tolist()) <= {0.0, 1.0}
        assert float(rgb.sum(0).min()) > 0.3  # no black padding entered the crop
        red = rgb[0] - rgb[1] > 0.35
        on_road = out["label"][0] > 0
        assert float((red == on_road).float().mean()) > 0.95  # image and label turned together
    plain = roads_train_transforms(patch_size=64, num_samples=2)
    jitter = roads_train_transforms(patch_size=64, num_samples=2, colour_jitter=0.3)
    plain.set_random_state(4)
    jitter.set_random_state(4)
    diffs = []
    for a, b in zip(plain(item), jitter(item)):
        assert torch.equal(a["label"], b["label"])
        rgb = b["image"] * std + mean
        assert float(rgb.min()) >= -1e-5 and float(rgb.max()) <= 1 + 1e-5
        diffs.append(float((a["image"] - b["image"]).abs().mean()))
    assert max(diffs) > 0.01


def test_roads_real_valid():
    if not (ROADS / "valid").is_dir():
        pytest.skip(f"{ROADS}/valid not present")
    ev = roads_eval_transforms()(massroads_datalist(ROADS, "valid")[0])
    assert tuple(ev["label"].shape) == (1, 1024, 1024)


def test_hands(tmp_path):
    dl = make_synthetic_hands(tmp_path / "h", n=3, size=(64, 80), seed=1)
    again = make_synthetic_hands(tmp_path / "h2", n=3, size=(64, 80), seed=1, workers=2)  # in 2 processes
    for a, b in zip(dl, again):
        for key in ("image", "label"):
            assert Path(a[key]).read_bytes() == Path(b[key]).read_bytes()
    assert sorted(p.name for p in (tmp_path / "h2" / "images").iterdir()) == [
        f"hand_000{i}.png" for i in range(3)
    ]
    mask = np.asarray(Image.open(dl[0]["label"]))
    assert mask.shape == (64, 80) and set(np.unique(mask)) == {0, 255}
    assert hand_folder_datalist(tmp_path / "h") == dl
    out = hands_train_transforms(size=(32, 32))(dl[0])
    assert tuple(out["image"].shape) == (3, 32, 32) and tuple(out["label"].shape) == (2, 32, 32)
    # two-class coverage: the classes add up to 1 and outline pixels hold the share the hand covers
    torch.testing.assert_close(out["label"].sum(0), torch.ones(32, 32))
    assert 0.0 <= float(out["label"].min()) and float(out["label"].max()) <= 1.0
    assert bool(((out["label"][1] > 0.01) & (out["label"][1] < 0.99)).any())
    inf = hands_infer_transforms(size=(32, 32))({"image": dl[0]["image"]})
    assert tuple(inf["image"].shape) == (3, 32, 32)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "h" / "images" / "extra.jpg")
    with pytest.raises(FileNotFoundError, match="extra.jpg"):
        hand_folder_datalist(tmp_path / "h")


def test_chase_stare(tmp_path):
    img, lab, _ = synthetic_vessel_image((40, 40), seed=0)
    c = tmp_path / "chase"
    c.mkdir()
    _save(img, c / "Image_01L.jpg")
    _save(lab * 255, c / "Image_01L_1stHO.png")
    assert chase_datalist(c) == [{"image": str(c / "Image_01L.jpg"), "label": str(c / "Image_01L_1stHO.png")}]
    s = tmp_path / "stare"
    s.mkdir()
    _save(img, s / "im0001.ppm")
    _save(lab * 255, s / "im0001.ah.ppm")
    assert stare_datalist(s)[0]["label"].endswith("im0001.ah.ppm")
    (s / "images").mkdir()
    (s / "labels-ah").mkdir()
    _save(img, s / "images" / "im0002.ppm")
    _save(lab * 255, s / "labels-ah" / "im0002.ah.ppm")
    assert stare_datalist(s)[0]["image"].endswith("images/im0002.ppm")


@pytest.mark.parametrize(
    "make,where", [(drive_datalist, "drive.grand-challenge.org"), (massroads_datalist, "vmnih/data")]
)
def test_missing_data_folder_says_where_the_data_comes_from(tmp_path, make, where):
    with pytest.raises(FileNotFoundError) as e:
        make(tmp_path / "missing")
    msg = str(e.value)
    assert str(tmp_path / "missing") in msg and where in msg and "--dataset_dir" in msg and "layout" in msg


def test_two_class_coverage_rejects_what_is_not_coverage():
    img = torch.zeros(1, 4, 4)
    img[0, 1, 1] = 3.0
    with pytest.raises(ValueError, match="coverage in \\[0, 1\\]"):
        TwoClassCoveraged("label")({"label": img})
    out = TwoClassCoveraged("label")({"label": torch.full((1, 4, 4), 0.25)})["label"]
    assert tuple(out.shape) == (2, 4, 4) and float(out[0, 0, 0]) == 0.75
