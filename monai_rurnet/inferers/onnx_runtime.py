"""ONNX Runtime (CPU execution provider) inference of the exported step inside the anytime loop."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from monai_rurnet.inferers.steps import InferenceOptions, StepLoop, plain
from monai_rurnet.networks.export import META_KEY, export_step_onnx
from monai_rurnet.networks.rurnet import check_spatial_size

__all__ = ["OnnxRuntimePredictor"]


class OnnxRuntimePredictor(StepLoop):
    """ONNX Runtime inference with the anytime loop of the eager and fast PyTorch paths.

    Args:
        network: a module (exported in memory on construction with :func:`~monai_rurnet.networks.export_step_onnx`,
            and saved to ``options.onnx_path`` when set) or an ``onnx.ModelProto`` that function made (e.g.
            ``monai_rurnet.networks.load_step_onnx(path)`` of a saved one).
        options: :class:`~monai_rurnet.inferers.InferenceOptions`; this backend reads ``steps``, ``tol``,
            ``exit_stat``, ``per_sample``, ``intra_op_threads``, ``onnx_path`` and ``allow_spinning`` (off by
            default: spinning worker threads hold the cores after the call returns and slow whatever the process
            does next; measured with 2 threads, a PyTorch DRU(4) pass right after an ONNX Runtime call took 85 ms
            instead of 47 ms at 224x304, for 2% on a single whole-image call).
        opset: ONNX opset of the export (>= 17).
        providers: ONNX Runtime execution providers.
        overrides: fields of ``options`` (e.g. ``OnnxRuntimePredictor(net, tol=1e-2, intra_op_threads=1)``).

    Outputs match PyTorch to about ``1e-5`` (float32); inputs/outputs are ``torch`` tensors on the input's
    device (computation runs on the CPU).
    """

    def __init__(
        self,
        network: nn.Module | Any,
        options: InferenceOptions | None = None,
        opset: int = 17,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        **overrides: Any,
    ) -> None:
        super().__init__(InferenceOptions.build(options, **overrides))
        import onnxruntime as ort

        model = (
            export_step_onnx(network, self.options.onnx_path, opset=opset)
            if isinstance(network, nn.Module)
            else network
        )
        meta = {p.key: p.value for p in model.metadata_props}
        self.info = json.loads(meta[META_KEY]) if META_KEY in meta else {"recurrent": False}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(self.options.intra_op_threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        spin = "1" if self.options.allow_spinning else "0"
        opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
        self.session = ort.InferenceSession(
            model.SerializeToString(), sess_options=opts, providers=list(providers)
        )
        self._inputs = {i.name for i in self.session.get_inputs()}  # unused inputs are pruned by the export

    def _full(self, shape: tuple[int, ...], value: float, like: np.ndarray) -> np.ndarray:
        return np.full(shape, value, dtype=np.float32)

    def _step(self, x: np.ndarray, mask: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feed = {k: v for k, v in (("x", x), ("mask", mask), ("h", h)) if k in self._inputs}
        logits, h_new = self.session.run(["logits", "h_new"], feed)
        return logits, h_new

    def _single(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"x": x})[0]

    def _probabilities(self, logits: np.ndarray) -> np.ndarray:
        if self.info["out_channels"] == 1:
            return 1.0 / (1.0 + np.exp(-logits))
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def _change(self, prob: np.ndarray, mask: np.ndarray) -> np.ndarray:
        d = np.abs(prob - mask).reshape(prob.shape[0], -1)
        return d.max(1) if self.options.exit_stat == "max" else d.mean(1)

    def _select(self, a: np.ndarray, keep: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a[keep])

    def _assign(self, result: np.ndarray, index: np.ndarray, value: np.ndarray) -> None:
        result[index] = value

    def _to_torch(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a)

    def _from_torch(self, t: torch.Tensor, like: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(t.numpy().astype(like.dtype, copy=False))

    def __call__(self, x: torch.Tensor, steps: int | None = None, tol: float | None = None) -> torch.Tensor:
        """Logits ``(B, K, *S)`` of the last step run (``steps``/``tol`` default to the options')."""
        device = x.device
        x, guide = self.split_guidance(plain(x).detach().to("cpu"))
        if self.info.get("recurrent", False):
            check_spatial_size(x.shape[2:], int(self.info["divisor"]))
        x = self.step_input(x, guide)
        arr = np.ascontiguousarray(x.to(torch.float32).numpy())
        out = self._run(arr, self.steps if steps is None else steps, self.tol if tol is None else tol, guide)
        return torch.from_numpy(out).to(device)
