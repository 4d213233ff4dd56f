"""A topology term for thin structures: soft clDice (Shit et al., CVPR 2021) added to any per-step loss."""

from __future__ import annotations

import torch
from monai.losses.cldice import soft_skel
from torch.nn.modules.loss import _Loss

__all__ = ["WithClDiceLoss", "soft_cldice"]


def soft_cldice(
    prob: torch.Tensor, target: torch.Tensor, iters: int = 3, smooth: float = 1.0
) -> torch.Tensor:
    """Soft clDice loss ``1 - 2 Tprec Tsens / (Tprec + Tsens)`` of foreground probabilities and a binary target.

    Both ``(B, 1, *S)`` in [0, 1]; sums run over the whole batch (pixels outside the valid region should be 0 in
    both). ``Tprec``: fraction of the prediction's soft skeleton inside the target; ``Tsens``: fraction of the
    target's skeleton covered by the prediction.
    """
    skel_pred, skel_true = soft_skel(prob, iters), soft_skel(target, iters)
    tprec = ((skel_pred * target).sum() + smooth) / (skel_pred.sum() + smooth)
    tsens = ((skel_true * prob).sum() + smooth) / (skel_true.sum() + smooth)
    return 1.0 - 2.0 * tprec * tsens / (tprec + tsens)


class WithClDiceLoss(_Loss):
    """``loss(input, target) + weight * soft_cldice(foreground probability, foreground target)``.

    Made for vessels and roads (MONAI's ``SoftclDiceLoss`` idea, computed on the foreground class only and with
    void pixels left out). Works per step inside :class:`~monai_rurnet.losses.MultiStepLoss`; ``weight=0`` is
    ``loss`` itself.

    Args:
        loss: the base loss, called as ``loss(input, target)`` (e.g. ``DiceCELoss``, ``MaskedDiceCELoss``).
        weight: weight of the clDice term (>= 0).
        iters: soft-skeleton iterations (about the largest structure radius in pixels; MONAI's ``iter_``).
        foreground: index of the foreground class (``input`` ``(B, C, *S)`` logits, softmax over ``C >= 2`` or
            sigmoid when ``C == 1``).
        ignore_value: label value of void pixels (left out of the clDice term).
    """

    def __init__(
        self,
        loss: torch.nn.Module,
        weight: float = 0.5,
        iters: int = 3,
        foreground: int = 1,
        ignore_value: int = 255,
    ) -> None:
        super().__init__()
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}.")
        if iters < 1:
            raise ValueError(f"iters must be >= 1, got {iters}.")
        self.loss, self.weight, self.iters = loss, float(weight), int(iters)
        self.foreground, self.ignore_value = int(foreground), int(ignore_value)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        base = self.loss(input, target)
        if self.weight == 0:
            return base
        x = input.float()
        if x.shape[1] == 1:
            prob = torch.sigmoid(x)
        else:
            prob = torch.softmax(x, dim=1)[:, self.foreground : self.foreground + 1]
        labels = target if target.dim() == input.dim() else target.unsqueeze(1)
        # class-probability targets (e.g. two-class coverage): foreground where it wins
        if labels.shape[1] > 1:
            fg = (labels.argmax(dim=1, keepdim=True) == self.foreground).to(x.dtype)
            return base + self.weight * soft_cldice(prob, fg, self.iters)
        labels = labels.round()
        valid = (labels != self.ignore_value).to(x.dtype)
        fg = (labels == (1 if x.shape[1] == 1 else self.foreground)).to(x.dtype)
        return base + self.weight * soft_cldice(prob * valid, fg * valid, self.iters)
