"""Anytime / early-exit inference for recurrent networks, composable with MONAI inferers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.inferers import Inferer, SlidingWindowInferer

from monai_rurnet.networks.rurnet import RecurrentUNet

__all__ = ["RecurrentPredictor", "RecurrentSlidingWindowInferer", "DivisiblePadInferer"]


class RecurrentPredictor:
    """Wrap a network so that calling it runs ``steps`` recurrent steps, stopping early at ``tol``.

    ``steps=None`` uses the network's own; ``tol`` (e.g. ``1e-2``) stops once the probabilities change less than
    ``tol`` (max abs) between two steps. ``last_steps`` records the steps used by the last call. Networks that
    are not :class:`RecurrentUNet` are called as they are.
    """

    def __init__(self, network: torch.nn.Module, steps: int | None = None, tol: float | None = None) -> None:
        self.network = network
        self.steps = steps
        self.tol = tol
        self.last_steps = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        net = self.network
        if isinstance(net, RecurrentUNet):
            outputs, self.last_steps = net.forward_steps(x, self.steps, self.tol)
            return outputs[-1]
        self.last_steps = 1
        return net(x)


class DivisiblePadInferer(Inferer):
    """Pad the input to a multiple of ``k`` (reflect), run ``inferer`` (or the network) and crop back."""

    def __init__(self, k: int = 16, inferer: Inferer | None = None, mode: str = "reflect") -> None:
        super().__init__()
        self.k = k
        self.inferer = inferer
        self.mode = mode

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        spatial = inputs.shape[2:]
        pads: list[int] = []
        for s in reversed(spatial):
            extra = (-int(s)) % self.k
            pads += [extra // 2, extra - extra // 2]
        mode = self.mode if all(int(s) > 1 for s in spatial) else "constant"
        x = F.pad(inputs, pads, mode=mode) if any(pads) else inputs
        out = (
            self.inferer(x, network, *args, **kwargs)
            if self.inferer is not None
            else network(x, *args, **kwargs)
        )
        if not any(pads):
            return out
        slices = [slice(None), slice(None)]
        for i, s in enumerate(spatial):
            lo = pads[2 * (len(spatial) - 1 - i)]
            slices.append(slice(lo, lo + int(s)))
        return out[tuple(slices)]


class RecurrentSlidingWindowInferer(SlidingWindowInferer):
    """MONAI sliding-window inference over a recurrent network with anytime ``steps`` and early-exit ``tol``.

    Inputs of any size work: windows are ``roi_size`` (a multiple of 16) and images smaller than a window are
    padded by MONAI. ``last_steps`` is the largest number of steps any window used in the last call.
    """

    def __init__(
        self,
        roi_size: Sequence[int] | int,
        sw_batch_size: int = 4,
        overlap: float = 0.25,
        mode: str = "gaussian",
        steps: int | None = None,
        tol: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(roi_size=roi_size, sw_batch_size=sw_batch_size, overlap=overlap, mode=mode, **kwargs)
        self.steps = steps
        self.tol = tol
        self.last_steps = 0

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        predictor = RecurrentPredictor(network, self.steps, self.tol)
        used: list[int] = []

        def _predict(x: torch.Tensor) -> torch.Tensor:
            out = predictor(x)
            used.append(predictor.last_steps)
            return out

        out = super().__call__(inputs, _predict, *args, **kwargs)
        self.last_steps = max(used, default=0)
        return out
