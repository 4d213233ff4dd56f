"""``python -m monai_rurnet.bundle export``: a self-contained bundle copy whose own train.json holds the trainer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from monai_rurnet.bundle.export import (
    export_bundle,
    label_inference_config,
    label_train_config,
    merged_config,
    missing_train_properties,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["retina_drive", "massroads", "handseg"])
def test_export_is_self_contained(name: str, tmp_path: Path) -> None:
    src = REPO / "bundles" / name
    out = export_bundle(src, tmp_path / name)
    train = json.loads((out / "configs" / "train.json").read_text())
    # the network comes from inference.json, which the README's training command lists first; the copy trains
    # into its own folders
    merged = merged_config(
        [
            src / "configs" / "inference.json",
            REPO / "configs" / "train_base.json",
            src / "configs" / "train.json",
        ]
    )
    assert train == label_train_config(merged)
    assert {k for k in train if train[k] != merged.get(k)} == {
        "imports",
        "ckpt_dir",
        "model_file",
        "val_interval",
        "displayable_configs",
    }
    assert "train" in train and "validate" in train and not missing_train_properties(train)
    assert (out / "models" / "model.pt").read_bytes() == (src / "models" / "model.pt").read_bytes()
    for f in ("metadata.json", "logging.conf"):
        assert (out / "configs" / f).read_bytes() == (src / "configs" / f).read_bytes()
    # inference.json: the bundle's keys, plus MONAI Label's (tests/label/test_label_stock_app.py runs them); the
    # GeoTIFF runner's per-patch inferer moves to patch_inferer, which its runner then uses
    inference = json.loads((src / "configs" / "inference.json").read_text())
    copied = json.loads((out / "configs" / "inference.json").read_text())
    assert copied == label_inference_config(inference)
    assert {"pre_transforms", "inferer", "post_transforms", "displayable_configs"} <= set(copied)
    moved = "patch_inferer" in copied
    assert moved == (name == "massroads")
    for k, v in inference.items():
        if k == "evaluator" and moved:
            assert copied[k] == {**v, "inferer": "@patch_inferer"}
        else:
            assert copied["patch_inferer" if moved and k == "inferer" else k] == v, k
    # evaluate.json on top of the exported train.json is the shared evaluation merged as the README runs it
    full = merged_config([src / "configs" / "inference.json", REPO / "configs" / "train_base.json", src / "configs" / "train.json",
                          REPO / "configs" / "evaluate_base.json", src / "configs" / "evaluate.json"])  # fmt: skip
    evaluation = merged_config([out / "configs" / "train.json", out / "configs" / "evaluate.json"])
    assert evaluation == {
        **full,
        "displayable_configs": train["displayable_configs"],
    }  # MONAI Label's, unused
    assert not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(FileExistsError):
        export_bundle(src, out)


def test_label_inference_config_needs_a_pipeline() -> None:
    with pytest.raises(ValueError, match="no preprocessing"):
        label_inference_config({"evaluator": {"_target_": "monai_rurnet.runners.FolderSegmentationRunner"}})


def test_export_cli_errors(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "monai_rurnet.bundle", "export", str(tmp_path), str(tmp_path / "out")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 1 and "not found" in r.stdout and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_exported_train_json_trains_on_its_own(tmp_path: Path) -> None:
    """The exported train.json alone is the trainer: fine-tune the exported handseg for one epoch."""
    import torch

    from monai_rurnet.data import synthetic_hand_image
    from monai_rurnet.label.finetune import finetune, train_config_files

    out = export_bundle(REPO / "bundles" / "handseg", tmp_path / "handseg")
    assert train_config_files(out) == [str(out / "configs" / "train.json")]
    items = []
    for i in range(2):
        img, mask = synthetic_hand_image(size=(64, 64), seed=i)
        img = np.asarray(img)
        img = img.transpose(1, 2, 0) if img.shape[0] == 3 else img
        Image.fromarray(np.ascontiguousarray(img)).save(tmp_path / f"h{i}.png")
        Image.fromarray((np.asarray(mask) > 0).astype(np.uint8)).save(tmp_path / f"m{i}.png")
        items.append({"image": str(tmp_path / f"h{i}.png"), "label": str(tmp_path / f"m{i}.png")})
    torch.set_num_threads(2)
    result = finetune(out, items, tmp_path / "new.pt", tmp_path / "work", init_weights=out / "models" / "model.pt",
                      options={"max_epochs": 1, "batch_size": 2}, device="cpu")  # fmt: skip
    assert result["epochs"] == 1 and (tmp_path / "new.pt").is_file()
