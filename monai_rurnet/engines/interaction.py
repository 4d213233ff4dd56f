"""Training with simulated interaction: priors and annotator strokes drawn for a share of every batch.

:class:`StrokeInteraction` is a :class:`monai.engines.SupervisedTrainer` ``iteration_update`` (as MONAI's DeepEdit
``Interaction``): before the usual iteration it gives each batch item, with probability ``prob``, a starting mask
``s_0`` and strokes, and puts them in the batch as ``"prior"`` and ``"strokes"``;
:class:`PrepareGuidedBatch` passes them to the network (``RecurrentUNet.forward(x, prior=..., strokes=...)``),
which clamps the strokes into the mask at every step. ``s_0`` is drawn from:

* ``"constant"``: the network's own ``s_0`` (strokes only, "rerun from scratch");
* ``"prediction"``: the model's own detached prediction (what an annotator corrects);
* ``"corrupted"``: the ground truth with segments dropped and parts dilated or eroded.

Strokes (0 to ``max_strokes``) are drawn on the largest error components of that starting mask
(:func:`monai_rurnet.data.strokes.add_strokes`). Items without interaction train as before.

A stroke covers a few pixels of the error it marks; the loss over the whole image barely notices whether the
network fixed the rest of that error. With ``focus_weight`` > 0 the simulation also records those errors
(:func:`~monai_rurnet.data.strokes.stroked_errors`) and :meth:`StrokeInteraction.focus_loss` adds
``focus_weight`` times the cross entropy of the last step averaged over their pixels: the loss of "one stroke
brings back the whole vessel".

Strokes only teach what the image does not already show: on clean training patches the network finds the vessels
without them. With ``degrade_prob`` > 0 that share of the interactive items is degraded first (Gaussian blur,
lower contrast, noise, on the normalised image: :func:`degrade`), so that their own prediction misses
structures and the strokes carry information the network must learn to extend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Engine
from monai.engines.utils import default_prepare_batch
from monai.networks.layers import GaussianFilter
from torch.nn.modules.loss import _Loss

from monai_rurnet.data.strokes import DEFAULT_STROKE_LENGTH, add_strokes, corrupt_mask, stroked_errors
from monai_rurnet.inferers.probability import foreground_probability
from monai_rurnet.metrics.utils import IGNORE_VALUE
from monai_rurnet.networks.guidance import NO_PRIOR

__all__ = ["PRIOR_MODES", "degrade", "StrokeInteraction", "StrokeFocusLoss", "PrepareGuidedBatch"]

PRIOR_MODES = ("constant", "prediction", "corrupted")


def degrade(
    image: torch.Tensor,
    rng: np.random.Generator,
    sigma: tuple[float, float] = (0.5, 2.0),
    contrast: tuple[float, float] = (0.3, 1.0),
    noise: tuple[float, float] = (0.0, 0.3),
) -> torch.Tensor:
    """A weaker view of one normalised image ``(C, *S)``: Gaussian blur of a standard deviation drawn from
    ``sigma`` (pixels), contrast about the channel means scaled by a factor from ``contrast``, then Gaussian noise
    of a standard deviation from ``noise`` (in the image's units: z-scored images have unit spread)."""
    s, c, n = (float(rng.uniform(*r)) for r in (sigma, contrast, noise))
    x = image.float()
    blurred = GaussianFilter(x.dim() - 1, s).to(x.device)(x[None])[0]
    dims = tuple(range(1, x.dim()))
    mean = blurred.mean(dim=dims, keepdim=True)
    out = mean + c * (blurred - mean)
    if n > 0:
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        out = out + n * torch.randn(out.shape, generator=gen).to(out.device)
    return out.to(image.dtype)


class StrokeInteraction:
    """``iteration_update`` of the trainer: simulated priors and strokes, then the trainer's own iteration.

    Args:
        prob: share of batch items that get an interaction.
        max_strokes: strokes per interactive item, drawn uniformly in ``0..max_strokes``.
        stroke_length: stroke length in pixels.
        prior_modes: where ``s_0`` comes from (see the module docstring), drawn uniformly per item.
        degrade_prob: share of the interactive items whose image is degraded (:func:`degrade`) before ``s_0``,
            the strokes and the training step (0: none, as before).
        seed: seed of the simulation's random generator.
        image_key, label_key: batch keys of the image and the (binary) label.
        focus_weight: weight of the stroked-error term of :meth:`focus_loss` (0: none, as before).
    """

    def __init__(
        self,
        prob: float = 0.5,
        max_strokes: int = 10,
        stroke_length: int = DEFAULT_STROKE_LENGTH,
        prior_modes: Sequence[str] = PRIOR_MODES,
        degrade_prob: float = 0.0,
        seed: int = 0,
        image_key: str = "image",
        label_key: str = "label",
        focus_weight: float = 0.0,
    ) -> None:
        unknown = set(prior_modes) - set(PRIOR_MODES)
        if unknown or not prior_modes:
            raise ValueError(
                f"prior_modes must be a non-empty subset of {PRIOR_MODES}, got {list(prior_modes)}."
            )
        for name, value in (("prob", prob), ("degrade_prob", degrade_prob)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}.")
        if focus_weight < 0:
            raise ValueError(f"focus_weight must be >= 0, got {focus_weight}.")
        self.prob, self.degrade_prob = float(prob), float(degrade_prob)
        self.focus_weight = float(focus_weight)
        # (B, 1, *S) errors under the strokes of the last simulated batch (focus_weight > 0 only)
        self.focus: torch.Tensor | None = None
        self.max_strokes = int(max_strokes)
        self.stroke_length = int(stroke_length)
        self.prior_modes = tuple(prior_modes)
        self.rng = np.random.default_rng(seed)
        self.image_key, self.label_key = image_key, label_key

    def _own_prediction(self, engine: Engine, image: torch.Tensor) -> np.ndarray:
        """The network's foreground probability ``(B, *S)`` (last step), without gradients."""
        network = engine.network
        device = next(network.parameters()).device
        with torch.no_grad():
            out = network(image.to(device))
        if out.dim() == image.dim() + 1:  # all steps stacked
            out = out[:, -1]
        return foreground_probability(out).cpu().numpy()

    def simulate(self, engine: Engine, batchdata: dict[str, Any]) -> None:
        """Put ``"prior"`` and ``"strokes"`` ``(B, 1, *S)`` into ``batchdata`` (and degrade the images of the
        items drawn for it)."""
        image = torch.as_tensor(batchdata[self.image_key])
        labels = torch.as_tensor(batchdata[self.label_key]).cpu().numpy()[:, 0] > 0
        b, spatial = int(image.shape[0]), tuple(image.shape[2:])
        prior = np.full((b, 1, *spatial), NO_PRIOR, dtype=np.float32)
        strokes = np.zeros((b, 1, *spatial), dtype=np.uint8)
        focus = np.zeros((b, 1, *spatial), dtype=bool) if self.focus_weight else None
        chosen = np.flatnonzero(self.rng.random(b) < self.prob)
        modes = {int(i): self.prior_modes[int(self.rng.integers(len(self.prior_modes)))] for i in chosen}
        weaker = (
            [int(i) for i in chosen if self.rng.random() < self.degrade_prob] if self.degrade_prob else []
        )
        if weaker:
            image = image.clone()
            for i in weaker:
                image[i] = degrade(image[i], self.rng)
            batchdata[self.image_key] = image
        own = None
        if any(m != "corrupted" for m in modes.values()):
            own = self._own_prediction(engine, image)
        for i, mode in modes.items():
            start = corrupt_mask(labels[i], self.rng).astype(np.float32) if mode == "corrupted" else own[i]
            if mode != "constant":
                prior[i, 0] = start
            count = int(self.rng.integers(0, self.max_strokes + 1))
            add_strokes(start >= 0.5, labels[i], count, strokes[i, 0], self.stroke_length)
            if focus is not None:
                focus[i, 0] = stroked_errors(start >= 0.5, labels[i], strokes[i, 0])
        batchdata["prior"] = torch.from_numpy(prior)
        batchdata["strokes"] = torch.from_numpy(strokes)
        self.focus = None if focus is None else torch.from_numpy(focus)

    def focus_loss(self, loss: torch.nn.Module) -> torch.nn.Module:
        """``loss`` plus the stroked-error term (:class:`StrokeFocusLoss`); ``loss`` itself when ``focus_weight`` is
        0. Give the result to the trainer as its ``loss_function``."""
        return StrokeFocusLoss(loss, self) if self.focus_weight else loss

    def __call__(self, engine: Engine, batchdata: dict[str, Any]) -> dict:
        if batchdata is None:
            raise ValueError("Must provide batch data for the current iteration.")
        self.simulate(engine, batchdata)
        return engine._iteration(engine, batchdata)


class StrokeFocusLoss(_Loss):
    """``loss(input, target) + w * CE_focus``: ``CE_focus`` is the cross entropy of the last step's logits over the
    errors under the strokes of the batch that :class:`StrokeInteraction` ``interaction`` simulated last
    (``w = interaction.focus_weight``); batches without stroked errors add nothing.

    ``input``: ``(B, C, *S)`` logits or ``(B, T, C, *S)`` all steps (the last is used), ``C >= 2``; ``target``:
    ``(B, 1, *S)`` class indices, pixels equal to the ignore value left out.
    """

    def __init__(self, loss: torch.nn.Module, interaction: StrokeInteraction) -> None:
        super().__init__()
        self.loss, self.interaction = loss, interaction

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        base = self.loss(input, target)
        focus = self.interaction.focus
        if focus is None or not bool(focus.any()):
            return base
        last = input[:, -1] if input.dim() == target.dim() + 1 else input
        if last.shape[1] < 2:
            raise ValueError(f"StrokeFocusLoss needs softmax logits (C >= 2), got {tuple(last.shape)}.")
        labels = target[:, 0].long()
        keep = focus[:, 0].to(last.device) & (labels != IGNORE_VALUE)
        if not bool(keep.any()):
            return base
        ce = F.cross_entropy(last.float(), labels.clamp(0, last.shape[1] - 1), reduction="none")
        return base + self.interaction.focus_weight * ce[keep].mean()


class PrepareGuidedBatch:
    """``prepare_batch`` of the trainer: image and label as usual, plus ``prior`` / ``strokes`` as network keyword
    arguments when the batch holds them (set by :class:`StrokeInteraction`)."""

    keys = ("prior", "strokes")

    def __call__(
        self,
        batchdata: dict[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple, dict[str, torch.Tensor]]:
        image, label = default_prepare_batch(batchdata, device, non_blocking, **kwargs)
        extra = {
            k: batchdata[k].to(device=device, non_blocking=non_blocking) for k in self.keys if k in batchdata
        }
        return image, label, (), extra
