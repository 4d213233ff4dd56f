"""Test-time mirroring: average a model's class probabilities over flipped copies of the input."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import Inferer

__all__ = ["FlipEnsembleInferer"]

ACTIVATIONS = ("auto", "softmax", "sigmoid")


def all_flip_axes(spatial_dims: int) -> list[tuple[int, ...]]:
    """Every subset of the spatial axes (0-based), the identity first: 4 in 2D, 8 in 3D."""
    axes = range(spatial_dims)
    return [c for r in range(spatial_dims + 1) for c in itertools.combinations(axes, r)]


class FlipEnsembleInferer(Inferer):
    """Run ``inferer`` on mirrored copies of the input and average the class probabilities.

    The result is returned as logits of the averaged probabilities (``log p`` for softmax, ``logit p`` for
    sigmoid), so the usual post-processing (``Activations`` + threshold/argmax) applies unchanged and yields the
    averaged probabilities. Costs one inference per flip (4 in 2D by default); on held-out DRIVE images it adds
    about +0.005 vessel F1 to DRU(4) (see the retina bundle's docs).

    Args:
        inferer: the wrapped inferer (e.g. :class:`~monai_rurnet.inferers.FastInferer` or a sliding window);
            ``None`` calls the network directly.
        flip_axes: spatial axes (0-based, e.g. ``[[], [0], [1], [0, 1]]``) of each copy; default: every subset.
        activation: ``"softmax"`` (multi-class logits), ``"sigmoid"`` (independent channels) or ``"auto"``
            (softmax for more than one output channel, else sigmoid).

    Shapes:
        ``inputs (B, C, *S) -> (B, K, *S)``, as the wrapped inferer.
    """

    def __init__(
        self,
        inferer: Inferer | None = None,
        flip_axes: Sequence[Sequence[int]] | None = None,
        activation: str = "auto",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}.")
        if flip_axes is not None and len(flip_axes) == 0:
            raise ValueError("flip_axes must list at least one set of axes (use [[]] for no flip).")
        self.inferer = inferer
        self.flip_axes = None if flip_axes is None else [tuple(int(a) for a in f) for f in flip_axes]
        self.activation = activation

    def _softmax(self, logits: torch.Tensor) -> bool:
        return self.activation == "softmax" or (self.activation == "auto" and logits.shape[1] > 1)

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        spatial_dims = inputs.dim() - 2
        flips = self.flip_axes if self.flip_axes is not None else all_flip_axes(spatial_dims)
        for f in flips:
            if any(not 0 <= a < spatial_dims for a in f):
                raise ValueError(f"flip axes {list(f)} out of range for {spatial_dims} spatial dims.")
        total: torch.Tensor | None = None
        softmax = True
        for f in flips:
            dims = [a + 2 for a in f]
            x = torch.flip(inputs, dims) if dims else inputs
            out = self.inferer(x, network, *args, **kwargs) if self.inferer is not None else network(x)
            softmax = self._softmax(out)
            prob = torch.softmax(out.float(), dim=1) if softmax else torch.sigmoid(out.float())
            prob = torch.flip(prob, dims) if dims else prob
            total = prob if total is None else total + prob
        mean = (total / len(flips)).clamp(1e-7, 1.0 - 1e-7)  # type: ignore[operator]
        return mean.log() if softmax else torch.logit(mean)

    @property
    def last_steps(self) -> int:
        """Steps used by the wrapped inferer's last call (anytime inferers), else 0."""
        return int(getattr(self.inferer, "last_steps", 0))
