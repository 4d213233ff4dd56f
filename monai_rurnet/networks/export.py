"""Export a network to TorchScript or ONNX and check that the exported model gives the eager outputs.

Both exporters keep the spatial size (and the batch size) dynamic: the exported model accepts any input whose
spatial size is divisible by ``2 ** (len(features) - 1)`` (16 for the paper's 5 levels). The size check of
:class:`~monai_rurnet.networks.RecurrentUNet` is skipped while scripting or tracing, so the exported models do
not raise the actionable error for bad sizes; pad the input first (the inferers do).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn

__all__ = ["export_torchscript", "export_onnx", "check_onnx", "onnx_dynamic_axes"]


def _example(example_shape: Sequence[int], module: nn.Module, seed: int = 0) -> torch.Tensor:
    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(*[int(s) for s in example_shape], generator=gen).to(device)


def export_torchscript(
    net: nn.Module,
    path: str | os.PathLike | None,
    example_shape: Sequence[int],
    use_trace: bool = False,
    verify: bool = True,
    atol: float = 1e-5,
    extra_files: dict[str, Any] | None = None,
) -> torch.jit.ScriptModule:
    """Convert ``net`` (in eval mode) to TorchScript, optionally save it to ``path`` and return it.

    Args:
        net: the network; it is put in eval mode (the eval forward returns one tensor).
        path: where to save the ``.ts`` file (``torch.jit.save``), or ``None`` to only convert.
        example_shape: ``(B, C, *spatial)`` of the random input used to trace (``use_trace``) and to verify.
        use_trace: ``torch.jit.trace`` instead of ``torch.jit.script``. Scripting keeps the ``steps`` argument
            of :class:`~monai_rurnet.networks.RecurrentUNet` (``ts(x, 1)`` runs one step); tracing freezes it.
        verify: compare the converted model with the eager one on the example input.
        atol: tolerance of the comparison.
        extra_files: files stored in the archive (name -> str/bytes), e.g. the bundle's metadata.

    Raises:
        ValueError: when the converted model's output differs from the eager output by more than ``atol``.
    """
    net = net.eval()
    x = _example(example_shape, net)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the input checks are skipped while tracing
        ts = torch.jit.trace(net, x) if use_trace else torch.jit.script(net)
        if verify:
            diff = (ts(x) - net(x)).abs().max().item()
            if diff > atol:
                raise ValueError(f"TorchScript output differs from the eager output by {diff:.3g} > {atol}.")
    if path is not None:
        files = {k: v.encode() if isinstance(v, str) else v for k, v in (extra_files or {}).items()}
        torch.jit.save(ts, os.fspath(path), _extra_files=files)
    return ts


def onnx_dynamic_axes(spatial_dims: int, input_name: str = "image", output_name: str = "pred") -> dict:
    """``dynamic_axes`` for ``torch.onnx.export`` marking the batch and every spatial dim as dynamic."""
    names = ["height", "width"] if spatial_dims == 2 else ["depth", "height", "width"]
    axes = {0: "batch", **{i + 2: n for i, n in enumerate(names)}}
    return {input_name: axes, output_name: dict(axes)}


def export_onnx(
    net: nn.Module,
    path: str | os.PathLike,
    example_shape: Sequence[int],
    opset: int = 17,
    dynamic: bool = True,
    dynamo: bool = False,
    verify: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    input_name: str = "image",
    output_name: str = "pred",
) -> str:
    """Export ``net`` (in eval mode) to an ONNX file and return its path.

    Args:
        net: the network; it is put in eval mode. Only the default ``steps`` is exported.
        path: the ``.onnx`` file to write.
        example_shape: ``(B, C, *spatial)`` of the random example input.
        opset: ONNX opset (>= 17: GroupNorm/LayerNorm export without custom ops).
        dynamic: make the batch and spatial dims dynamic (any size divisible by the network's divisor works).
        dynamo: use the ``torch.export``-based exporter (slower: tens of seconds for DRU) instead of the
            TorchScript-based one (the default here; deprecated by PyTorch but fast and exact).
        verify: run the file with onnxruntime on the example input and compare with PyTorch.
        atol: absolute tolerance of the comparison (``|ort - torch| <= atol + rtol * |torch|``).
        rtol: relative tolerance of the comparison.
        input_name: name of the ONNX input.
        output_name: name of the ONNX output.

    Raises:
        ValueError: when ``opset < 17`` or the onnxruntime output differs from PyTorch.
    """
    if opset < 17:
        raise ValueError(f"opset must be >= 17 (GroupNorm), got {opset}.")
    net = net.eval()
    x = _example(example_shape, net)
    spatial_dims = len(example_shape) - 2
    kwargs: dict[str, Any] = {
        "input_names": [input_name],
        "output_names": [output_name],
        "opset_version": opset,
        "dynamo": dynamo,
    }
    if dynamic:
        if dynamo:
            dims = {0: torch.export.Dim("batch")}
            dims.update({i + 2: torch.export.Dim.AUTO for i in range(spatial_dims)})
            kwargs["dynamic_shapes"] = {"x": dims}
        else:
            kwargs["dynamic_axes"] = onnx_dynamic_axes(spatial_dims, input_name, output_name)
    if dynamo:
        kwargs["external_data"] = False
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript-based exporter is deprecated
        torch.onnx.export(net, (x,), os.fspath(path), **kwargs)
    if verify:
        check_onnx(path, net, [x], atol=atol, rtol=rtol, input_name=input_name)
    return os.fspath(path)


def check_onnx(
    path: str | os.PathLike,
    net: nn.Module,
    inputs: Sequence[torch.Tensor],
    atol: float = 1e-4,
    rtol: float = 1e-4,
    input_name: str = "image",
) -> float:
    """Run the ONNX file with onnxruntime (CPU) on each input, compare with ``net`` and return the max abs diff."""
    import onnxruntime as ort

    sess = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    net = net.eval()
    for x in inputs:
        with torch.no_grad():
            ref = net(x).detach().cpu().numpy()
        out = sess.run(None, {input_name: x.detach().cpu().numpy()})[0]
        if out.shape != ref.shape:
            raise ValueError(f"ONNX output shape {out.shape} != PyTorch output shape {ref.shape}.")
        if not np.allclose(out, ref, atol=atol, rtol=rtol):
            raise ValueError(
                f"ONNX output differs from PyTorch by {np.abs(out - ref).max():.3g} (input {tuple(x.shape)})."
            )
        worst = max(worst, float(np.abs(out - ref).max()))
    return worst
