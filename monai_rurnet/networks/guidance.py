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

Packed input (the inference paths): the guidance travels as :data:`GUIDANCE_CHANNELS` extra channels after the
preprocessed image, ``[image, prior + 1, strokes]`` (:func:`pack_guidance`), so that sliding windows, flips and
resizing treat it with the image; zero (what padding adds) reads as "no prior" and "no stroke". The anytime
loop (:class:`~monai_rurnet.inferers.StepLoop`) splits it off again (:func:`unpack_guidance`).

Stroke input channels: a network built with ``stroke_channels=True`` also sees the strokes as
:data:`STROKE_INPUT_CHANNELS` extra input channels ``[fg, bg]`` (0/1, zero without strokes) after the image, at
every step (:func:`append_stroke_channels`), so that it can tell a stroke from a confident prior pixel.
:func:`add_stroke_inputs` upgrades weights trained without them (zero weights for the new channels: the same
outputs until training teaches them).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "GUIDANCE_CHANNELS",
    "STROKE_INPUT_CHANNELS",
    "append_stroke_channels",
    "add_stroke_inputs",
    "pack_guidance",
    "unpack_guidance",
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
#: extra input channels of a packed, guided input: the prior (offset by +1, 0 = none) and the stroke map.
GUIDANCE_CHANNELS = 2
#: extra network input channels of a ``stroke_channels`` network: foreground and background stroke pixels.
STROKE_INPUT_CHANNELS = 2


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


def append_stroke_channels(x: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    """``x`` ``(B, C, *S)`` with the stroke channels ``[fg, bg]`` (0/1) appended: ``(B, C + 2, *S)``.

    Empty ``fg``/``bg`` (no strokes) append zeros."""
    if fg.numel() == 0 or bg.numel() == 0:
        shape = [x.shape[0], 2] + list(x.shape[2:])  # STROKE_INPUT_CHANNELS (a literal: TorchScript)
        return torch.cat([x, torch.zeros(shape, dtype=x.dtype, device=x.device)], dim=1)
    return torch.cat([x, fg.to(x.dtype), bg.to(x.dtype)], dim=1)


def add_stroke_inputs(
    state: dict[str, torch.Tensor], target: dict[str, torch.Tensor], in_channels: int
) -> dict[str, torch.Tensor]:
    """``state`` (weights of a network without stroke input channels) fitted to ``target`` (the state dict of the
    same network with them): every weight that takes the network input gets zero weights for the two stroke
    channels, inserted after the ``in_channels`` image channels. Other tensors are returned as they are (a
    mismatch left, e.g. a level-0 DRU whose reset gate outputs the input's width, fails the strict load)."""
    out = dict(state)
    for key, value in state.items():
        want = target.get(key)
        if want is None or want.shape == value.shape or value.dim() < 3:
            continue
        if value.shape[0] == want.shape[0] and value.shape[2:] == want.shape[2:]:
            if want.shape[1] - value.shape[1] == STROKE_INPUT_CHANNELS:
                zeros = value.new_zeros((value.shape[0], STROKE_INPUT_CHANNELS, *value.shape[2:]))
                out[key] = torch.cat([value[:, :in_channels], zeros, value[:, in_channels:]], dim=1)
    return out


def pack_guidance(prior: np.ndarray | None, strokes: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """The guidance channels ``(2, *shape)`` float32 of a prior and a stroke map (either may be ``None``).

    Channel 0 is ``prior + 1`` where the prior is in [0, 1] and 0 where it is negative or missing ("no prior"),
    channel 1 the stroke map (0/1/2). Concatenate it after the preprocessed image's channels.
    """
    out = np.zeros((GUIDANCE_CHANNELS, *shape), dtype=np.float32)
    if prior is not None:
        out[0] = np.where(prior >= 0, np.clip(prior, 0.0, 1.0) + 1.0, 0.0)
    if strokes is not None:
        out[1] = strokes
    return out


def unpack_guidance(
    x: torch.Tensor, in_channels: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """``(image, prior, strokes)`` of a packed input ``(B, in_channels + 2, *S)``, or ``None`` for a plain one.

    ``prior`` ``(B, 1, *S)`` float32 is :data:`NO_PRIOR` where channel 0 is below 1 (padding, blending with
    "none"); ``strokes`` ``(B, 1, *S)`` is the stroke map rounded to 0/1/2 (robust to linear resampling).
    """
    if x.shape[1] != in_channels + GUIDANCE_CHANNELS:
        return None
    g = x[:, in_channels:].float()
    prior = torch.where(g[:, :1] >= 1.0, g[:, :1] - 1.0, torch.full_like(g[:, :1], NO_PRIOR))
    return x[:, :in_channels], prior, g[:, 1:].round()
