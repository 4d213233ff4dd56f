"""CUDA paths: the network, the fast inference path and a mixed-precision training step on a GPU.

Skipped on machines without a CUDA device (the CI machine); run on a GPU with ``pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import pytest
import torch
from monai.inferers import SlidingWindowInferer
from monai.losses import DiceCELoss

from monai_rurnet.inferers import EagerPredictor, FastInferer, TorchFastPredictor
from monai_rurnet.losses import MultiStepLoss
from monai_rurnet.networks import build_network

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def _no_tf32():
    """Full float32 convolutions and matmuls, so that GPU and CPU results are comparable to 1e-4."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def _net(name: str = "dru", **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_network(name, **kw).eval()


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> None:
    a, b = a.detach().float().cpu(), b.detach().float().cpu()
    err = float((a - b).abs().max())
    assert err <= tol * max(1.0, float(b.abs().max())), f"max abs diff {err}"


@pytest.mark.parametrize(
    "name,kw,shape",
    [
        ("dru", {"level": 4, "steps": 3}, (2, 3, 64, 48)),
        ("sru", {"level": 0, "steps": 2}, (1, 3, 32, 64)),
        ("dru", {"level": 4, "steps": 2, "spatial_dims": 3, "in_channels": 1}, (1, 1, 32, 32, 16)),
    ],
)
def test_network_on_cuda_matches_cpu(name, kw, shape):
    net = _net(name, **kw)
    x = torch.randn(*shape)
    with torch.inference_mode():
        ref = net(x)
        out = net.cuda()(x.cuda())
        eager = EagerPredictor(net, tol=0.0)
        last = eager(x.cuda())
    assert out.is_cuda and eager.last_steps == kw["steps"]
    _close(out, ref)
    _close(last, ref)


def test_bfloat16_fast_path_on_cuda():
    """``precision="bfloat16"`` on the GPU: float32 logits near the float32 network's (as on the CPU)."""
    net = _net("dru", level=4, steps=3).cuda()
    x = torch.randn(2, 3, 64, 96, device="cuda")
    with torch.inference_mode():
        ref = net(x)
    out = TorchFastPredictor(net, precision="bfloat16")(x)
    assert out.is_cuda and out.dtype == torch.float32
    _close(out, ref, tol=0.08)
    assert float((out.argmax(1) == ref.argmax(1)).float().mean()) >= 0.97


@pytest.mark.parametrize("jit", [False, None])
def test_fast_path_on_cuda(jit):
    net = _net("dru", level=4, steps=3).cuda()
    fast = TorchFastPredictor(net, jit=jit)
    for shape in [(2, 3, 64, 48), (3, 3, 32, 96)]:
        x = torch.randn(*shape, device="cuda")
        with torch.inference_mode():
            ref, ref1 = net(x), net(x, steps=1)
        out = fast(x)
        assert out.is_cuda
        _close(out, ref)
        _close(fast(x, steps=1), ref1)
    # early exit on the GPU: a huge tolerance stops at the earliest step, as the reference loop does
    x = torch.randn(2, 3, 32, 32, device="cuda")
    fast(x, tol=1e9)
    assert fast.last_steps == 2
    eager = EagerPredictor(net, tol=1e9)
    eager(x)
    assert eager.last_steps == 2


def test_fast_inferer_sliding_window_on_cuda():
    net = _net("dru", level=4, steps=2).cuda()
    x = torch.randn(1, 3, 72, 88, device="cuda")
    with torch.inference_mode():
        sw = SlidingWindowInferer((32, 32), 3, 0.25, mode="gaussian")
        ref = FastInferer(sw, backend="eager", steps=2)(x, net)
    inferer = FastInferer(SlidingWindowInferer((32, 32), 3, 0.25, mode="gaussian"), steps=2)
    out = inferer(x, net)
    assert out.is_cuda
    _close(out, ref)


def test_amp_training_step_on_cuda():
    """One mixed-precision step of the multi-step loss: finite loss and gradients, weights move."""
    net = build_network("dru", level=4, steps=3, return_all_steps=True).cuda().train()
    loss_fn = MultiStepLoss(DiceCELoss(to_onehot_y=True, softmax=True), gamma=0.4)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda")
    x = torch.randn(4, 3, 64, 64, device="cuda")
    y = (torch.rand(4, 1, 64, 64, device="cuda") > 0.8).float()
    before = [p.detach().clone() for p in net.parameters()]
    with torch.autocast("cuda", dtype=torch.float16):
        loss = loss_fn(net(x), y)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    scaler.step(opt)
    scaler.update()
    assert torch.isfinite(loss)
    assert any(not torch.equal(b, p) for b, p in zip(before, net.parameters()))
