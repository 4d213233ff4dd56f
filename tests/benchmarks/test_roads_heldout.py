"""benchmarks/roads_heldout.py: road scores through the massroads runner, for weights of another network too."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import roads_heldout  # noqa: E402

from monai_rurnet.networks import build_network  # noqa: E402

BASIC_UNET = '{"_target_": "monai_rurnet.networks.build_network", "name": "monai_basic_unet"}'


def _tile(tmp_path: Path) -> tuple[Path, Path]:
    """A 96x96 aerial-like tile: grey ground, one dark road, a white (void) corner; its road map."""
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(120, 20, (96, 96, 3)), 0, 254).astype(np.uint8)
    road = np.zeros((96, 96), np.uint8)
    road[40:48, :] = 255
    img[road > 0] = 60
    img[:16, :16] = 255
    Image.fromarray(img).save(tmp_path / "t.png")
    Image.fromarray(road).save(tmp_path / "t_map.png")
    return tmp_path / "t.png", tmp_path / "t_map.png"


def test_scores_weights_of_another_network_with_its_network_def(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "basic_unet.pt"
    torch.save(build_network("monai_basic_unet").state_dict(), weights)
    pairs = [_tile(tmp_path)]
    overrides = roads_heldout.inference_overrides(
        roads_heldout.parse_overrides([f"network_def={BASIC_UNET}"])
    )
    m = roads_heldout.score(str(weights), pairs, 0.5, "gaussian", overrides=overrides)
    assert set(m) == {
        "road_breakeven",
        "relaxed_breakeven",
        "relaxed_precision",
        "relaxed_recall",
        "road_iou",
        "s_per_tile",
    }
    assert all(0.0 <= v <= 1.0 for k, v in m.items() if k != "s_per_tile")
    # without the override the bundle's own network cannot take these weights
    with pytest.raises(Exception, match="(?i)state_dict|key|size"):
        roads_heldout.score(str(weights), pairs, 0.5, "gaussian")


def test_main_refuses_overrides_that_are_not_the_network(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["roads_heldout.py", "--override", "learning_rate=0.1"])
    with pytest.raises(SystemExit) as err:
        roads_heldout.main()
    assert err.value.code == 2
    assert "network_def" in capsys.readouterr().err
