"""Hand datasets in their published layouts (EYTH, HOF, GTEA, EgoHands, KBH), each on a small fake tree."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from monai_rurnet.data import HAND_DATASETS, hand_dataset_datalist, synthetic_hand_image

ROOT = Path(__file__).resolve().parents[2]
REAL_HANDS = ROOT.parent / "shared" / "data" / "Hands"


def _pair(image: Path, mask: Path, seed: int, size=(24, 32)) -> None:
    img, m = synthetic_hand_image(size, seed=seed)
    for p in (image, mask):
        p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(image)
    Image.fromarray(m * 255).save(mask)


def _check(items: list[dict[str, str]], expected_images: list[Path]) -> None:
    assert [Path(d["image"]) for d in items] == expected_images
    for d in items:
        img, lab = np.asarray(Image.open(d["image"])), np.asarray(Image.open(d["label"]))
        assert lab.shape == img.shape[:2]


def test_eyth(tmp_path):
    imgs = [tmp_path / "images" / v / f"frame{i}.jpg" for v in ("vid4", "vid6") for i in (1, 2)]
    for k, p in enumerate(imgs):
        _pair(p, tmp_path / "masks" / p.parent.name / f"{p.stem}.png", k)
    _check(hand_dataset_datalist("EYTH", tmp_path), imgs)
    (tmp_path / "train-val-test-split").mkdir()
    (tmp_path / "train-val-test-split" / "test.txt").write_text("vid6/frame2\nvid4/frame1\n")
    from monai_rurnet.data import eyth_datalist

    _check(eyth_datalist(tmp_path, split="test"), [imgs[3], imgs[0]])
    (tmp_path / "masks" / "vid6" / "frame1.png").unlink()
    with pytest.raises(FileNotFoundError, match="frame1.jpg"):
        hand_dataset_datalist("eyth", tmp_path)


def test_hof(tmp_path):
    imgs = [tmp_path / "images_resized" / f"{i}.jpg" for i in (1, 2, 3)]
    for k, p in enumerate(imgs):
        _pair(p, tmp_path / "masks" / f"{p.stem}.png", k)
    (tmp_path / "images_original").mkdir()  # the original-size images are not the ones the masks match
    _check(hand_dataset_datalist("hof", tmp_path), imgs)


def test_gtea(tmp_path):
    imgs = [tmp_path / "Images" / f"S1_Cheese_C1_{i:05d}.jpg" for i in (1, 2)]
    for k, p in enumerate(imgs):
        _pair(p, tmp_path / "Masks" / f"{p.stem}.png", k)
    _check(hand_dataset_datalist("gtea", tmp_path), imgs)
    shutil.rmtree(tmp_path / "Masks")
    with pytest.raises(FileNotFoundError, match="Masks"):
        hand_dataset_datalist("gtea", tmp_path)


def test_kbh(tmp_path):
    seq = tmp_path / "data_split_by_seq"
    imgs = [seq / s / f"{s}_{i:04d}_halfres.jpg" for s in ("seq01", "seq02") for i in (3, 4)]
    for k, p in enumerate(imgs):
        _pair(p, p.with_name(p.name.replace("_halfres.jpg", "_mask.png")), k)
    _check(hand_dataset_datalist("kbh", tmp_path), imgs)


def test_egohands_polygons_to_masks(tmp_path):
    video = tmp_path / "_LABELLED_SAMPLES" / "CARDS_OFFICE_S_B"
    video.mkdir(parents=True)
    frames = [video / f"frame_{n:04d}.jpg" for n in (11, 253)]
    for p in frames:
        Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(p)
    square = np.array([[2.0, 2.0], [12.0, 2.0], [12.0, 9.0], [2.0, 9.0]])  # x, y
    table = np.zeros((1, 2), dtype=[(f, object) for f in ("myleft", "myright", "yourleft", "yourright")])
    for f in table.dtype.names:
        table[0, 0][f] = np.zeros((0, 0))
        table[0, 1][f] = np.zeros((0, 0))
    table[0, 0]["myright"] = square
    table[0, 1]["yourleft"] = square + [15.0, 8.0]
    table[0, 1]["myleft"] = np.array([[1.0, 1.0], [2.0, 2.0]])  # a degenerate polygon is skipped
    savemat(video / "polygons.mat", {"polygons": table})
    items = hand_dataset_datalist("egohands", tmp_path, mask_dir=tmp_path / "m")
    _check(items, frames)
    m0, m1 = (np.asarray(Image.open(d["label"])) > 0 for d in items)
    assert m0[5, 7] and not m0[15, 20] and 60 <= m0.sum() <= 100
    assert m1[13, 20] and not m1[5, 7]
    assert Path(items[0]["label"]).name == "CARDS_OFFICE_S_B_frame_0011.png"
    frames[1].unlink()
    with pytest.raises(ValueError, match="polygons.mat"):
        hand_dataset_datalist("egohands", tmp_path, mask_dir=tmp_path / "m")


def test_folder_nested_and_errors(tmp_path):
    for sub in ("A", "B"):
        _pair(tmp_path / sub / "images" / "x.png", tmp_path / sub / "masks" / "x.png", 0)
    assert len(hand_dataset_datalist("folder", tmp_path)) == 2
    assert hand_dataset_datalist("folder", None) == []
    with pytest.raises(FileNotFoundError, match="nowhere"):
        hand_dataset_datalist("kbh", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="_LABELLED_SAMPLES"):
        hand_dataset_datalist("egohands", tmp_path)
    with pytest.raises(ValueError, match="not one of"):
        hand_dataset_datalist("coco", tmp_path)
    assert set(HAND_DATASETS) == {"folder", "eyth", "hof", "gtea", "egohands", "kbh"}


def test_real_hands_folder():
    if not REAL_HANDS.is_dir():
        pytest.skip(f"{REAL_HANDS} not present")
    assert len(hand_dataset_datalist("folder", REAL_HANDS)) == 80


@pytest.mark.parametrize("size", [(256, 256), (72, 100), (130, 50)])
def test_synthetic_hand_image_contract(size):
    img, mask = synthetic_hand_image(size, seed=7)
    assert img.shape == (*size, 3) and img.dtype == np.uint8
    assert mask.shape == size and set(np.unique(mask)) == {0, 1}
    again, mask_again = synthetic_hand_image(size, seed=7)
    np.testing.assert_array_equal(img, again)
    np.testing.assert_array_equal(mask, mask_again)
    assert not np.array_equal(synthetic_hand_image(size, seed=8)[1], mask)


def test_synthetic_hands_vary_skin_and_cover_the_border():
    """Over many seeds: hand pixels span dark to light skin, and arms reach the image border."""
    brightness, touches_border = [], []
    for seed in range(40):
        img, mask = synthetic_hand_image((96, 96), seed=seed)
        brightness.append(img[mask > 0].mean())
        touches_border.append(bool(mask[-1].any() or mask[0].any() or mask[:, 0].any() or mask[:, -1].any()))
    assert min(brightness) < 70 and max(brightness) > 170
    assert np.mean(touches_border) > 0.5
