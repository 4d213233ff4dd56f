"""Inference at a fixed network input size: resize in, infer, resize the logits back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.inferers import Inferer

__all__ = ["ResizeInferer"]

_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


class ResizeInferer(Inferer):
    """Resize the input to ``spatial_size`` (area averaging), run ``inferer`` (or the network) and resize the
    logits back to the input's size (linear interpolation), for networks trained on one image size.

    Args:
        spatial_size: the network's input size.
        inferer: the wrapped inferer (e.g. :class:`~monai_rurnet.inferers.FastInferer`); ``None`` calls the
            network.
        transpose: swap the last two spatial axes around the network (2D images read as ``(H, W)`` for a network
            trained on ``(W, H)`` arrays, as MONAI's default ``PILReader`` returns them).

    Shapes:
        ``inputs (B, C, *S) -> (B, K, *S)``.
    """

    def __init__(
        self, spatial_size: Sequence[int], inferer: Inferer | None = None, transpose: bool = False
    ) -> None:
        super().__init__()
        self.spatial_size = tuple(int(s) for s in spatial_size)
        self.inferer = inferer
        self.transpose = transpose

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        x = inputs.transpose(-1, -2) if self.transpose else inputs
        size = tuple(x.shape[2:])
        small = F.interpolate(x.float(), size=self.spatial_size, mode="area")
        out = self.inferer(small, network, *args, **kwargs) if self.inferer is not None else network(small)
        out = F.interpolate(out, size=size, mode=_MODES[len(size)], align_corners=False)
        return out.transpose(-1, -2) if self.transpose else out

    @property
    def last_steps(self) -> int:
        """Steps used by the wrapped inferer's last call (anytime inferers), else 0."""
        return int(getattr(self.inferer, "last_steps", 0))
