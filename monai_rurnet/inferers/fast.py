"""The one public entry of the inference paths: :class:`FastInferer` (``backend="eager"|"torch"|"onnxruntime"``).

Every backend runs the same network class through the same anytime loop
(:class:`~monai_rurnet.inferers.StepLoop`: ``steps`` and early exit ``tol`` chosen at call time), with its
options grouped once in :class:`~monai_rurnet.inferers.InferenceOptions`:

- ``"eager"``: :class:`~monai_rurnet.inferers.EagerPredictor`, the network as it is (the reference).
- ``"torch"``: :class:`~monai_rurnet.inferers.TorchFastPredictor`, inference mode, channels-last, a frozen
  TorchScript trace of the step, optional bfloat16.
- ``"onnxruntime"``: :class:`~monai_rurnet.inferers.OnnxRuntimePredictor`, the exported step in ONNX Runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
from monai.inferers import Inferer

from monai_rurnet.inferers.onnx_runtime import OnnxRuntimePredictor
from monai_rurnet.inferers.precision import compute_dtype
from monai_rurnet.inferers.steps import EagerPredictor, InferenceOptions, StepLoop
from monai_rurnet.inferers.torch_fast import TorchFastPredictor

__all__ = ["BACKENDS", "FastInferer", "build_predictor"]

BACKENDS: dict[str, Callable[[nn.Module, InferenceOptions], StepLoop]] = {
    "eager": EagerPredictor,
    "torch": TorchFastPredictor,
    "onnxruntime": OnnxRuntimePredictor,
}


def _backend(name: str, options: InferenceOptions) -> str:
    key = str(name).lower().replace("_", "")
    if key not in BACKENDS:
        raise ValueError(f"Unknown backend {name!r}; choose one of {tuple(BACKENDS)}.")
    if compute_dtype(options.precision) is not None and key != "torch":  # also names a bad precision
        raise ValueError(
            f"precision={options.precision!r} needs backend='torch'; {key} runs the float32 model."
        )
    return key


def build_predictor(
    network: nn.Module, backend: str = "torch", options: InferenceOptions | None = None
) -> StepLoop:
    """A predictor ``(B, C, *S) -> (B, K, *S)`` of ``network`` on ``backend`` (see the module docstring)."""
    options = options or InferenceOptions()
    return BACKENDS[_backend(backend, options)](network, options)


class FastInferer(Inferer):
    """Run ``inferer`` (default: a direct call) over a predictor of ``backend`` built from the network it is given.

    The predictor is built on the first call and rebuilt when another network, or new weights (e.g. after
    ``load_state_dict``), are passed. In a bundle's ``inference.json``::

        "inferer": {"_target_": "monai_rurnet.inferers.FastInferer", "backend": "@backend",
                    "steps": "@steps", "tol": "@tol",
                    "inferer": {"_target_": "SlidingWindowInferer", "roi_size": "@roi_size", ...}}

    Args:
        inferer: a MONAI inferer called as ``inferer(inputs, predictor)``; ``None`` calls the predictor.
        backend: ``"eager"``, ``"torch"`` or ``"onnxruntime"``.
        options: :class:`~monai_rurnet.inferers.InferenceOptions`; keyword arguments override its fields
            (``FastInferer(backend="torch", steps=2, tol=1e-2, precision="bfloat16")``).

    ``last_steps`` is the largest number of steps any predictor call used in the last call.
    """

    def __init__(
        self,
        inferer: Inferer | None = None,
        backend: str = "torch",
        options: InferenceOptions | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.inferer = inferer
        self.options = InferenceOptions.build(options, **kwargs)
        self.backend = _backend(backend, self.options)
        self.last_steps = 0
        self._key: tuple | None = None
        self._predictor: StepLoop | None = None

    @staticmethod
    def _weights_key(network: Any) -> tuple:
        if not isinstance(network, nn.Module):
            return (id(network),)
        return (id(network), tuple((p.data_ptr(), p._version) for p in network.state_dict().values()))

    def predictor(self, network: nn.Module) -> StepLoop:
        """The (cached) predictor of ``network``."""
        key = self._weights_key(network)
        if self._predictor is None or key != self._key:
            self._predictor = build_predictor(network, self.backend, self.options)
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
