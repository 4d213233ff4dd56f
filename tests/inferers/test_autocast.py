"""AutocastInferer: mixed-precision forward passes (bfloat16 on the CPU) for training and evaluation."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import SimpleInferer

from monai_rurnet.inferers import AutocastInferer
from monai_rurnet.losses import MultiStepLoss
from monai_rurnet.networks import build_network


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_network("dru", level=4, steps=2, return_all_steps=True)


def test_float32_is_a_plain_call():
    net, x = _net().eval(), torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(AutocastInferer(SimpleInferer(), "float32")(x, net), net(x))
        assert torch.equal(AutocastInferer(None, "float32")(x, net), net(x))


def test_bfloat16_training_step():
    """Training-mode forward ``(B, T, K, *S)`` in bfloat16, float32 outputs, a loss and float32 gradients."""
    net, x = _net().train(), torch.randn(2, 3, 32, 32)
    y = (torch.rand(2, 1, 32, 32) > 0.8).float()
    with torch.no_grad():
        ref = net(x)
    out = AutocastInferer(SimpleInferer(), "bfloat16")(x, net)
    assert out.dtype == torch.float32 and out.shape == ref.shape == (2, 2, 2, 32, 32)
    err = float((out - ref).abs().max())
    assert 0 < err <= 0.08 * max(1.0, float(ref.abs().max())), err  # > 0: the forward ran in bfloat16
    loss = MultiStepLoss(torch.nn.BCEWithLogitsLoss())(out[:, :, 1:], y)
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_bad_precision():
    with pytest.raises(ValueError, match="choose one of"):
        AutocastInferer(SimpleInferer(), "float16")
