"""ResizeInferer: inference at the network's input size, logits back at the input's size (handseg's recipe)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from monai_rurnet.inferers import FastInferer, ResizeInferer
from monai_rurnet.networks import build_network


def test_resize_in_and_out_with_transpose():
    seen = []

    def net(x):
        seen.append(tuple(x.shape))
        return x[:, :2] * 2.0

    x = torch.rand(1, 3, 40, 70)
    out = ResizeInferer((32, 48), transpose=True)(x, net)
    assert seen == [(1, 3, 32, 48)] and out.shape == (1, 2, 40, 70)
    small = F.interpolate(x.transpose(-1, -2), size=(32, 48), mode="area")
    ref = F.interpolate(small[:, :2] * 2.0, size=(70, 40), mode="bilinear", align_corners=False).transpose(
        -1, -2
    )
    torch.testing.assert_close(out, ref)


def test_wraps_an_anytime_inferer():
    torch.manual_seed(0)
    net = build_network("dru", features=(4, 4, 8, 8, 8), steps=3).eval()
    inner = FastInferer(backend="eager", steps=2)
    out = ResizeInferer((32, 32), inner)(torch.rand(2, 3, 50, 20), net)
    assert out.shape == (2, 2, 50, 20) and inner.last_steps == 2
