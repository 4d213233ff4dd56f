"""The shared trainer's ``init_weights``: a warm start loads the given weights before training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

ROOT = Path(__file__).resolve().parents[2]


def _network_after_initialize(bundle: str, **overrides) -> torch.nn.Module:
    parser = ConfigParser()
    parser.read_config(
        [
            str(ROOT / "bundles" / bundle / "configs" / "inference.json"),
            str(ROOT / "configs" / "train_base.json"),
            str(ROOT / "bundles" / bundle / "configs" / "train.json"),
        ]
    )
    parser.update(
        {"bundle_root": str(ROOT / "bundles" / bundle), "device": "$torch.device('cpu')", **overrides}
    )
    parser.get_parsed_content("initialize")
    return parser.get_parsed_content("network")


@pytest.mark.parametrize("bundle", ["retina_drive", "massroads"])
def test_init_weights_warm_start(bundle, tmp_path):
    fresh = _network_after_initialize(bundle)
    donor = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in fresh.state_dict().items()}
    path = tmp_path / "donor.pt"
    torch.save(donor, path)
    warm = _network_after_initialize(bundle, init_weights=str(path))
    for k, v in warm.state_dict().items():
        assert torch.equal(v, donor[k]), k
    assert not all(torch.equal(v, donor[k]) for k, v in fresh.state_dict().items())


def test_init_weights_of_another_network_is_rejected(tmp_path):
    path = tmp_path / "wrong.pt"
    torch.save({"conv.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(RuntimeError) as info:  # MONAI's config error, caused by ours (shown in the traceback)
        _network_after_initialize("retina_drive", init_weights=str(path))
    assert isinstance(info.value.__cause__, ValueError)
    assert "wrong.pt" in str(info.value.__cause__) and "do not match" in str(info.value.__cause__)
