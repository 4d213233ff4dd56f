"""TorchScript and ONNX exports give the eager outputs, at the export size and at another size."""

from __future__ import annotations

import pytest
import torch

from monai_rurnet.networks import build_network
from monai_rurnet.networks.export import check_onnx, export_onnx, export_torchscript

VARIANTS_2D = {
    "dru4": ("dru", {"level": 4}),
    "sru0": ("sru", {"level": 0}),
    "unet_g": ("unet_g", {}),
}


def _net(key: str, spatial_dims: int = 2, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    name, args = VARIANTS_2D[key]
    return build_network(name, spatial_dims=spatial_dims, in_channels=3, out_channels=2, **args, **kw).eval()


@pytest.mark.parametrize("key", sorted(VARIANTS_2D))
def test_torchscript_2d(key, tmp_path):
    net = _net(key)
    path = tmp_path / "net.ts"
    export_torchscript(net, path, (1, 3, 32, 32), extra_files={"metadata.json": "{}"})
    ts = torch.jit.load(str(path))
    with torch.no_grad():
        for shape in [(1, 3, 32, 32), (2, 3, 48, 64)]:
            x = torch.rand(*shape)
            torch.testing.assert_close(ts(x), net(x), atol=1e-5, rtol=1e-5)
        if key != "unet_g":  # scripting keeps the anytime `steps` argument
            x = torch.rand(1, 3, 32, 32)
            torch.testing.assert_close(ts(x, 1), net(x, steps=1), atol=1e-5, rtol=1e-5)


def test_torchscript_traced(tmp_path):
    net = _net("dru4")
    ts = export_torchscript(net, tmp_path / "net.ts", (1, 3, 32, 32), use_trace=True)
    x = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        torch.testing.assert_close(ts(x), net(x), atol=1e-5, rtol=1e-5)


def test_torchscript_3d(tmp_path):
    torch.manual_seed(0)
    net = build_network(
        "dru", spatial_dims=3, in_channels=1, out_channels=2, features=(8, 8, 16, 16, 16)
    ).eval()
    ts = export_torchscript(net, tmp_path / "net3d.ts", (1, 1, 16, 16, 16))
    x = torch.rand(1, 1, 32, 16, 48)
    with torch.no_grad():
        torch.testing.assert_close(ts(x), net(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("key", sorted(VARIANTS_2D))
def test_onnx_dynamic_2d(key, tmp_path):
    pytest.importorskip("onnxruntime")
    net = _net(key)
    path = export_onnx(net, tmp_path / "net.onnx", (1, 3, 32, 32), opset=17, dynamic=True)
    # another batch size and spatial size than the export's
    worst = check_onnx(path, net, [torch.rand(1, 3, 32, 32), torch.rand(2, 3, 48, 80)], atol=1e-4, rtol=1e-4)
    assert worst < 1e-3


def test_onnx_rejects_old_opset(tmp_path):
    with pytest.raises(ValueError, match="opset"):
        export_onnx(_net("unet_g"), tmp_path / "net.onnx", (1, 3, 32, 32), opset=13)
