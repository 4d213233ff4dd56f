"""From logits to the foreground probability a binary result is thresholded on."""

from __future__ import annotations

import torch

__all__ = ["foreground_probability"]


def foreground_probability(logits: torch.Tensor, foreground: int = 1, dim: int = 1) -> torch.Tensor:
    """Foreground probability of ``logits`` (float32), with the class axis ``dim`` removed.

    One channel is a sigmoid output; several are softmax classes, of which channel ``foreground`` is returned.
    """
    logits = logits.float()
    if logits.shape[dim] == 1:
        return torch.sigmoid(logits.select(dim, 0))
    return torch.softmax(logits, dim=dim).select(dim, foreground)
