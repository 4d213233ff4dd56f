"""``precision="bfloat16"`` on the torch fast path: it really runs in bfloat16, outputs stay float32 and near float32."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import SlidingWindowInferer

import monai_rurnet.inferers.torch_fast as torch_fast
from monai_rurnet.inferers import FastInferer, Float32Norm, TorchFastPredictor, compute_dtype
from monai_rurnet.networks import build_network

# bfloat16 keeps 8 significant bits; over three recurrent steps of a random DRU(4) the logits move by ~4% of
# their largest magnitude (measured 0.22-0.24 of 6.2), the predicted class of ~1% of the pixels flips
TOL, AGREE = 0.08, 0.97


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_network("dru", level=4, steps=3).eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 3, 64, 96)


@pytest.mark.parametrize("jit", [False, None])
def test_bfloat16_close_to_float32(net, x, jit):
    with torch.inference_mode():
        ref = net(x)
    out = TorchFastPredictor(net, precision="bfloat16", jit=jit)(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    err = float((out - ref).abs().max())
    assert 0 < err <= TOL * max(1.0, float(ref.abs().max())), err  # > 0: the step really ran in bfloat16
    assert float((out.argmax(1) == ref.argmax(1)).float().mean()) >= AGREE


def test_float32_precision_is_the_default(net, x):
    a = TorchFastPredictor(net)(x)
    b = TorchFastPredictor(net, precision="fp32")(x)
    assert torch.equal(a, b)


def test_bfloat16_anytime_and_early_exit(net, x):
    fast = TorchFastPredictor(net, precision="bfloat16")
    assert fast(x, steps=1).dtype == torch.float32 and fast.last_steps == 1
    fast(x, tol=1e9)  # any change is below this tolerance: every item stops after step 2
    assert fast.last_steps_per_sample == [2, 2]


def test_bfloat16_fast_inferer_sliding_window(net):
    torch.manual_seed(2)
    img = torch.randn(1, 3, 80, 112)
    sw = SlidingWindowInferer((64, 64), sw_batch_size=4, overlap=0.25, mode="gaussian")
    with torch.inference_mode():
        ref = sw(img, net)
    out = FastInferer(sw, precision="bfloat16")(img, net)
    assert out.dtype == torch.float32
    assert float((out - ref).abs().max()) <= TOL * max(1.0, float(ref.abs().max()))


def test_precision_errors():
    assert compute_dtype("bf16") is torch.bfloat16 and compute_dtype(torch.bfloat16) is torch.bfloat16
    assert compute_dtype("float32") is None
    with pytest.raises(ValueError, match="choose one of"):
        compute_dtype("float16")
    with pytest.raises(ValueError, match="backend='torch'"):
        FastInferer(backend="onnxruntime", precision="bfloat16")
    with pytest.raises(ValueError, match="Unknown precision 'half'"):
        FastInferer(precision="half")  # at construction, not at the first call


def test_warns_without_native_bfloat16(net, monkeypatch):
    monkeypatch.setattr(torch_fast, "native_bfloat16_cpu", lambda: False)
    with pytest.warns(UserWarning, match="no native bfloat16"):
        TorchFastPredictor(net, precision="bfloat16")


def test_bfloat16_network_layout(net):
    fast = TorchFastPredictor(net, precision="bfloat16")
    norms = [m for m in fast.network.modules() if isinstance(m, Float32Norm)]
    assert norms and all(p.dtype == torch.float32 for n in norms for p in n.parameters())
    convs = [m for m in fast.network.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.dtype == torch.bfloat16 for c in convs)
    assert all(p.dtype == torch.float32 for p in net.parameters())  # the caller's network is untouched
