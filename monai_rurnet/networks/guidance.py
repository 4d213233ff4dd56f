"""Interactive guidance of the mask recurrence: a prior mask as ``s_0`` and annotator strokes clamped into it.

The Recurrent U-Net feeds its previous mask ``s_{t-1}`` back into every step. Refinement starts the steps from a
*prior* (an earlier result, foreground probability in [0, 1]) instead of the constant ``s_0``, and *clamps* the
stroke pixels of the mask at every step: a foreground stroke sets the pixel's mask to the foreground one-hot, a
background stroke to the background one-hot. The network then extends what the strokes say along the image
(a stroke on a missed vessel brings back the vessel). Stroke pixels are honoured in the output logits.

Encodings (the CLI's files and the tensors alike):

* strokes: an integer map, ``0`` no stroke, ``1`` background stroke, ``2`` foreground stroke;
* prior: foreground probability in [0, 1]; a negative value means "no prior here" (the network's own ``s_0``).

Refinement needs a binary model: one sigmoid output or two softmax classes (background, foreground).
"""

from __future__ import annotations

import torch

__all__ = [
    "STROKE_NONE",
    "STROKE_BACKGROUND",
    "STROKE_FOREGROUND",
    "STROKE_LOGIT",
    "NO_PRIOR",
    "check_binary",
    "prior_mask",
    "stroke_masks",
    "strokes_from_masks",
    "clamp_mask",
    "honour_strokes",
]

STROKE_NONE = 0
STROKE_BACKGROUND = 1
STROKE_FOREGROUND = 2
#: logit margin written at stroke pixels of the output (softmax probability 1 - 4e-18 for the stroke's class).
STROKE_LOGIT = 20.0
#: prior value meaning "no prior": the network's constant ``s_0`` is used there.
NO_PRIOR = -1.0


def check_binary(out_channels: int) -> None:
    """Refinement needs one sigmoid output or two classes (background, foreground)."""
    if out_channels not in (1, 2):
        raise ValueError(
            f"Interactive refinement needs a binary model (1 sigmoid or 2 softmax output channels), got "
            f"out_channels={out_channels}: strokes only say foreground or background."
        )


def prior_mask(prior: torch.Tensor, out_channels: int, init_value: float) -> torch.Tensor:
    """``s_0`` from a prior ``(B, 1, *S)``: ``(B, out_channels, *S)``, ``init_value`` where the prior is negative."""
    check_binary(out_channels)
    if prior.shape[1] != 1:
        raise ValueError(f"prior must have one channel (B, 1, *S), got shape {list(prior.shape)}.")
    p = prior.clamp(0.0, 1.0)
    mask = p if out_channels == 1 else torch.cat([1.0 - p, p], dim=1)
    return torch.where(prior < 0, torch.full_like(mask, init_value), mask)


def stroke_masks(strokes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(fg, bg)`` boolean ``(B, 1, *S)`` from a stroke map with values 0/1/2."""
    return strokes == 2, strokes == 1  # STROKE_FOREGROUND, STROKE_BACKGROUND (literals: TorchScript)


def strokes_from_masks(fg: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    """The stroke map (``uint8`` 0/1/2) of boolean ``fg``/``bg``; pixels marked both raise a ``ValueError``."""
    fg, bg = fg.bool(), bg.bool()
    if fg.shape != bg.shape:
        raise ValueError(f"fg and bg must have the same shape, got {list(fg.shape)} and {list(bg.shape)}.")
    if bool((fg & bg).any()):
        raise ValueError(
            f"{int((fg & bg).sum())} pixel(s) are marked as both a foreground and a background stroke."
        )
    strokes = torch.zeros(fg.shape, dtype=torch.uint8, device=fg.device)
    return strokes.masked_fill(bg, STROKE_BACKGROUND).masked_fill(fg, STROKE_FOREGROUND)


def _one_hot_values(mask: torch.Tensor, foreground: bool) -> torch.Tensor:
    """``(1, C, 1, ...)``: the mask value of a sure foreground / background pixel (C = 1 sigmoid or 2 classes)."""
    c = mask.shape[1]
    shape = [1, c] + [1] * (mask.dim() - 2)
    if c == 1:
        return torch.full(shape, 1.0 if foreground else 0.0, dtype=mask.dtype, device=mask.device)
    index = torch.arange(c, device=mask.device).view(shape)
    return (index == (1 if foreground else 0)).to(mask.dtype)


def clamp_mask(mask: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    """``mask`` ``(B, C, *S)`` with foreground / background stroke pixels set to the sure one-hot values."""
    mask = torch.where(fg, _one_hot_values(mask, True), mask)
    return torch.where(bg, _one_hot_values(mask, False), mask)


def honour_strokes(logits: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    """``logits`` (``(B, C, *S)`` or, all steps stacked, ``(B, T, C, *S)``) with ``±STROKE_LOGIT`` at strokes."""
    channel_dim = 1
    if logits.dim() == fg.dim() + 1:  # all steps stacked: broadcast the strokes over the step axis
        fg, bg, channel_dim = fg.unsqueeze(1), bg.unsqueeze(1), 2
    c = logits.shape[channel_dim]
    check_binary(c)
    shape = [1] * logits.dim()
    shape[channel_dim] = c
    margin = 20.0  # STROKE_LOGIT (a literal: TorchScript)
    sure_fg = torch.tensor(
        [margin] if c == 1 else [-margin, margin], dtype=logits.dtype, device=logits.device
    )
    target = sure_fg.view(shape)
    return torch.where(bg, -target, torch.where(fg, target, logits))
