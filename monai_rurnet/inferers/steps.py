"""The one anytime loop of the recurrent networks: ``steps``, early exit at ``tol``, per batch item.

:class:`StepLoop` runs ``(x, s_{t-1}, h_{t-1}) -> (logits_t, h_t)`` steps of a
:class:`~monai_rurnet.networks.RecurrentUNet` (or of its exported step) and keeps only the last step's logits.
Every inference path uses it: :class:`EagerPredictor` (the network as it is), the fast PyTorch path
(:class:`~monai_rurnet.inferers.TorchFastPredictor`) and ONNX Runtime
(:class:`~monai_rurnet.inferers.OnnxRuntimePredictor`); the runners reach it through
:class:`~monai_rurnet.inferers.FastInferer`. Options are grouped once in :class:`InferenceOptions`.

Interactive refinement: an input with two extra channels (:func:`~monai_rurnet.networks.guidance.pack_guidance`:
a prior and a stroke map) starts the steps from the prior and clamps the strokes into the mask at every step,
with stroke pixels honoured in the logits, as :meth:`~monai_rurnet.networks.RecurrentUNet.forward` does with
``prior``/``strokes``, on every backend (the clamping is elementwise, outside the exported step).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from monai_rurnet.networks.export import recurrent_info
from monai_rurnet.networks.guidance import (
    append_stroke_channels,
    check_binary,
    clamp_mask,
    honour_strokes,
    prior_mask,
    stroke_masks,
    unpack_guidance,
)

__all__ = ["EXIT_STATS", "InferenceOptions", "StepLoop", "TorchStepLoop", "EagerPredictor"]

EXIT_STATS = ("max", "mean")


@dataclass(frozen=True)
class InferenceOptions:
    """Options of the inference paths, in one place (each backend reads the ones it knows).

    Args:
        steps: recurrent steps (``None``: the network's own); overridable per call.
        tol: early exit after step ``t >= 2`` once the probabilities change less than ``tol`` between two steps
            (``None``: run every step).
        exit_stat: how the change is reduced: ``"max"`` (largest absolute change) or ``"mean"``.
        per_sample: each batch item (e.g. each sliding window) exits on its own; else the batch exits together.
        channels_last: torch backend: channels-last memory format (faster oneDNN kernels on CPU).
        jit: torch backend: frozen TorchScript trace of the step (``None``: on for a ``RecurrentUNet``).
        precision: torch backend: ``"float32"`` or ``"bfloat16"`` (CPUs with AVX512-BF16/AMX, GPUs).
        exact_norms: torch backend: two-pass group norms in channels-last (exact, slower).
        intra_op_threads: ONNX Runtime threads (``None``: ``torch.get_num_threads()``).
        onnx_path: ONNX Runtime: where the exported step is written (``None``: a temporary file).
        allow_spinning: ONNX Runtime: let worker threads busy-wait between runs.
    """

    steps: int | None = None
    tol: float | None = None
    exit_stat: str = "max"
    per_sample: bool = True
    channels_last: bool = True
    jit: bool | None = None
    precision: str = "float32"
    exact_norms: bool = False
    intra_op_threads: int | None = None
    onnx_path: str | os.PathLike | None = None
    allow_spinning: bool = False

    def __post_init__(self) -> None:
        if self.exit_stat not in EXIT_STATS:
            raise ValueError(f"exit_stat must be one of {EXIT_STATS}, got {self.exit_stat!r}.")
        if self.steps is not None and int(self.steps) < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}.")

    @classmethod
    def build(cls, options: InferenceOptions | None = None, **overrides: Any) -> InferenceOptions:
        """``options`` (default: the defaults) with ``overrides``; unknown names raise a ``TypeError``."""
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(
                f"Unknown inference options {sorted(unknown)}; known: {[f.name for f in fields(cls)]}."
            )
        return replace(options or cls(), **overrides)


class StepLoop:
    """The anytime loop around a step function, keeping only the last step's logits.

    Early exit after step ``t >= 2`` when the change of the probabilities between two steps, reduced by
    ``exit_stat``, is below ``tol``. With ``per_sample`` each batch item exits on its own and the remaining steps
    run on the unfinished items only (exact: the networks normalise per sample in eval mode); otherwise the batch
    exits together. ``last_steps`` is the largest number of steps any item used, ``last_steps_per_sample`` lists
    them. Subclasses provide the array operations (torch tensors or numpy arrays).
    """

    info: dict[str, Any]

    def __init__(self, options: InferenceOptions) -> None:
        self.options = options
        self.last_steps = 0
        self.last_steps_per_sample: list[int] = []

    @property
    def steps(self) -> int | None:
        return self.options.steps

    @property
    def tol(self) -> float | None:
        return self.options.tol

    def eval(self) -> StepLoop:
        """No-op (predictors are always in eval mode), so code written for modules can call it."""
        return self

    def split_guidance(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """The image channels of ``x`` and, for a packed guided input, ``(prior, fg, bg)`` (``(B, 1, *S)``).

        Raises a ``ValueError`` when guidance is given to a network that cannot be refined (not binary, no mask
        recurrence, not a recurrent network).
        """
        info = self.info
        if not info.get("recurrent", False):
            return x, None
        parts = unpack_guidance(x, int(info["in_channels"]))
        if parts is None:
            return x, None
        check_binary(int(info["out_channels"]))
        if not info.get("mask_recurrence", True):
            raise ValueError("Interactive refinement steers the mask recurrence; this network has none.")
        image, prior, strokes = parts
        fg, bg = stroke_masks(strokes)
        return image, (prior, fg, bg)

    def step_input(self, x: torch.Tensor, guide: tuple[torch.Tensor, ...] | None) -> torch.Tensor:
        """The ``x`` the step takes: the image, with the stroke input channels appended for a network built with
        ``stroke_channels`` (zero without guidance)."""
        if not self.info.get("stroke_channels", 0):
            return x
        empty = torch.zeros(0, dtype=torch.bool, device=x.device)
        fg, bg = (guide[1], guide[2]) if guide is not None else (empty, empty)
        return append_stroke_channels(x, fg.to(x.device), bg.to(x.device))

    def _to_torch(self, a: Any) -> torch.Tensor:
        """A loop array as a torch tensor (the guidance is applied with torch, elementwise)."""
        return a

    def _from_torch(self, t: torch.Tensor, like: Any) -> Any:
        """A torch tensor as a loop array like ``like``."""
        return t

    def _run(self, x: Any, steps: int | None, tol: float | None, guide: tuple | None = None) -> Any:
        info = self.info
        b = int(x.shape[0])
        if not info.get("recurrent", False):
            self.last_steps, self.last_steps_per_sample = 1, [1] * b
            return self._single(x)
        n_steps = int(info["steps"] if steps is None else steps)
        if n_steps < 1:
            raise ValueError(f"steps must be >= 1, got {n_steps}.")
        mask, h = self._initial_state(b, [int(s) for s in x.shape[2:]], x)
        if guide is not None:
            prior, fg, bg = guide
            s0 = prior_mask(prior, int(info["out_channels"]), float(info["init_value"]))
            mask = self._from_torch(clamp_mask(s0, fg, bg), mask)
        used = [n_steps] * b
        active = np.arange(b)  # batch items still running
        result: Any = None
        for t in range(n_steps):
            logits, h = self._step(x, mask, h)
            if guide is not None:
                logits = self._from_torch(honour_strokes(self._to_torch(logits), fg, bg), logits)
            if result is None or len(active) == b:
                result = logits
            else:
                self._assign(result, active, logits)
            if t == n_steps - 1:
                break
            prob = self._probabilities(logits)
            if guide is not None:
                prob = self._from_torch(clamp_mask(self._to_torch(prob), fg, bg), prob)
            if tol is not None and t > 0:
                change = self._change(prob, mask)  # per item
                pooled = change.max() if self.options.exit_stat == "max" else change.mean()
                done = change < tol if self.options.per_sample else np.full(len(active), bool(pooled < tol))
                if done.any():
                    for i in active[done]:
                        used[int(i)] = t + 1
                    if done.all():
                        break
                    keep = ~done
                    active = active[keep]
                    x, prob, h = self._select(x, keep), self._select(prob, keep), self._select(h, keep)
                    if guide is not None:
                        index = torch.as_tensor(keep, device=fg.device)
                        fg, bg = fg[index], bg[index]
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


def plain(x: torch.Tensor) -> torch.Tensor:
    """Drop MONAI metadata (``MetaTensor``) so that tracing, numpy conversion and kernels see a plain tensor."""
    return x.as_tensor() if hasattr(x, "as_tensor") else x


class TorchStepLoop(StepLoop):
    """:class:`StepLoop` on torch tensors over ``self.network`` (a :class:`RecurrentUNet` or any module).

    Subclasses may set ``memory_format`` (kept by every tensor the loop makes) and ``compute_dtype`` (the input
    is cast to it, the returned logits are float32), and override :meth:`_module`.
    """

    memory_format: torch.memory_format | None = None
    compute_dtype: torch.dtype | None = None

    def __init__(self, network: nn.Module, options: InferenceOptions) -> None:
        super().__init__(options)
        self.network = network
        self.info = recurrent_info(network)

    def _module(self, example: tuple[torch.Tensor, ...]) -> Any:
        """The callable run for one step (``x, mask, h``) or, for a plain module, for ``x``."""
        return self.network.step if self.info["recurrent"] else self.network

    def _format(self, t: torch.Tensor) -> torch.Tensor:
        return t.contiguous(memory_format=self.memory_format) if self.memory_format is not None else t

    def _from_torch(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self._format(t.to(like.dtype))

    def _full(self, shape: tuple[int, ...], value: float, like: torch.Tensor) -> torch.Tensor:
        return self._format(torch.full(shape, float(value), dtype=like.dtype, device=like.device))

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
        return (d.amax(1) if self.options.exit_stat == "max" else d.mean(1)).cpu().numpy()

    def _select(self, a: torch.Tensor, keep: np.ndarray) -> torch.Tensor:
        return self._format(a[torch.as_tensor(keep, device=a.device)])

    def _assign(self, result: torch.Tensor, index: np.ndarray, value: torch.Tensor) -> None:
        result[torch.as_tensor(index, device=result.device)] = value

    def __call__(self, x: torch.Tensor, steps: int | None = None, tol: float | None = None) -> torch.Tensor:
        """Logits ``(B, K, *S)`` of the last step run (``steps``/``tol`` default to the options')."""
        outside = not torch.is_inference_mode_enabled()
        with torch.inference_mode():
            x, guide = self.split_guidance(plain(x))
            if self.info["recurrent"]:
                self.network._check_input(x)
            x = self.step_input(x, guide)
            x = self._format(x if self.compute_dtype is None else x.to(self.compute_dtype))
            out = self._run(
                x, self.steps if steps is None else steps, self.tol if tol is None else tol, guide
            )
            out = out if self.compute_dtype is None else out.float()
        # inference tensors cannot be updated in place outside inference mode (MONAI inferers do): copy once
        return out.clone(memory_format=torch.contiguous_format) if outside else out.contiguous()


class EagerPredictor(TorchStepLoop):
    """The network as it is (its device, dtype, memory format and modules), run through the anytime loop.

    The reference path: :class:`~monai_rurnet.inferers.TorchFastPredictor` and ONNX Runtime agree with it to
    float tolerance for the same ``steps``/``tol``. The network is put in eval mode, not copied. Keyword
    arguments override fields of ``options`` (:class:`InferenceOptions`), as for every predictor.
    """

    def __init__(self, network: nn.Module, options: InferenceOptions | None = None, **overrides: Any) -> None:
        super().__init__(network.eval(), InferenceOptions.build(options, **overrides))
