"""Multi-step loss of the Recurrent U-Net: ``L = sum_t gamma^(T - t) L_t`` (paper eq. 7-8)."""

from __future__ import annotations

import torch
from torch.nn.modules.loss import _Loss

__all__ = ["MultiStepLoss"]


class MultiStepLoss(_Loss):
    """Weight a per-step loss over the recurrent steps, highest weight on the last step.

    Args:
        loss: any loss taking ``(input (B, C, *S), target)``, e.g. ``monai.losses.DiceCELoss`` or
            ``torch.nn.CrossEntropyLoss``.
        gamma: ``w_t = gamma ** (T - t)``; 1.0 weights all steps equally (paper: 0.4).
        normalize: divide by ``sum_t w_t`` so the scale does not depend on ``T``.
        target_has_channel: MONAI convention, target ``(B, 1, *S)``; set ``False`` for class-index targets
            ``(B, *S)`` as ``torch.nn.CrossEntropyLoss`` takes them.

    ``input`` is ``(B, T, C, *S)`` (a :class:`~monai_rurnet.networks.RecurrentUNet` in training mode) or a
    list of ``T`` tensors ``(B, C, *S)``; a single ``(B, C, *S)`` tensor (one step, or a plain network such as
    MONAI's ``BasicUNet``) is passed to ``loss`` as it is.
    """

    def __init__(
        self,
        loss: torch.nn.Module,
        gamma: float = 0.4,
        normalize: bool = False,
        target_has_channel: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}.")
        self.loss = loss
        self.gamma = float(gamma)
        self.normalize = normalize
        self.offset = 0 if target_has_channel else 1

    def weights(self, steps: int) -> list[float]:
        """``[gamma^(T-1), ..., gamma, 1]`` (normalised when ``normalize``)."""
        w = [self.gamma ** (steps - t) for t in range(1, steps + 1)]
        total = sum(w) if self.normalize else 1.0
        return [v / total for v in w]

    def forward(self, input: torch.Tensor | list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if isinstance(input, (list, tuple)):
            outputs = list(input)
        elif input.dim() == target.dim() + self.offset + 1:
            outputs = list(input.unbind(dim=1))
        elif input.dim() == target.dim() + self.offset:
            return self.loss(input, target)
        else:
            raise ValueError(
                f"MultiStepLoss expects input (B, T, C, *S) or (B, C, *S) for a target of shape {list(target.shape)}, "
                f"got {list(input.shape)}."
            )
        return sum(w * self.loss(o, target) for w, o in zip(self.weights(len(outputs)), outputs))
