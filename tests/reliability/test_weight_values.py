"""Weights holding NaN or Inf are refused at load, with the file named (they gave an all-zero mask before)."""

from __future__ import annotations

import pytest
import torch

from monai_rurnet.networks import build_network
from monai_rurnet.utils import load_state_dict_file


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("wrapped", [False, True], ids=["state_dict", "checkpoint"])
def test_non_finite_weights_rejected_naming_file(tmp_path, bad, wrapped):
    net = build_network("dru", features=(4, 8, 8, 8, 8), steps=2)
    sd = net.state_dict()
    key = next(k for k, v in sd.items() if v.is_floating_point() and v.numel() > 1)
    sd[key] = sd[key].clone()
    sd[key].view(-1)[1] = bad
    p = tmp_path / "model.pt"
    torch.save({"network": sd} if wrapped else sd, p)
    with pytest.raises(ValueError, match=rf"{p}: 1 weight tensor\(s\) hold NaN or infinite values"):
        load_state_dict_file(p, net)


def test_finite_weights_still_load(tmp_path):
    net = build_network("dru", features=(4, 8, 8, 8, 8), steps=2)
    p = tmp_path / "model.pt"
    torch.save(net.state_dict(), p)
    assert set(load_state_dict_file(p, net)) == set(net.state_dict())
