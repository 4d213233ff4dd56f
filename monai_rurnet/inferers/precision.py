"""Precision of the inference paths: names, the bfloat16 network conversion and its float32 normalisations."""

from __future__ import annotations

import torch
import torch.nn as nn

from monai_rurnet.inferers.norms import replace_modules

__all__ = ["PRECISIONS", "compute_dtype", "Float32Norm", "float32_norms", "native_bfloat16_cpu"]

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


def float32_norms(module: nn.Module) -> None:
    """Wrap the normalisation layers under ``module`` that are slow in bfloat16 in :class:`Float32Norm`."""

    def convert(m: nn.Module) -> nn.Module | None:
        if isinstance(m, Float32Norm):  # already wrapped: leave it, do not wrap its norm again
            return m
        return Float32Norm(m) if _slow_in_bfloat16(m) else None

    replace_modules(module, convert)


def native_bfloat16_cpu() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
