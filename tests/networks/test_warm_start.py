"""Warm start of DRU / SRU networks from U-Net-G weights (``monai_rurnet.networks.warm_start``)."""

from __future__ import annotations

import pytest
import torch

from monai_rurnet.networks import RecurrentUNet, build_network
from monai_rurnet.networks.warm_start import main, recurrent_from_plain

FEATS = (4, 8, 16)


def _plain() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return build_network("unet_g", features=FEATS, level=2).state_dict()


@pytest.mark.parametrize("cell", ["dru", "sru"])
def test_backbone_copied_gates_set(cell):
    plain = _plain()
    net = RecurrentUNet(2, 3, 2, features=FEATS, cell=cell, level=2, steps=3)
    state = recurrent_from_plain(plain, net, z_bias=-2.0, r_bias=2.0)
    net.load_state_dict(state, strict=True)
    for key in plain:
        if key.startswith(("encoder.1", "decoder", "head")):
            assert torch.equal(state[key], plain[key]), key
    first = state["encoder.0.0.weight"]
    assert torch.equal(first[:, :3], plain["encoder.0.0.weight"]) and not first[:, 3:].any()
    # candidate = the backbone's middle part (up to the output norm, which f_h has not)
    assert torch.equal(state["unit.f_h.bottleneck.0.weight"], plain["unit.body.bottleneck.0.weight"])
    assert torch.equal(state["unit.f_h.bottleneck.3.weight"], plain["unit.body.bottleneck.3.weight"])
    assert torch.equal(state["unit.f_z.bottleneck.0.weight"], plain["unit.body.bottleneck.0.weight"])
    assert not state["unit.f_z.bottleneck.3.weight"].any()
    assert torch.all(state["unit.f_z.bottleneck.3.bias"] == -2.0)
    if cell == "dru":
        assert not state["unit.f_r.bottleneck.3.weight"].any()
        assert torch.all(state["unit.f_r.bottleneck.3.bias"] == 2.0)


def test_gates_open_give_the_candidate():
    """With the update gate shut (z ~ 0) the first step's state is the candidate ``tanh(f_h(e))``."""
    net = RecurrentUNet(2, 3, 2, features=FEATS, cell="sru", level=2, steps=1)
    net.load_state_dict(recurrent_from_plain(_plain(), net, z_bias=-40.0))
    e = torch.randn(1, 8, 8, 8)
    _, h = net.unit(e, torch.full((1, 16, 8, 8), 0.7))
    assert torch.allclose(h, torch.tanh(net.unit.f_h(e)), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"cell": None, "level": 2}, "DRU or SRU"),
        ({"cell": "sru", "level": 0}, "level 0"),
        ({"cell": "dru", "level": 2, "features": (4, 8, 32)}, "same features"),
        ({"cell": "dru", "level": 1}, "same features and level"),
    ],
)
def test_errors_say_what_is_wrong(kwargs, match):
    net = RecurrentUNet(2, 3, 2, **{"features": FEATS, "steps": 3, **kwargs})
    with pytest.raises(ValueError, match=match):
        recurrent_from_plain(_plain(), net)


def test_recurrent_weights_are_not_a_backbone():
    net = RecurrentUNet(2, 3, 2, features=FEATS, cell="dru", level=2, steps=3)
    with pytest.raises(ValueError, match="not the weights of a plain U-Net-G"):
        recurrent_from_plain(net.state_dict(), net)


def test_command_line_writes_strictly_loadable_weights(tmp_path):
    torch.save(_plain(), tmp_path / "unet_g.pt")
    # the command builds the default features; a mismatch is reported, the default backbone converts
    with pytest.raises(SystemExit, match="unet_g.pt: .*same features"):
        main([str(tmp_path / "unet_g.pt"), str(tmp_path / "bad.pt")])
    with pytest.raises(SystemExit, match="missing.pt: weights file not found"):
        main([str(tmp_path / "missing.pt"), str(tmp_path / "bad.pt")])
    assert not (tmp_path / "bad.pt").exists()
    torch.save(build_network("unet_g").state_dict(), tmp_path / "unet_g.pt")
    main([str(tmp_path / "unet_g.pt"), str(tmp_path / "dru.pt"), "--z_bias", "3"])
    state = torch.load(tmp_path / "dru.pt", weights_only=True)
    RecurrentUNet(2, 3, 2, cell="dru", level=4, steps=3).load_state_dict(state, strict=True)
    assert torch.all(state["unit.f_z.bottleneck.3.bias"] == 3.0)
