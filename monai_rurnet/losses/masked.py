"""Losses that ignore void pixels: label value ``ignore_value`` (255, see :mod:`monai_rurnet.metrics.utils`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

__all__ = ["MaskedDiceCELoss", "IgnoreValueLoss"]


def _split_target(target: torch.Tensor, ignore_value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, 1, *S)`` or ``(B, *S)`` label -> class indices ``(B, *S)`` (ignored set to 0) and valid mask."""
    t = target[:, 0] if target.dim() >= 2 and target.shape[1] == 1 else target
    t = t.round().long()
    valid = t != int(ignore_value)
    return torch.where(valid, t, torch.zeros_like(t)), valid


class MaskedDiceCELoss(_Loss):
    """Cross entropy + soft Dice over the valid pixels only; label pixels equal to ``ignore_value`` count nowhere.

    ``input`` is logits ``(B, C, *S)`` (softmax over ``C >= 2``, or sigmoid when ``C == 1``); ``target`` is
    ``(B, 1, *S)`` (or ``(B, *S)``) with class indices and ``ignore_value`` for void. Works per step inside
    :class:`~monai_rurnet.losses.MultiStepLoss`.

    Args:
        ignore_value: label value to ignore (255).
        lambda_dice: weight of the Dice term (0 gives a masked cross entropy).
        lambda_ce: weight of the cross-entropy term.
        include_background: include class 0 in the Dice mean.
        batch: pool the Dice sums over the batch (otherwise per image, then averaged).
        smooth_nr: Dice numerator smoothing.
        smooth_dr: Dice denominator smoothing.
    """

    def __init__(
        self,
        ignore_value: int = 255,
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
        include_background: bool = True,
        batch: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
    ) -> None:
        super().__init__()
        if lambda_dice < 0 or lambda_ce < 0:
            raise ValueError(f"lambda_dice and lambda_ce must be >= 0, got {lambda_dice}, {lambda_ce}.")
        self.ignore_value = int(ignore_value)
        self.lambda_dice = float(lambda_dice)
        self.lambda_ce = float(lambda_ce)
        self.include_background = include_background
        self.batch = batch
        self.smooth_nr = float(smooth_nr)
        self.smooth_dr = float(smooth_dr)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.dim() < 3:
            raise ValueError(f"input must be (B, C, *spatial) logits, got shape {tuple(input.shape)}.")
        labels, valid = _split_target(target, self.ignore_value)
        if labels.shape != input.shape[:1] + input.shape[2:]:
            raise ValueError(
                f"target {tuple(target.shape)} does not match input {tuple(input.shape)} (expected (B, 1, *spatial))."
            )
        x = input.float()
        vf = valid.to(x.dtype)
        n_valid = vf.sum().clamp_min(1.0)
        if x.shape[1] == 1:  # binary, sigmoid
            ce_map = F.binary_cross_entropy_with_logits(x[:, 0], labels.to(x.dtype), reduction="none")
            prob = torch.cat([1 - torch.sigmoid(x), torch.sigmoid(x)], dim=1)
            n_cls = 2
        else:
            ce_map = F.cross_entropy(x, labels, reduction="none")
            prob = torch.softmax(x, dim=1)
            n_cls = x.shape[1]
        loss = x.new_zeros(())
        if self.lambda_ce > 0:
            loss = loss + self.lambda_ce * (ce_map * vf).sum() / n_valid
        if self.lambda_dice > 0:
            onehot = F.one_hot(labels.clamp(0, n_cls - 1), n_cls).movedim(-1, 1).to(x.dtype)
            m = vf.unsqueeze(1)
            dims = tuple(range(2, x.dim()))
            if self.batch:
                dims = (0, *dims)
            inter = (prob * onehot * m).sum(dims)
            denom = (prob * m).sum(dims) + (onehot * m).sum(dims)
            dice = 1.0 - (2.0 * inter + self.smooth_nr) / (denom + self.smooth_dr)
            if not self.include_background:
                dice = dice[..., 1:]
            loss = loss + self.lambda_dice * dice.mean()
        return loss


class IgnoreValueLoss(_Loss):
    """Wrap any per-pixel loss so that pixels whose label is ``ignore_value`` do not contribute.

    ``loss`` must accept ``reduction="none"``-style output of shape ``(B, *S)`` or ``(B, 1, *S)`` (e.g.
    ``torch.nn.CrossEntropyLoss(reduction="none")`` with class-index targets, or
    ``torch.nn.BCEWithLogitsLoss(reduction="none")``); the result is averaged over the valid pixels.
    Ignored labels are replaced by 0 before calling ``loss``. ``target_format`` is ``"index"`` (``(B, *S)``
    long, for cross entropy) or ``"channel"`` (``(B, 1, *S)`` float, for BCE).
    """

    def __init__(self, loss: torch.nn.Module, ignore_value: int = 255, target_format: str = "index") -> None:
        super().__init__()
        if target_format not in ("index", "channel"):
            raise ValueError(f"target_format must be 'index' or 'channel', got {target_format!r}.")
        self.loss = loss
        self.ignore_value = int(ignore_value)
        self.target_format = target_format

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        labels, valid = _split_target(target, self.ignore_value)
        t = labels if self.target_format == "index" else labels.unsqueeze(1).to(input.dtype)
        per_pixel = self.loss(input, t)
        if per_pixel.dim() == valid.dim() + 1:
            per_pixel = per_pixel.mean(1)
        if per_pixel.shape != valid.shape:
            raise ValueError(
                f"IgnoreValueLoss needs a per-pixel loss (reduction='none'), got output shape {tuple(per_pixel.shape)} "
                f"for target {tuple(target.shape)}."
            )
        vf = valid.to(per_pixel.dtype)
        return (per_pixel * vf).sum() / vf.sum().clamp_min(1.0)
