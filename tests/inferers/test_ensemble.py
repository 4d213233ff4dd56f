"""FlipEnsembleInferer: averaged probabilities over mirrored inputs, usable through the bundles' configs."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser
from monai.inferers import SlidingWindowInferer

from monai_rurnet.inferers import FlipEnsembleInferer
from monai_rurnet.networks import build_network

ROOT = Path(__file__).resolve().parents[2]


def _manual(net, x: torch.Tensor, dims_list, act) -> torch.Tensor:
    probs = []
    for dims in dims_list:
        out = net(torch.flip(x, dims)) if dims else net(x)
        p = torch.softmax(out, 1) if act == "softmax" else torch.sigmoid(out)
        probs.append(torch.flip(p, dims) if dims else p)
    return torch.stack(probs).mean(0)


@pytest.mark.parametrize("spatial_dims,n_flips", [(2, 4), (3, 8)])
def test_softmax_average_over_all_flips(spatial_dims, n_flips):
    torch.manual_seed(0)
    net = build_network("unet_g", spatial_dims=spatial_dims, in_channels=1, out_channels=3).eval()
    x = torch.randn(1, 1, *([16] * spatial_dims))
    calls = []

    def counted(t):
        calls.append(1)
        return net(t)

    with torch.no_grad():
        out = FlipEnsembleInferer()(x, counted)
        dims_list = [
            [a + 2 for a in c]
            for r in range(spatial_dims + 1)
            for c in itertools.combinations(range(spatial_dims), r)
        ]
        expected = _manual(net, x, dims_list, "softmax")
        single = torch.softmax(net(x), 1)
    assert len(calls) == n_flips
    torch.testing.assert_close(torch.softmax(out, 1), expected, atol=1e-6, rtol=1e-5)
    # the network is not flip-invariant, so the ensemble differs from a single pass
    assert float((torch.softmax(out, 1) - single).abs().max()) > 1e-4


def test_sigmoid_and_wrapped_inferer():
    torch.manual_seed(0)
    net = build_network("unet_g", in_channels=3, out_channels=1).eval()
    x = torch.randn(1, 3, 48, 32)
    sw = SlidingWindowInferer(roi_size=(32, 32), sw_batch_size=2, overlap=0.25)
    with torch.no_grad():
        out = FlipEnsembleInferer(sw, flip_axes=[[], [1]], activation="sigmoid")(x, net)
        probs = [torch.sigmoid(sw(x, net)), torch.flip(torch.sigmoid(sw(torch.flip(x, [3]), net)), [3])]
    torch.testing.assert_close(torch.sigmoid(out), torch.stack(probs).mean(0), atol=1e-6, rtol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="activation"):
        FlipEnsembleInferer(activation="relu")
    with pytest.raises(ValueError, match="at least one"):
        FlipEnsembleInferer(flip_axes=[])
    with pytest.raises(ValueError, match="out of range"):
        FlipEnsembleInferer(flip_axes=[[2]])(torch.zeros(1, 1, 8, 8), lambda t: t)


@pytest.mark.parametrize("flag,expected", [(None, True), ("false", False), ("True", True), (False, False)])
def test_retina_inference_config_switch(flag, expected):
    parser = ConfigParser()
    parser.read_config(str(ROOT / "bundles" / "retina_drive" / "configs" / "inference.json"))
    parser.update({"bundle_root": str(ROOT / "bundles" / "retina_drive")})
    if flag is not None:  # as given on the command line (strings) or in Python
        parser.update({"flip_tta": flag})
    inferer = parser.get_parsed_content("inferer")
    assert isinstance(inferer, FlipEnsembleInferer) is expected
    if expected:
        assert inferer.inferer is parser.get_parsed_content("base_inferer")


def test_bad_flag_is_named():
    parser = ConfigParser()
    parser.read_config(str(ROOT / "bundles" / "retina_drive" / "configs" / "inference.json"))
    parser.update({"bundle_root": str(ROOT / "bundles" / "retina_drive"), "flip_tta": "maybe"})
    with pytest.raises(RuntimeError) as info:
        parser.get_parsed_content("inferer")
    assert "flip_tta must be true or false" in str(info.value.__cause__)


@pytest.mark.parametrize("bundle", ["retina_drive", "massroads"])
def test_evaluation_config_switch(bundle):
    parser = ConfigParser()
    parser.read_config(
        [
            str(ROOT / "bundles" / bundle / "configs" / "inference.json"),
            str(ROOT / "configs" / "train_base.json"),
            str(ROOT / "bundles" / bundle / "configs" / "train.json"),
            str(ROOT / "configs" / "evaluate_base.json"),
        ]
    )
    parser.update({"bundle_root": str(ROOT / "bundles" / bundle), "flip_tta": True})
    tta = parser.get_parsed_content("validate#evaluator#inferer")
    assert isinstance(tta, FlipEnsembleInferer)
    assert isinstance(tta.inferer, SlidingWindowInferer)
