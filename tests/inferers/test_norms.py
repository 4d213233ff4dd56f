"""Normalisations for channels-last inference: the exact two-pass group norm and the fast path's conversions."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.nets import BasicUNet

from monai_rurnet.inferers import FastInferer, TorchFastPredictor
from monai_rurnet.inferers.norms import TwoPassGroupNorm, channels_last_norms
from monai_rurnet.networks import build_network


def _float64_group_norm(x: torch.Tensor, norm: nn.Module, groups: int) -> torch.Tensor:
    w = norm.weight.double() if norm.weight is not None else None
    b = norm.bias.double() if norm.bias is not None else None
    return F.group_norm(x.double(), groups, w, b, norm.eps)


def _randomise(norm: nn.Module) -> nn.Module:
    if norm.weight is not None:
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    return norm


@pytest.mark.parametrize(
    "norm,groups",
    [
        (nn.GroupNorm(8, 8), 8),
        (nn.GroupNorm(4, 16), 4),
        (nn.GroupNorm(2, 8, affine=False), 2),
        (nn.InstanceNorm2d(8, affine=True), 8),
        (nn.InstanceNorm3d(4), 4),
    ],
)
def test_two_pass_group_norm_is_exact(norm, groups):
    """Matches float64 group norm to float32 rounding, in channels-last and NCHW, 2D and 3D, with a channel mean
    far from zero (where PyTorch's channels-last group-norm kernel loses digits)."""
    torch.manual_seed(0)
    norm = _randomise(norm)
    exact = TwoPassGroupNorm.from_norm(norm)
    c = exact.num_channels
    for spatial in ((40, 56), (12, 16, 20)):
        if isinstance(norm, nn.InstanceNorm2d) and len(spatial) == 3:
            continue
        if isinstance(norm, nn.InstanceNorm3d) and len(spatial) == 2:
            continue
        x = torch.randn(2, c, *spatial) * 0.5 + 20.0
        fmt = torch.channels_last if len(spatial) == 2 else torch.channels_last_3d
        with torch.no_grad():
            ref = _float64_group_norm(x, norm, groups)
            outs = [exact(t) for t in (x, x.contiguous(memory_format=fmt))]
        for out in outs:
            assert out.dtype == torch.float32 and out.shape == x.shape
            assert float((out.double() - ref).abs().max()) < 2e-5
        assert exact(x.contiguous(memory_format=fmt)).is_contiguous(memory_format=fmt)


def test_two_pass_group_norm_keeps_lower_precision_dtype():
    norm = _randomise(nn.GroupNorm(4, 8))
    x = torch.randn(1, 8, 16, 16) + 3.0
    with torch.no_grad():
        out, ref = TwoPassGroupNorm.from_norm(norm)(x.bfloat16()), norm(x)
    assert out.dtype == torch.bfloat16
    assert float((out.float() - ref).abs().max()) < 0.05  # float32 statistics of the bfloat16-rounded input


def test_two_pass_group_norm_errors():
    with pytest.raises(TypeError, match="GroupNorm or an instance norm"):
        TwoPassGroupNorm.from_norm(nn.BatchNorm2d(8))
    with pytest.raises(TypeError, match="GroupNorm or an instance norm"):
        TwoPassGroupNorm.from_norm(nn.InstanceNorm2d(8, track_running_stats=True))
    with pytest.raises(ValueError, match="divisible"):
        TwoPassGroupNorm(3, 8)
    with pytest.raises(ValueError, match="both weight and bias"):
        TwoPassGroupNorm(2, 8, weight=torch.ones(8))


def test_channels_last_norms_conversions():
    def layers():
        return nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.InstanceNorm2d(8, affine=True), nn.GroupNorm(4, 8), nn.BatchNorm2d(8)
        )

    fast = layers()
    channels_last_norms(fast)
    assert isinstance(fast[1], TwoPassGroupNorm) and fast[1].num_groups == 8  # instance norm: always
    assert type(fast[2]) is nn.GroupNorm and isinstance(fast[3], nn.BatchNorm2d)
    exact = layers()
    channels_last_norms(exact, exact=True)
    assert isinstance(exact[1], TwoPassGroupNorm) and isinstance(exact[2], TwoPassGroupNorm)
    assert isinstance(exact[3], nn.BatchNorm2d)


def _offset_net() -> nn.Module:
    """DRU(4) whose first convolution adds a large constant, so the full-resolution norms see mean >> spread."""
    torch.manual_seed(0)
    net = build_network("dru", level=4, steps=3).eval()
    with torch.no_grad():
        net.encoder[0][0].bias.add_(30.0)
    return net


def test_exact_norms_fast_path_matches_reference():
    """``exact_norms=True``: channels-last fast path within float32 rounding of the NCHW reference on a
    256x256 input whose norms see large means; both paths within 1e-4 of float64."""
    net = _offset_net()
    x = torch.rand(1, 3, 256, 256)
    with torch.inference_mode():
        ref = net(x)
        ref64 = net.double()(x.double())
    net.float()
    exact = TorchFastPredictor(net, exact_norms=True)
    assert any(isinstance(m, TwoPassGroupNorm) for m in exact.network.modules())
    out = exact(x)
    scale = float(ref64.abs().max())
    assert float((ref.double() - ref64).abs().max()) <= 1e-4 * scale
    assert float((out.double() - ref64).abs().max()) <= 1e-4 * scale
    inferer = FastInferer(exact_norms=True)
    assert torch.allclose(inferer(x, net), out)
    assert not any(isinstance(m, TwoPassGroupNorm) for m in TorchFastPredictor(net).network.modules())


def test_instance_norm_network_fast_path():
    """MONAI BasicUNet (instance norms) runs its norms as TwoPassGroupNorm on the fast path, same outputs."""
    torch.manual_seed(0)
    net = BasicUNet(2, 3, 2, features=(8, 16, 32, 64, 128, 8)).eval()
    for m in net.modules():
        if isinstance(m, nn.InstanceNorm2d) and m.affine:
            _randomise(m)
    fast = TorchFastPredictor(net)
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in fast.network.modules())
    x = torch.rand(2, 3, 64, 96)
    with torch.inference_mode():
        ref = net(x)
    assert float((fast(x) - ref).abs().max()) <= 1e-5 * max(1.0, float(ref.abs().max()))
