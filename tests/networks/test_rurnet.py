"""RecurrentUNet: shapes, variants, forward contract, recurrence semantics, errors."""

from __future__ import annotations

import pytest
import torch

from monai_rurnet.networks import RecurrentUNet, available_networks, build_network
from monai_rurnet.networks.blocks import DRUCell, SRUCell

SMALL = (4, 8, 16, 32, 64)


@pytest.mark.parametrize("name", sorted(available_networks()))
def test_every_registered_variant_builds_and_runs(name):
    kwargs = {} if name == "monai_basic_unet" else {"features": SMALL}
    net = build_network(name, **kwargs).eval()
    with torch.no_grad():
        y = net(torch.rand(1, 3, 32, 48))
    assert y.shape == (1, 2, 32, 48)


@pytest.mark.parametrize("cell", ["dru", "sru"])
@pytest.mark.parametrize("level", [0, 1, 2, 3, 4])
def test_cells_at_every_level_2d(cell, level):
    net = RecurrentUNet(2, 3, 2, features=SMALL, cell=cell, level=level, steps=2).eval()
    with torch.no_grad():
        assert net(torch.rand(2, 3, 32, 32)).shape == (2, 2, 32, 32)


@pytest.mark.parametrize("cell,level", [("dru", 4), ("sru", 0), ("dru", 2)])
def test_3d(cell, level):
    net = RecurrentUNet(3, 1, 3, features=SMALL, cell=cell, level=level, steps=2).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 1, 16, 16, 32)).shape == (1, 3, 16, 16, 32)


def test_multi_step_output_is_opt_in():
    net = RecurrentUNet(2, 3, 2, features=SMALL, steps=3).train()  # like DynUNet's deep supervision: off
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 2, 32, 32)


def test_training_returns_all_steps_and_eval_the_last():
    torch.manual_seed(0)
    net = RecurrentUNet(2, 3, 2, features=SMALL, steps=3, return_all_steps=True).train()
    x = torch.rand(2, 3, 32, 32)
    y_train = net(x)
    assert y_train.shape == (2, 3, 2, 32, 32)
    net.eval()
    with torch.no_grad():
        outs = [net(x, steps=t) for t in (1, 2, 3)]
        assert torch.allclose(net(x), outs[-1])
        # anytime: steps at call time; step t of a longer run equals a run of t steps
        assert torch.allclose(net(x, steps=2), outs[1], atol=1e-6)
        assert not torch.allclose(outs[0], outs[2])


def test_mask_recurrence_feeds_previous_softmax():
    net = RecurrentUNet(2, 3, 2, features=SMALL, steps=2, init_value=1.0).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        outs = [net(x, steps=t) for t in (1, 2)]
        h = torch.empty(0)
        logits1, h = net.step(x, torch.ones(1, 2, 32, 32), h)
        logits2, _ = net.step(x, torch.softmax(logits1, 1), h)
    assert torch.allclose(outs[0], logits1, atol=1e-6)
    assert torch.allclose(outs[1], logits2, atol=1e-6)


def test_first_conv_takes_image_plus_mask_channels():
    net = RecurrentUNet(2, 3, 2, features=SMALL, cell="dru", level=4)
    assert net.encoder[0][0].in_channels == 5
    net0 = RecurrentUNet(2, 3, 2, features=SMALL, cell="sru", level=0)
    assert isinstance(net0.unit, SRUCell) and net0.unit.f_z.encoder[0][0].in_channels == 5
    plain = build_network("unet_g", features=SMALL)
    assert plain.encoder[0][0].in_channels == 3


def test_dru4_matches_the_authors_layout():
    """DRU(4), base 8: gates are single conv blocks on the 64-ch pooled level-3 output: r 64->64, z/h 64->128."""
    net = build_network("dru", level=4)
    cell = net.unit
    assert isinstance(cell, DRUCell)
    assert cell.f_r.bottleneck[0].in_channels == 64 and cell.f_r.bottleneck[3].out_channels == 64
    assert cell.f_z.bottleneck[3].out_channels == 128 and cell.f_h.bottleneck[3].out_channels == 128
    n = sum(p.numel() for p in net.parameters())
    assert n == 782_866  # reported in the README (paper states 0.36M; see design notes)
    assert sum(p.numel() for p in build_network("unet_g").parameters()) == 487_298


def test_dru_update_equations():
    """h_t = z*h + (1-z)*tanh(f_h(r*e)) with z, r = sigmoid(f_z(e)), sigmoid(f_r(e))."""
    torch.manual_seed(0)
    cell = DRUCell(2, 4, 6, (6,), ("group", {"num_groups": 2}), "relu").eval()
    e, h = torch.randn(1, 4, 8, 8), torch.randn(1, 6, 8, 8)
    with torch.no_grad():
        z = torch.sigmoid(cell.f_z(e))
        r = torch.sigmoid(cell.f_r(e))
        expected = z * h + (1 - z) * torch.tanh(cell.f_h(r * e))
        d, h_new = cell(e, h)
    assert torch.allclose(h_new, expected, atol=1e-6) and torch.allclose(d, h_new)


def test_state_block_is_optional():
    with_fs = RecurrentUNet(2, 3, 2, features=SMALL, state_block=True)
    without = RecurrentUNet(2, 3, 2, features=SMALL)
    assert sum(p.numel() for p in with_fs.parameters()) > sum(p.numel() for p in without.parameters())


def test_batchnorm_variant_and_single_output_channel():
    net = build_network("unet_b", features=SMALL, out_channels=1).eval()
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    rec = RecurrentUNet(2, 3, 1, features=SMALL, steps=2).eval()
    with torch.no_grad():
        assert rec(torch.rand(1, 3, 32, 32)).shape == (1, 1, 32, 32)


def test_gradients_reach_every_parameter():
    net = RecurrentUNet(2, 3, 2, features=SMALL, cell="dru", level=3, steps=2).train()
    net(torch.rand(2, 3, 32, 32)).sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing


def test_size_error_names_size_and_nearest_valid_sizes():
    net = build_network("dru", features=SMALL).eval()
    with pytest.raises(ValueError, match=r"\(100, 64\).*100 -> 96 or 112"):
        net(torch.rand(1, 3, 100, 64))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"cell": "lstm"}, "Unknown cell"),
        ({"level": 5}, "level must be in 0..4"),
        ({"steps": 0}, "steps must be >= 1"),
        ({"spatial_dims": 1}, "spatial_dims must be 2 or 3"),
    ],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RecurrentUNet(**{"features": SMALL, **kwargs})


def test_wrong_channels_and_unknown_name():
    net = build_network("dru", features=SMALL)
    with pytest.raises(ValueError, match="Expected 3 input channels, got 1"):
        net(torch.rand(1, 1, 32, 32))
    with pytest.raises(KeyError, match="Available: .*dru"):
        build_network("dru5")
