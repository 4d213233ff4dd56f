"""Training and evaluation data (issue 22, class 7): labels and masks are read by their values, bad ones are
refused by name, and missing dataset folders are named with what to do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from monai.bundle import ConfigParser
from PIL import Image

from monai_rurnet.data import synthetic_vessel_image
from monai_rurnet.errors import root_cause

ROOT = Path(__file__).resolve().parents[2]
RETINA = ROOT / "bundles" / "retina_drive"


def _parser(**overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(
        [
            str(RETINA / "configs" / "inference.json"),
            str(ROOT / "configs" / "train_base.json"),
            str(RETINA / "configs" / "train.json"),
        ]
    )
    parser.update({"bundle_root": str(RETINA), **overrides})
    return parser


def _case(tmp_path: Path, label_scale: int = 255, grey: bool = False, empty_mask: bool = False) -> dict:
    img, lab, fov = synthetic_vessel_image((64, 72), seed=1)
    Image.fromarray(img.transpose(1, 2, 0)).save(tmp_path / "21_training.tif")
    lab = lab.astype(np.uint8) * label_scale
    if grey:
        lab[:3, :3] = 77
    Image.fromarray(lab).save(tmp_path / "21_manual1.gif")
    Image.fromarray((fov & ~empty_mask).astype(np.uint8) * 255).save(tmp_path / "21_training_mask.gif")
    return {
        k: str(tmp_path / f)
        for k, f in (
            ("image", "21_training.tif"),
            ("label", "21_manual1.gif"),
            ("mask", "21_training_mask.gif"),
        )
    }


@pytest.mark.parametrize("chain", ["train#preprocessing", "validate#preprocessing"])
def test_01_labels_read_like_0255_labels(tmp_path, chain):
    pre = _parser().get_parsed_content(chain)
    a = pre(_case(tmp_path))
    b = pre(_case(tmp_path, label_scale=1))
    a, b = (a[0], b[0]) if isinstance(a, list) else (a, b)
    assert float(np.asarray(b["label"]).sum()) > 0
    if chain == "validate#preprocessing":  # deterministic: the same labels
        np.testing.assert_array_equal(np.asarray(a["label"]), np.asarray(b["label"]))


@pytest.mark.parametrize("chain", ["train#preprocessing", "validate#preprocessing"])
def test_grey_label_refused_by_name(tmp_path, chain):
    pre = _parser().get_parsed_content(chain)
    with pytest.raises(Exception) as err:
        pre(_case(tmp_path, grey=True))
    assert "21_manual1.gif" in str(root_cause(err.value)) and "not binary" in str(root_cause(err.value))


def test_empty_fov_mask_refused_in_evaluation(tmp_path):
    pre = _parser().get_parsed_content("validate#preprocessing")
    with pytest.raises(Exception) as err:
        pre(_case(tmp_path, empty_mask=True))
    assert "21_training_mask.gif" in str(root_cause(err.value)) and "empty" in str(root_cause(err.value))


@pytest.mark.parametrize("bundle", ["retina_drive", "massroads", "handseg"])
def test_missing_dataset_folder_named_with_what_to_do(tmp_path, bundle):
    parser = ConfigParser()
    b = ROOT / "bundles" / bundle
    parser.read_config(
        [
            str(b / "configs" / "inference.json"),
            str(ROOT / "configs" / "train_base.json"),
            str(b / "configs" / "train.json"),
        ]
    )
    parser.update({"bundle_root": str(b), "dataset_dir": str(tmp_path / "nope")})
    with pytest.raises(Exception) as err:
        parser.get_parsed_content("train_datalist")
    msg = str(root_cause(err.value))
    assert str(tmp_path / "nope") in msg and "--dataset_dir" in msg
