"""Fast CPU inference for trained networks: an optimised PyTorch path and an ONNX Runtime path.

Both run the *same* network class (:class:`~monai_rurnet.networks.RecurrentUNet` or any ``nn.Module``) and keep
anytime inference: the recurrent loop stays in Python around one exported/optimised *step*
``(x, s_{t-1}, h_{t-1}) -> (logits_t, h_t)``, so ``steps`` and the early-exit ``tol`` are chosen at call time.

- :func:`optimize_for_inference` returns a :class:`TorchFastPredictor`: eval mode, ``torch.inference_mode``,
  channels-last memory format (optional), only the last step's logits kept, and (by default for a
  :class:`RecurrentUNet`) a frozen TorchScript trace of the step, which removes the per-layer Python overhead.
  ``precision="bfloat16"`` runs the network in bfloat16, its one-channel-per-group norms in float32 (opt-in;
  faster on CPUs with AVX512-BF16 or AMX).
- :class:`OnnxRuntimePredictor` exports the step (opset >= 17, dynamic batch and spatial axes) and runs it
  with ONNX Runtime's CPU execution provider.
- :class:`FastInferer` wraps any MONAI inferer (e.g. ``SlidingWindowInferer``) and builds one of the two
  predictors from the network it is given, so bundle configs can switch with ``backend="torch"|"onnxruntime"``.

All predictors are plain callables ``(B, C, *S) -> (B, K, *S)`` usable as the ``network`` argument of MONAI
inferers; ``last_steps`` records the steps used by the last call.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from monai.inferers import Inferer

from monai_rurnet.inferers.memory import reuse_freed_memory
from monai_rurnet.inferers.norms import channels_last_norms, replace_modules
from monai_rurnet.networks.rurnet import RecurrentUNet, check_spatial_size

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "StepModule",
    "Float32Norm",
    "compute_dtype",
    "TorchFastPredictor",
    "OnnxRuntimePredictor",
    "FastInferer",
    "optimize_for_inference",
    "export_step_onnx",
]

BACKENDS = ("torch", "onnxruntime")
_META_KEY = "monai_rurnet"
PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16}
_PRECISION_ALIASES = {"fp32": "float32", "bf16": "bfloat16"}


def compute_dtype(precision: str | torch.dtype) -> torch.dtype | None:
    """The dtype a ``precision`` name runs the network in (``None`` for float32: the network as it is)."""
    key = str(precision).lower().replace("torch.", "")
    key = _PRECISION_ALIASES.get(key, key)
    if key not in PRECISIONS:
        raise ValueError(
            f"Unknown precision {precision!r}; choose one of {tuple(PRECISIONS)} (bfloat16 is faster only on "
            "CPUs with AVX512-BF16 or AMX, and on GPUs)."
        )
    return PRECISIONS[key]


def _slow_in_bfloat16(module: nn.Module) -> bool:
    """Normalisations with one channel per group, which PyTorch's channels-last bfloat16 kernels run slowly."""
    if isinstance(module, nn.modules.instancenorm._InstanceNorm):
        return True
    return isinstance(module, nn.GroupNorm) and module.num_groups == module.num_channels


class Float32Norm(nn.Module):
    """Run a normalisation layer in float32 inside a lower-precision network and hand back the input's dtype.

    Used for the layers with one channel per group (``InstanceNorm``, ``GroupNorm(C, C)``): PyTorch's
    channels-last bfloat16 kernel for them is ~4x slower than this float32 round trip (8 channels at 576x576,
    2 threads: 7.7 vs 1.8 ms); other normalisations run in bfloat16 (their kernels accumulate in float32).
    """

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.norm = norm.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.float()).to(x.dtype)


def _float32_norms(module: nn.Module) -> None:
    """Wrap the normalisation layers under ``module`` that are slow in bfloat16 in :class:`Float32Norm`."""

    def convert(m: nn.Module) -> nn.Module | None:
        if isinstance(m, Float32Norm):  # already wrapped: leave it, do not wrap its norm again
            return m
        return Float32Norm(m) if _slow_in_bfloat16(m) else None

    replace_modules(module, convert)


def _plain(x: torch.Tensor) -> torch.Tensor:
    """Drop MONAI metadata (``MetaTensor``) so that tracing, numpy conversion and kernels see a plain tensor."""
    return x.as_tensor() if hasattr(x, "as_tensor") else x


class StepModule(nn.Module):
    """One recurrent step of a :class:`RecurrentUNet` as a module: ``(x, mask, h) -> (logits, h_new)``.

    ``h`` must be given (``(B, state_channels, *S/2**level)``, e.g. filled with ``state_init``), so the module
    has no data-dependent branch and traces/exports cleanly. Shares the network's parameters.
    """

    def __init__(self, net: RecurrentUNet) -> None:
        super().__init__()
        self.net = net

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, h: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.step(x, mask, h)


def _recurrent_info(net: RecurrentUNet) -> dict[str, Any]:
    return {
        "recurrent": True,
        "in_channels": net.in_channels,
        "out_channels": net.out_channels,
        "state_channels": net.state_channels,
        "state_stride": 2**net.level,
        "divisor": net.divisor,
        "init_value": net.init_value,
        "state_init": net.state_init,
        "steps": net.steps,
    }


EXIT_STATS = ("max", "mean")


class _StepLoop:
    """The anytime loop of :meth:`RecurrentUNet.forward_steps` around a step function, keeping only the last
    step's logits.

    Early exit after step ``t >= 2`` when the change of the probabilities between two steps, reduced by
    ``exit_stat`` (``"max"``: largest absolute change, as :meth:`RecurrentUNet.forward_steps`; ``"mean"``: mean
    absolute change), is below ``tol``. With ``per_sample`` each batch item (e.g. each sliding window) exits on
    its own and the remaining steps run on the unfinished items only (exact: the networks normalise per sample
    in eval mode); otherwise the batch exits together. ``last_steps`` is the largest number of steps any item
    used and ``last_steps_per_sample`` lists them. Subclasses provide the array operations.
    """

    info: dict[str, Any]
    steps: int | None
    tol: float | None

    def __init__(self, exit_stat: str = "max", per_sample: bool = True) -> None:
        if exit_stat not in EXIT_STATS:
            raise ValueError(f"exit_stat must be one of {EXIT_STATS}, got {exit_stat!r}.")
        self.exit_stat = exit_stat
        self.per_sample = per_sample
        self.last_steps = 0
        self.last_steps_per_sample: list[int] = []

    def _run(self, x: Any, steps: int | None, tol: float | None) -> Any:
        info = self.info
        b = int(x.shape[0])
        if not info.get("recurrent", False):
            self.last_steps, self.last_steps_per_sample = 1, [1] * b
            return self._single(x)
        n_steps = int(info["steps"] if steps is None else steps)
        if n_steps < 1:
            raise ValueError(f"steps must be >= 1, got {n_steps}.")
        mask, h = self._initial_state(b, [int(s) for s in x.shape[2:]], x)
        used = [n_steps] * b
        active = np.arange(b)  # batch items still running
        result: Any = None
        for t in range(n_steps):
            logits, h = self._step(x, mask, h)
            if result is None:
                result = logits
            elif len(active) < b:
                self._assign(result, active, logits)
            else:
                result = logits
            if t == n_steps - 1:
                break
            prob = self._probabilities(logits)
            if tol is not None and t > 0:
                change = self._change(prob, mask)  # per item
                done = (
                    change < tol if self.per_sample else np.full(len(active), bool(self._pool(change) < tol))
                )
                if done.any():
                    for i in active[done]:
                        used[int(i)] = t + 1
                    if done.all():
                        break
                    keep = ~done
                    active = active[keep]
                    x, prob, h = self._select(x, keep), self._select(prob, keep), self._select(h, keep)
            mask = prob
        self.last_steps, self.last_steps_per_sample = max(used), used
        return result

    def _initial_state(self, batch: int, spatial: Sequence[int], like: Any) -> tuple[Any, Any]:
        """``s_0`` (``(batch, out_channels, *spatial)``) and ``h_0`` (at the state's stride), as the network's."""
        info = self.info
        stride = int(info["state_stride"])
        mask = self._full((batch, info["out_channels"], *spatial), info["init_value"], like)
        h = self._full(
            (batch, info["state_channels"], *(s // stride for s in spatial)), info["state_init"], like
        )
        return mask, h

    def eval(self) -> _StepLoop:
        """No-op (predictors are always in eval mode), so code written for modules can call it."""
        return self

    def _pool(self, change: np.ndarray) -> float:
        return float(change.max() if self.exit_stat == "max" else change.mean())

    def _full(self, shape: tuple[int, ...], value: float, like: Any) -> Any:
        raise NotImplementedError

    def _step(self, x: Any, mask: Any, h: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def _single(self, x: Any) -> Any:
        raise NotImplementedError

    def _probabilities(self, logits: Any) -> Any:
        raise NotImplementedError

    def _change(self, prob: Any, mask: Any) -> np.ndarray:
        """Per batch item ``exit_stat`` of ``|prob - mask|``, as a numpy vector."""
        raise NotImplementedError

    def _select(self, a: Any, keep: np.ndarray) -> Any:
        raise NotImplementedError

    def _assign(self, result: Any, index: np.ndarray, value: Any) -> None:
        raise NotImplementedError


class TorchFastPredictor(_StepLoop):
    """Optimised PyTorch inference of an eval-mode network (see :func:`optimize_for_inference`).

    Args:
        network: a :class:`RecurrentUNet` (anytime loop over :meth:`RecurrentUNet.step`) or any module.
        steps: default number of steps (``None``: the network's own); overridable per call.
        tol: default early-exit tolerance (max abs change of the probabilities between two steps).
        channels_last: run in the channels-last memory format (faster oneDNN convolutions and pooling on CPU);
            instance norms then run as :class:`~monai_rurnet.inferers.norms.TwoPassGroupNorm` (same outputs;
            PyTorch's channels-last instance norm is 4-6x slower: MONAI ``BasicUNet``'s fast path 1.5x faster).
        jit: trace the step with TorchScript and freeze it (``torch.jit.freeze``) on the first call: no Python
            overhead per layer (DRU(4) T=3, 2 threads: 7% faster at 224x304, 3% at 576x576; identical outputs).
            ``None`` (default): on for a :class:`RecurrentUNet`, whose step is traced once on a small input and
            then serves every batch and spatial size; off for other modules, whose forward may branch on the
            input shape (e.g. MONAI ``BasicUNet``'s padding), which a trace would freeze.
        copy_network: work on a deep copy, leaving ``network`` untouched (default); ``False`` converts in place.
        exit_stat: ``"max"`` (as :meth:`RecurrentUNet.forward_steps`) or ``"mean"`` absolute change for ``tol``.
        per_sample: early exit per batch item (sliding windows exit on their own) instead of per batch.
        reuse_memory: let freed tensors' memory be reused by the next layer, step and call instead of being
            page-faulted in afresh (:func:`~monai_rurnet.inferers.memory.reuse_freed_memory`, process-wide,
            glibc only; 20-26% faster at 576x576 and 1024x1024 on a 2-core CPU).
        precision: ``"float32"`` (default) or ``"bfloat16"``: the (copied) network runs in bfloat16, its
            normalisations with one channel per group in float32 (:class:`Float32Norm`); the early-exit test
            and the returned logits are float32. Opt-in: outputs differ from float32 by bfloat16's rounding
            (benchmarks/README.md measures speed and DRIVE accuracy); warns on a CPU without native bfloat16
            (oneDNN then emulates it, slower than float32).
        exact_norms: with ``channels_last``, run group norms as
            :class:`~monai_rurnet.inferers.norms.TwoPassGroupNorm` too: outputs then match the NCHW reference to
            float32 rounding at any size. Off by default: PyTorch's channels-last group-norm kernel loses
            precision on large inputs (the shipped DRIVE DRU(4): logits within 4e-3 of float64 on a 576x560
            image instead of 3e-5; masks unchanged) but faster (exact: DRU(4) T=3 +11-14% time at 224x304 and
            576x576, +38% at 1024x1024 with 2 threads, +4-9% with 1 thread; benchmarks/README.md).
    """

    def __init__(
        self,
        network: nn.Module,
        steps: int | None = None,
        tol: float | None = None,
        channels_last: bool = True,
        jit: bool | None = None,
        copy_network: bool = True,
        exit_stat: str = "max",
        per_sample: bool = True,
        reuse_memory: bool = True,
        precision: str | torch.dtype = "float32",
        exact_norms: bool = False,
    ) -> None:
        super().__init__(exit_stat, per_sample)
        self.compute_dtype = compute_dtype(precision)
        net = copy.deepcopy(network) if copy_network else network
        bf16_on_cpu = self.compute_dtype is not None and all(p.device.type == "cpu" for p in net.parameters())
        if bf16_on_cpu and not _native_bfloat16_cpu():
            warnings.warn(
                "precision='bfloat16': this CPU has no native bfloat16 (AVX512-BF16/AMX); oneDNN emulates it and "
                "CPU inference will be slower than float32.",
                stacklevel=2,
            )
        if reuse_memory:
            reuse_freed_memory()
        net = net.eval()
        if self.compute_dtype is not None:
            net = net.to(dtype=self.compute_dtype)
        if channels_last:  # after the cast: the two-pass norms keep float32 parameters
            channels_last_norms(net, exact=exact_norms)
        if self.compute_dtype is not None:  # the one-channel-per-group group norms still left
            _float32_norms(net)
        for p in net.parameters():
            p.requires_grad_(False)
        dims = getattr(net, "spatial_dims", 2)
        self.memory_format = (
            (torch.channels_last if dims == 2 else torch.channels_last_3d) if channels_last else None
        )
        if self.memory_format is not None:
            net = net.to(memory_format=self.memory_format)
        self.network = net
        self.info = _recurrent_info(net) if isinstance(net, RecurrentUNet) else {"recurrent": False}
        self.steps = steps
        self.tol = tol
        self.jit = self.info["recurrent"] if jit is None else bool(jit)
        self._traced: Any = None

    def _format(self, t: torch.Tensor) -> torch.Tensor:
        return t.contiguous(memory_format=self.memory_format) if self.memory_format is not None else t

    def _full(self, shape: tuple[int, ...], value: float, like: torch.Tensor) -> torch.Tensor:
        return self._format(torch.full(shape, float(value), dtype=like.dtype, device=like.device))

    def _module(self, example: tuple[torch.Tensor, ...]) -> Callable[..., Any]:
        base: nn.Module = StepModule(self.network) if self.info["recurrent"] else self.network
        if not self.jit:
            return base
        if self._traced is None:
            if self.info["recurrent"]:  # the step has no shape-dependent branch: trace it on a small input
                example = self._small_example(example)
            with torch.no_grad(), warnings.catch_warnings():
                # torch >= 2.10 marks TorchScript deprecated; the step's only branch (h given) is traced as taken
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                traced = torch.jit.trace(base, example, check_trace=False)
                self._traced = torch.jit.freeze(traced.eval())
        return self._traced

    def _small_example(self, example: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """``(x, mask, h)`` of batch 1 at twice the network's size divisor, in the tensors' dtype and layout."""
        like = example[0]
        size = [2 * int(self.info["divisor"])] * (like.dim() - 2)
        return (self._full((1, int(like.shape[1]), *size), 0.0, like), *self._initial_state(1, size, like))

    def _step(
        self, x: torch.Tensor, mask: torch.Tensor, h: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mask = mask.to(x.dtype)  # the previous step's probabilities are float32 (see _probabilities)
        return self._module((x, mask, h))(x, mask, h)

    def _single(self, x: torch.Tensor) -> torch.Tensor:
        return self._module((x,))(x)

    def _probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.info["out_channels"] == 1:
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=1)

    def _change(self, prob: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        d = (prob - mask).abs().flatten(1)
        return (d.amax(1) if self.exit_stat == "max" else d.mean(1)).cpu().numpy()

    def _select(self, a: torch.Tensor, keep: np.ndarray) -> torch.Tensor:
        return self._format(a[torch.as_tensor(keep, device=a.device)])

    def _assign(self, result: torch.Tensor, index: np.ndarray, value: torch.Tensor) -> None:
        result[torch.as_tensor(index, device=result.device)] = value

    def __call__(self, x: torch.Tensor, steps: int | None = None, tol: float | None = None) -> torch.Tensor:
        """Logits ``(B, K, *S)`` of the last step run (``steps``/``tol`` default to the predictor's)."""
        x = _plain(x)
        outside = not torch.is_inference_mode_enabled()
        with torch.inference_mode():
            if self.info["recurrent"]:
                self.network._check_input(x)
            x = self._format(x if self.compute_dtype is None else x.to(self.compute_dtype))
            out = self._run(x, self.steps if steps is None else steps, self.tol if tol is None else tol)
            out = out if self.compute_dtype is None else out.float()
        # inference tensors cannot be updated in place outside inference mode (MONAI inferers do): copy once
        return out.clone(memory_format=torch.contiguous_format) if outside else out.contiguous()


def optimize_for_inference(
    network: nn.Module,
    steps: int | None = None,
    tol: float | None = None,
    channels_last: bool = True,
    jit: bool | None = None,
    copy_network: bool = True,
    exit_stat: str = "max",
    per_sample: bool = True,
    reuse_memory: bool = True,
    precision: str | torch.dtype = "float32",
    exact_norms: bool = False,
) -> TorchFastPredictor:
    """Return a fast eval-mode callable for ``network`` (see :class:`TorchFastPredictor`).

    Example::

        fast = optimize_for_inference(net)           # channels-last, inference_mode, frozen step, last step only
        logits = fast(x)                             # == net.eval()(x)
        logits = fast(x, steps=1)                    # anytime
        sliding_window_inference(img, (96, 96), 16, fast)
        fast16 = optimize_for_inference(net, precision="bfloat16")  # on CPUs with AVX512-BF16 or AMX
    """
    return TorchFastPredictor(
        network,
        steps,
        tol,
        channels_last,
        jit,
        copy_network,
        exit_stat,
        per_sample,
        reuse_memory,
        precision,
        exact_norms,
    )


def _native_bfloat16_cpu() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


_INSTANCE_NORMS = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}


def _instance_norms_for_export(module: nn.Module, spatial_dims: int) -> None:
    """Replace, in place, every ``GroupNorm`` with one channel per group by the equivalent affine
    ``InstanceNorm``: the exporter writes GroupNorm as Reshape -> InstanceNormalization -> Reshape -> Mul -> Add,
    the instance norm as one InstanceNormalization node (about 20% less ONNX Runtime time for DRU(4) at 576x576,
    whose full-resolution levels have 8 channels in 8 groups). Exact in eval mode."""

    def convert(m: nn.Module) -> nn.Module | None:
        if not (isinstance(m, nn.GroupNorm) and m.num_groups == m.num_channels and m.affine):
            return None
        norm = _INSTANCE_NORMS[spatial_dims](m.num_channels, eps=m.eps, affine=True)
        with torch.no_grad():
            norm.weight.copy_(m.weight)
            norm.bias.copy_(m.bias)
        return norm

    replace_modules(module, convert)


def export_step_onnx(
    network: nn.Module,
    path: str | os.PathLike,
    opset: int = 17,
    example_size: Sequence[int] | None = None,
) -> Path:
    """Export ``network`` to ONNX for :class:`OnnxRuntimePredictor` (TorchScript-based exporter).

    A :class:`RecurrentUNet` is exported as one step with inputs ``x, mask, h`` and outputs ``logits, h_new``;
    other modules as ``x -> logits``. Batch and spatial axes are dynamic; the recurrence settings are stored
    in the model's metadata (key ``monai_rurnet``). GroupNorms with one channel per group are written as
    instance norms (the same function, fewer nodes).
    """
    import onnx

    path = Path(path)
    net = copy.deepcopy(network).cpu().eval().float()
    recurrent = isinstance(net, RecurrentUNet)
    info = _recurrent_info(net) if recurrent else {"recurrent": False}
    dims = getattr(net, "spatial_dims", 2)
    in_ch = getattr(net, "in_channels", None)
    if in_ch is None:
        first = next(m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)))
        in_ch, dims = first.in_channels, first.weight.dim() - 2
    size = tuple(example_size) if example_size is not None else (int(info.get("divisor", 16)) * 2,) * dims
    _instance_norms_for_export(net, dims)
    x = torch.randn(1, in_ch, *size)
    spatial = {i + 2: f"s{i}" for i in range(dims)}
    state_spatial = {i + 2: f"hs{i}" for i in range(dims)}
    if recurrent:
        stride = info["state_stride"]
        mask = torch.full((1, info["out_channels"], *size), info["init_value"])
        h = torch.full((1, info["state_channels"], *(s // stride for s in size)), info["state_init"])
        module: nn.Module = StepModule(net)
        args: tuple[torch.Tensor, ...] = (x, mask, h)
        in_names, out_names = ["x", "mask", "h"], ["logits", "h_new"]
        dyn = {
            "x": {0: "b", **spatial},
            "mask": {0: "b", **spatial},
            "h": {0: "b", **state_spatial},
            "logits": {0: "b", **spatial},
            "h_new": {0: "b", **state_spatial},
        }
    else:
        module, args = net, (x,)
        in_names, out_names = ["x"], ["logits"]
        dyn = {"x": {0: "b", **spatial}, "logits": {0: "b", **spatial}}
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=in_names,
            output_names=out_names,
            dynamic_axes=dyn,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = _META_KEY, json.dumps(info)
    onnx.save(model, str(path))
    return path


class OnnxRuntimePredictor(_StepLoop):
    """ONNX Runtime (CPU execution provider) inference with the anytime loop of :class:`RecurrentUNet`.

    Args:
        network: a module (exported on construction to ``onnx_path`` or a temporary file) or the path of a
            model written by :func:`export_step_onnx`.
        steps: default number of steps (``None``: the exported network's own); overridable per call.
        tol: default early-exit tolerance.
        intra_op_threads: ONNX Runtime intra-op threads (``None``: ``torch.get_num_threads()``).
        onnx_path: where to write the export when ``network`` is a module.
        opset: ONNX opset of the export (>= 17).
        providers: ONNX Runtime execution providers.
        exit_stat, per_sample: early-exit options, see :class:`TorchFastPredictor`.
        reuse_memory: see :class:`TorchFastPredictor` (ONNX Runtime's own arena already reuses its buffers; this
            covers the step loop's inputs and outputs).
        allow_spinning: let ONNX Runtime's worker threads busy-wait for work after each run (ONNX Runtime's own
            default). Off by default: the spinning threads hold the cores after the call returns and slow
            whatever the process does next (measured, 2 threads: a PyTorch DRU(4) pass right after an ONNX
            Runtime call took 85 ms instead of 47 ms at 224x304; 96x96 sliding windows over a 576x576 image,
            where MONAI aggregates between calls, 412 ms without spinning vs 452 ms with it), for 2% on a
            single whole-image call (232 vs 227 ms).

    Outputs match PyTorch to about ``1e-5`` (float32); inputs/outputs are ``torch`` tensors on the input's
    device (computation runs on the CPU).
    """

    def __init__(
        self,
        network: nn.Module | str | os.PathLike,
        steps: int | None = None,
        tol: float | None = None,
        intra_op_threads: int | None = None,
        onnx_path: str | os.PathLike | None = None,
        opset: int = 17,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        exit_stat: str = "max",
        per_sample: bool = True,
        reuse_memory: bool = True,
        allow_spinning: bool = False,
    ) -> None:
        super().__init__(exit_stat, per_sample)
        if reuse_memory:
            reuse_freed_memory()
        import onnx
        import onnxruntime as ort

        self._tmpdir: tempfile.TemporaryDirectory | None = None
        if isinstance(network, nn.Module):
            if onnx_path is None:
                self._tmpdir = tempfile.TemporaryDirectory(prefix="rurnet_onnx_")
                onnx_path = Path(self._tmpdir.name) / "model.onnx"
            path = export_step_onnx(network, onnx_path, opset=opset)
        else:
            path = Path(network)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: ONNX model not found.")
        self.onnx_path = path
        meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        self.info = json.loads(meta[_META_KEY]) if _META_KEY in meta else {"recurrent": False}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(intra_op_threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=list(providers))
        self._inputs = {i.name for i in self.session.get_inputs()}  # unused inputs are pruned by the export
        self.steps = steps
        self.tol = tol

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
        return d.max(1) if self.exit_stat == "max" else d.mean(1)

    def _select(self, a: np.ndarray, keep: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a[keep])

    def _assign(self, result: np.ndarray, index: np.ndarray, value: np.ndarray) -> None:
        result[index] = value

    def __call__(self, x: torch.Tensor, steps: int | None = None, tol: float | None = None) -> torch.Tensor:
        """Logits ``(B, K, *S)`` of the last step run (``steps``/``tol`` default to the predictor's)."""
        x = _plain(x)
        if self.info.get("recurrent", False):
            check_spatial_size(x.shape[2:], int(self.info["divisor"]))
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        out = self._run(arr, self.steps if steps is None else steps, self.tol if tol is None else tol)
        return torch.from_numpy(out).to(x.device)


class FastInferer(Inferer):
    """Run ``inferer`` (default: a direct call) over a fast predictor built from the network it is given.

    The predictor is built on the first call and rebuilt when another network, or new weights (e.g. after
    ``load_state_dict``), are passed. Use it in a bundle's ``inference.json`` in place of the inferer::

        "inferer": {"_target_": "monai_rurnet.inferers.FastInferer", "backend": "onnxruntime",
                    "steps": "@steps", "tol": "@tol",
                    "inferer": {"_target_": "SlidingWindowInferer", "roi_size": "@roi_size", ...}}

    Args:
        inferer: a MONAI inferer called as ``inferer(inputs, predictor)``; ``None`` calls the predictor.
        backend: ``"torch"`` (:func:`optimize_for_inference`) or ``"onnxruntime"`` (:class:`OnnxRuntimePredictor`).
        steps, tol: anytime settings (``None``: the network's steps, no early exit).
        channels_last, jit, precision, exact_norms: options of the torch backend (``jit=None``: frozen trace
            for a RecurrentUNet; ``precision="bfloat16"``, ``exact_norms``: see :class:`TorchFastPredictor`).
        intra_op_threads, onnx_path, allow_spinning: options of the ONNX Runtime backend.
        exit_stat, per_sample: early-exit options, see :class:`TorchFastPredictor`.
        reuse_memory: keep freed memory for reuse (process-wide), see :class:`TorchFastPredictor`.
    """

    def __init__(
        self,
        inferer: Inferer | None = None,
        backend: str = "torch",
        steps: int | None = None,
        tol: float | None = None,
        channels_last: bool = True,
        jit: bool | None = None,
        intra_op_threads: int | None = None,
        onnx_path: str | os.PathLike | None = None,
        exit_stat: str = "max",
        per_sample: bool = True,
        reuse_memory: bool = True,
        allow_spinning: bool = False,
        precision: str = "float32",
        exact_norms: bool = False,
    ) -> None:
        super().__init__()
        backend = str(backend).lower().replace("_", "")
        if backend not in BACKENDS:
            raise ValueError(f"Unknown backend {backend!r}; choose one of {BACKENDS}.")
        if compute_dtype(precision) is not None and backend == "onnxruntime":  # also names a bad precision
            raise ValueError(
                f"precision={precision!r} needs backend='torch'; the ONNX Runtime path runs the float32 model."
            )
        self.precision = precision
        self.exact_norms = exact_norms
        self.inferer = inferer
        self.backend = backend
        self.steps = steps
        self.tol = tol
        self.channels_last = channels_last
        self.jit = jit
        self.intra_op_threads = intra_op_threads
        self.onnx_path = onnx_path
        self.exit_stat = exit_stat
        self.per_sample = per_sample
        self.reuse_memory = reuse_memory
        self.allow_spinning = allow_spinning
        self.last_steps = 0
        self._key: tuple | None = None
        self._predictor: Any = None

    @staticmethod
    def _weights_key(network: Any) -> tuple:
        if not isinstance(network, nn.Module):
            return (id(network),)
        return (id(network), tuple((p.data_ptr(), p._version) for p in network.state_dict().values()))

    def predictor(self, network: nn.Module) -> TorchFastPredictor | OnnxRuntimePredictor:
        """The (cached) fast predictor of ``network``."""
        key = self._weights_key(network)
        if self._predictor is None or key != self._key:
            if self.backend == "torch":
                self._predictor = optimize_for_inference(
                    network,
                    self.steps,
                    self.tol,
                    self.channels_last,
                    self.jit,
                    exit_stat=self.exit_stat,
                    per_sample=self.per_sample,
                    reuse_memory=self.reuse_memory,
                    precision=self.precision,
                    exact_norms=self.exact_norms,
                )
            else:
                self._predictor = OnnxRuntimePredictor(
                    network,
                    self.steps,
                    self.tol,
                    self.intra_op_threads,
                    self.onnx_path,
                    exit_stat=self.exit_stat,
                    per_sample=self.per_sample,
                    reuse_memory=self.reuse_memory,
                    allow_spinning=self.allow_spinning,
                )
            self._key = key
        return self._predictor

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        predictor = self.predictor(network)  # type: ignore[arg-type]
        used: list[int] = []

        def _predict(x: torch.Tensor, *a: Any, **k: Any) -> torch.Tensor:
            out = predictor(x)
            used.append(predictor.last_steps)
            return out

        out = (
            self.inferer(inputs, _predict, *args, **kwargs) if self.inferer is not None else _predict(inputs)
        )
        self.last_steps = max(used, default=0)
        return out
