"""Mixed-precision forward passes for training and evaluation, on the CPU as on a GPU."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.inferers import Inferer

from monai_rurnet.inferers.precision import compute_dtype

__all__ = ["AutocastInferer"]


class AutocastInferer(Inferer):
    """Run ``inferer`` under ``torch.autocast`` in ``precision`` and return float32 outputs.

    MONAI's trainers autocast on CUDA only (``amp=True``: float16 with a gradient scaler). This inferer makes the
    *forward* pass mixed-precision wherever the inputs are, e.g. bfloat16 on a CPU with AVX512-BF16 or AMX
    (DRU(4) training steps at 16x96x96: 1.3x faster); the loss and the backward pass then run as usual on the
    float32 outputs, and bfloat16 needs no gradient scaler. Use it as the trainer's ``inferer``; with
    ``precision="float32"`` it only calls ``inferer``.

    Args:
        inferer: the wrapped inferer (e.g. ``SimpleInferer``); ``None`` calls the network directly.
        precision: ``"float32"`` or ``"bfloat16"`` (see :data:`~monai_rurnet.inferers.PRECISIONS`).

    Shapes:
        as the wrapped inferer (e.g. ``(B, C, *S) -> (B, T, K, *S)`` for a training-mode RecurrentUNet).
    """

    def __init__(self, inferer: Inferer | None = None, precision: str = "bfloat16") -> None:
        super().__init__()
        self.inferer = inferer
        self.dtype = compute_dtype(precision)

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def run() -> Any:
            if self.inferer is None:
                return network(inputs, *args, **kwargs)
            return self.inferer(inputs, network, *args, **kwargs)

        if self.dtype is None:
            return run()
        with torch.autocast(device_type=inputs.device.type, dtype=self.dtype):
            out = run()
        return out.float() if isinstance(out, torch.Tensor) else out
