"""Shared fixtures of the reliability tests: a small network and the retina bundle's own preprocessing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from monai_rurnet.networks import build_network

ROOT = Path(__file__).resolve().parents[2]
SMALL = (4, 8, 16, 32, 64)


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_network("dru", spatial_dims=2, in_channels=3, out_channels=2, features=SMALL, steps=2).eval()


@pytest.fixture(scope="module")
def preprocessing():
    """The retina bundle's own inference preprocessing, read from ``inference.json``."""
    parser = ConfigParser()
    parser.read_config(str(ROOT / "bundles" / "retina_drive" / "configs" / "inference.json"))
    parser["bundle_root"] = str(ROOT / "bundles" / "retina_drive")
    return parser.get_parsed_content("preprocessing")
